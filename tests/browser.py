"""Open a local HTML file in headless Chromium (Debian's, driven by Playwright) and report what
a reader would meet: console errors, uncaught exceptions, attempted network requests, and
whether each ``figure.chart`` actually renders."""

from __future__ import annotations

import io
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from playwright.sync_api import ConsoleMessage, Request, Route, WebSocketRoute, sync_playwright
from playwright.sync_api import Error as PlaywrightError

DEBIAN_CHROMIUM = Path("/usr/bin/chromium")

# Without the background-networking flags Chromium phones home at start-up (component updates,
# sync, field trials) and logs failures on a machine without internet.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

# Inline resources (a matplotlib SVG may embed images as data: URIs) are not fetches.
_INLINE_SCHEMES = ("data:", "blob:", "about:")

_CHART_RECTS_JS = """figures => figures.map(figure => {
    const svgs = figure.querySelectorAll("svg");
    const rect = svgs.length ? svgs[0].getBoundingClientRect() : null;
    return {
        id: figure.id,
        svgCount: svgs.length,
        width: rect ? rect.width : 0,
        height: rect ? rect.height : 0,
    };
})"""


@dataclass(frozen=True)
class ChartView:
    """One ``figure.chart`` as rendered: its first SVG's size in CSS pixels and a screenshot."""

    chart_id: str
    svg_count: int
    width_px: float
    height_px: float
    displayed: bool  # Playwright's visibility: laid out, non-empty box, not visibility:hidden
    screenshot_png: bytes = field(repr=False)  # of the SVG; empty when it is not displayed
    distinct_colours: int  # in the screenshot; 0 when there is none

    @property
    def visible(self) -> bool:
        """Displayed with a non-empty box and more than one colour (a flat box shows nothing)."""
        return (
            self.displayed
            and self.width_px > 0
            and self.height_px > 0
            and self.distinct_colours > 1
        )


@dataclass(frozen=True)
class PageCheck:
    title: str
    console_errors: tuple[str, ...]
    page_errors: tuple[str, ...]  # uncaught exceptions
    external_requests: tuple[str, ...]  # every URL other than the file itself; all aborted
    charts: tuple[ChartView, ...]
    # How far the page is wider than the window (CSS pixels; 0: no horizontal scroll bar).
    horizontal_overflow_px: int = 0


def chromium_path() -> str | None:
    """Debian's Chromium if installed, else a ``chromium`` on PATH, else None."""
    if DEBIAN_CHROMIUM.exists():
        return str(DEBIAN_CHROMIUM)
    return shutil.which("chromium")


def distinct_colours(png: bytes) -> int:
    """Number of distinct RGB colours in a PNG."""
    with Image.open(io.BytesIO(png)) as image:
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=rgb.width * rgb.height)
    assert colours is not None  # maxcolors is the pixel count, so it cannot overflow
    return len(colours)


def check_page(
    html_path: Path,
    *,
    screenshot_path: Path,
    executable_path: str,
    timeout_s: float,
    window_width_px: int = 1400,
) -> PageCheck:
    """Open ``html_path`` offline in a window ``window_width_px`` wide, wait until the page is
    loaded and idle, and save a full-page screenshot to ``screenshot_path``.

    Every request other than the file itself is recorded and aborted, so a page that fetches
    anything shows it in ``external_requests`` (and usually in ``console_errors`` too).
    ``timeout_s`` bounds each browser operation, not the whole call.
    """
    page_url = html_path.resolve().as_uri()
    timeout_ms = timeout_s * 1000
    console_errors: list[str] = []
    page_errors: list[str] = []
    external: list[str] = []

    def record_external(url: str) -> None:
        if url != page_url and not url.startswith(_INLINE_SCHEMES) and url not in external:
            external.append(url)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            console_errors.append(message.text)

    def on_page_error(error: PlaywrightError) -> None:
        page_errors.append(f"{error.name}: {error.message}")

    def on_request(request: Request) -> None:
        # A backstop for requests that bypass routing (service workers, some schemes).
        record_external(request.url)

    def on_route(route: Route) -> None:
        if route.request.url == page_url:
            route.continue_()
        else:
            record_external(route.request.url)
            route.abort()

    def on_websocket(websocket: WebSocketRoute) -> None:
        # Never connected to a server: the page sees the socket close.
        record_external(websocket.url)
        websocket.close()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable_path,
            headless=True,
            args=list(CHROMIUM_ARGS),
            timeout=timeout_ms,
        )
        try:
            page = browser.new_page(viewport={"width": window_width_px, "height": 900})
            page.set_default_timeout(timeout_ms)
            page.on("console", on_console)
            page.on("pageerror", on_page_error)
            page.on("request", on_request)
            page.route("**/*", on_route)
            page.route_web_socket("**/*", on_websocket)

            page.goto(page_url, wait_until="load", timeout=timeout_ms)
            # Idle: no request for 500 ms, so late scripts and their fetches have happened.
            page.wait_for_load_state("networkidle", timeout=timeout_ms)

            figures = page.locator("figure.chart")
            rects = figures.evaluate_all(_CHART_RECTS_JS)
            charts = []
            for index, rect in enumerate(rects):
                svg = figures.nth(index).locator("svg").first
                displayed = rect["svgCount"] > 0 and svg.is_visible()
                png = svg.screenshot(timeout=timeout_ms) if displayed else b""
                charts.append(
                    ChartView(
                        chart_id=rect["id"],
                        svg_count=rect["svgCount"],
                        width_px=rect["width"],
                        height_px=rect["height"],
                        displayed=displayed,
                        screenshot_png=png,
                        distinct_colours=distinct_colours(png) if png else 0,
                    )
                )
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            page.screenshot(path=screenshot_path, full_page=True, timeout=timeout_ms)
            title = page.title()
        finally:
            browser.close()

    return PageCheck(
        title=title,
        console_errors=tuple(console_errors),
        page_errors=tuple(page_errors),
        external_requests=tuple(external),
        charts=tuple(charts),
        horizontal_overflow_px=int(overflow),
    )
