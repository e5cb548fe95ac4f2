"""The HTML report as a reader sees it: opened offline in headless Chromium, it must raise no
errors, fetch nothing, and draw every chart. The small pages first prove the checker can fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser import PageCheck, check_page, chromium_path
from tests.conftest import REPO_ROOT, TIME_FACTOR

pytestmark = pytest.mark.integration

REFERENCE_DIR = REPO_ROOT / "results" / "reference"
BROWSER_TIMEOUT_S = 30.0 * TIME_FACTOR
REPORT_TIMEOUT_S = 120.0 * TIME_FACTOR

MIN_CHARTS = 6
MIN_CHART_SIDE_PX = 100
MAX_REPORT_BYTES = 3 * 1024 * 1024
MIN_SCREENSHOT_BYTES = 10_000

# Three colours on white, so that anti-aliasing aside the chart has at least four.
CHART_SVG = """<svg xmlns="http://www.w3.org/2000/svg" width="320" height="200">
<rect width="320" height="200" fill="#ffffff"/>
<rect x="20" y="80" width="60" height="100" fill="#1f77b4"/>
<rect x="120" y="40" width="60" height="140" fill="#ff7f0e"/>
<circle cx="260" cy="100" r="40" fill="#2ca02c"/>
</svg>"""


@pytest.fixture(scope="module")
def chromium() -> str:
    """Chromium's executable. Missing, it skips the tests, unless WSBENCH_REQUIRE_BROWSER=1
    (set by CI) makes that a failure."""
    path = chromium_path()
    if path is None:
        reason = "no Chromium (/usr/bin/chromium or chromium on PATH): apt-get install chromium"
        if os.environ.get("WSBENCH_REQUIRE_BROWSER") == "1":
            pytest.fail(f"WSBENCH_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    return path


def open_html(chromium: str, tmp_path: Path, body: str) -> PageCheck:
    """Write a small page with ``body`` to ``tmp_path`` and check it."""
    html_path = tmp_path / "page.html"
    html_path.write_text(
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>test page</title></head>'
        f"<body>{body}</body></html>\n",
        encoding="utf-8",
    )
    return check_page(
        html_path,
        screenshot_path=tmp_path / "page.png",
        executable_path=chromium,
        timeout_s=BROWSER_TIMEOUT_S,
    )


def chart(chart_id: str, svg: str) -> str:
    return (
        f'<figure class="chart" id="{chart_id}">{svg}<figcaption>{chart_id}</figcaption></figure>'
    )


# --- the checker can fail ---------------------------------------------------------------------


def test_a_proper_chart_is_visible_and_the_page_is_clean(chromium: str, tmp_path: Path) -> None:
    result = open_html(chromium, tmp_path, chart("chart-bars", CHART_SVG))

    assert result.console_errors == ()
    assert result.page_errors == ()
    assert result.external_requests == ()
    assert [c.chart_id for c in result.charts] == ["chart-bars"]
    (view,) = result.charts
    assert view.visible
    assert (view.svg_count, view.width_px, view.height_px) == (1, 320, 200)
    assert view.distinct_colours >= 4
    assert view.screenshot_png.startswith(b"\x89PNG")
    assert (tmp_path / "page.png").stat().st_size > 0


def test_a_console_error_is_reported(chromium: str, tmp_path: Path) -> None:
    result = open_html(chromium, tmp_path, '<script>console.error("boom")</script>')

    assert result.console_errors == ("boom",)
    assert result.page_errors == ()


def test_an_uncaught_exception_is_reported(chromium: str, tmp_path: Path) -> None:
    result = open_html(chromium, tmp_path, '<script>throw new TypeError("kaput")</script>')

    assert result.page_errors == ("TypeError: kaput",)


@pytest.mark.parametrize(
    ("body", "url"),
    [
        ('<img src="https://example.com/x.png">', "https://example.com/x.png"),
        (
            '<link rel="stylesheet" href="https://cdn.example.com/s.css">',
            "https://cdn.example.com/s.css",
        ),
        ('<script src="https://cdn.example.com/c.js"></script>', "https://cdn.example.com/c.js"),
        (
            '<script>fetch("http://127.0.0.1:9/api").catch(() => {})</script>',
            "http://127.0.0.1:9/api",
        ),
        ('<script>new WebSocket("ws://127.0.0.1:9/ws")</script>', "ws://127.0.0.1:9/ws"),
        ('<img src="beside.png">', "beside.png"),  # another local file is not self-contained
    ],
    ids=["img", "stylesheet", "script", "fetch", "websocket", "local-file"],
)
def test_an_external_request_is_reported_and_aborted(
    chromium: str, tmp_path: Path, body: str, url: str
) -> None:
    (tmp_path / "beside.png").write_bytes(b"present, so only the checker can stop it")
    expected = url if "://" in url else (tmp_path / url).as_uri()

    result = open_html(chromium, tmp_path, body)

    assert result.external_requests == (expected,)


@pytest.mark.parametrize(
    "svg",
    [
        CHART_SVG.replace("<svg ", '<svg style="display:none" ', 1),
        CHART_SVG.replace('width="320" height="200">', 'width="0" height="0">', 1),
        CHART_SVG.replace("<svg ", '<svg style="visibility:hidden" ', 1),
        '<svg xmlns="http://www.w3.org/2000/svg" width="320" height="200">'
        '<rect width="320" height="200" fill="#ffffff"/></svg>',
        "",
    ],
    ids=["display-none", "zero-size", "visibility-hidden", "one-flat-colour", "no-svg"],
)
def test_a_chart_that_shows_nothing_is_not_visible(chromium: str, tmp_path: Path, svg: str) -> None:
    result = open_html(chromium, tmp_path, chart("chart-ok", CHART_SVG) + chart("chart-bad", svg))

    visible = {view.chart_id: view.visible for view in result.charts}
    assert visible == {"chart-ok": True, "chart-bad": False}


# --- the report -------------------------------------------------------------------------------


def test_the_reference_report_opens_offline_and_draws_every_chart(
    chromium: str, tmp_path: Path
) -> None:
    if not REFERENCE_DIR.is_dir():
        pytest.fail("results/reference/ is missing")
    results_dir = tmp_path / "reference"
    shutil.copytree(REFERENCE_DIR, results_dir)
    (results_dir / "report.html").unlink(missing_ok=True)  # it must be rebuilt, not reused

    rebuilt = subprocess.run(
        [sys.executable, "-m", "bench", "report", str(results_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=REPORT_TIMEOUT_S,
        check=False,
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    report_path = results_dir / "report.html"
    screenshot_path = tmp_path / "report.png"

    result = check_page(
        report_path,
        screenshot_path=screenshot_path,
        executable_path=chromium,
        timeout_s=BROWSER_TIMEOUT_S,
    )

    assert result.console_errors == ()
    assert result.page_errors == ()
    assert result.external_requests == ()
    assert "wsbench" in result.title
    assert report_path.stat().st_size <= MAX_REPORT_BYTES
    assert len(result.charts) >= MIN_CHARTS, [c.chart_id for c in result.charts]
    for view in result.charts:
        assert view.chart_id.startswith("chart-"), view.chart_id
        assert view.svg_count == 1, view.chart_id
        assert view.visible, view.chart_id
        assert view.width_px > MIN_CHART_SIDE_PX, view.chart_id
        assert view.height_px > MIN_CHART_SIDE_PX, view.chart_id
        assert view.distinct_colours > 2, view.chart_id
    assert screenshot_path.stat().st_size > MIN_SCREENSHOT_BYTES
    # At a 1400-pixel window nothing widens the page: wide tables scroll in their own box.
    assert result.horizontal_overflow_px == 0
