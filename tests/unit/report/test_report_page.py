"""The report page built from the committed reference results: every number in the verdict is
the summary.csv cell it names, a rebuild is byte-identical, the page fits in 3 MB, and the
README's table is what the reference results give."""

from __future__ import annotations

import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from bench.analyze.summary import write_summary
from bench.report.html import render
from bench.report.markdown import reference_table
from bench.report.verdict import format_value
from tests.conftest import REPO_ROOT

REFERENCE = REPO_ROOT / "results" / "reference"
MAX_REPORT_BYTES = 3 * 1024 * 1024
# Numbers the verdict's wording may contain that are constants, not results.
CONSTANT_PHRASES = ("interval includes 1", "95%")
TABLE_START = "<!-- reference-table:start -->"
TABLE_END = "<!-- reference-table:end -->"


class VerdictParser(HTMLParser):
    """Collects, per verdict paragraph, its text and the figures (``a.fig``) in it."""

    def __init__(self) -> None:
        super().__init__()
        self.paragraphs: list[dict[str, object]] = []
        self._in_verdict = 0
        self._in_paragraph = False
        self._figure: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        if tag == "div" and attributes.get("class") == "verdict":
            self._in_verdict = 1
        elif self._in_verdict and tag == "p":
            self._in_paragraph = True
            self.paragraphs.append({"text": "", "figures": []})
        elif self._in_paragraph and tag == "a" and attributes.get("class") == "fig":
            self._figure = {**attributes, "text": ""}

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._figure is not None:
            figures = self.paragraphs[-1]["figures"]
            assert isinstance(figures, list)
            figures.append(self._figure)
            self._figure = None
        elif tag == "p" and self._in_paragraph:
            self._in_paragraph = False
        elif tag == "div" and self._in_verdict:
            self._in_verdict = 0

    def handle_data(self, data: str) -> None:
        if self._figure is not None:
            self._figure["text"] += data
        elif self._in_paragraph:
            self.paragraphs[-1]["text"] = str(self.paragraphs[-1]["text"]) + data


@pytest.fixture(scope="module")
def reference_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (REFERENCE / "runs.csv").is_file():
        pytest.fail("results/reference/ is missing")
    copy = tmp_path_factory.mktemp("copy") / "reference"
    shutil.copytree(REFERENCE, copy)
    return copy


@pytest.fixture(scope="module")
def page(reference_copy: Path) -> str:
    return render(reference_copy)


def test_every_number_in_the_verdict_is_its_summary_cell(page: str) -> None:
    summary = pd.read_csv(REFERENCE / "summary.csv")
    parser = VerdictParser()
    parser.feed(page)
    assert len(parser.paragraphs) >= 8
    checked = 0
    for paragraph in parser.paragraphs:
        figures = paragraph["figures"]
        assert isinstance(figures, list)
        for figure in figures:
            cell = float(summary.loc[int(figure["data-row"]), figure["data-column"]])
            assert float(figure["data-value"]) == pytest.approx(cell, rel=1e-12, nan_ok=True)
            assert figure["text"] == format_value(cell, figure["data-unit"])
            checked += 1
        # No number outside the figures: the text between them holds words only.
        text = str(paragraph["text"])
        for phrase in CONSTANT_PHRASES:
            text = text.replace(phrase, "")
        stray = re.findall(r"(?<![\w.-])\d[\d,.]*", text)
        assert not stray, (stray, text)
    assert checked > 50


def test_a_rebuild_from_a_copy_is_byte_identical(page: str, tmp_path: Path) -> None:
    other = tmp_path / "another-name"
    shutil.copytree(REFERENCE, other)
    assert render(other) == page


def test_the_report_fits_in_three_megabytes(page: str) -> None:
    assert len(page.encode()) <= MAX_REPORT_BYTES


def test_the_readme_table_is_what_the_reference_results_give() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert TABLE_START in readme and TABLE_END in readme
    block = readme.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0].strip("\n") + "\n"
    assert block == reference_table(pd.read_csv(REFERENCE / "summary.csv"))


def test_a_run_whose_cells_all_failed_still_gets_a_page(
    reference_copy: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "all-failed"
    shutil.copytree(reference_copy, folder)
    runs = pd.read_csv(folder / "runs.csv")
    figures = [c for c in runs.columns if c.endswith(("_us", "_msgs_s", "_per_s"))]
    runs = runs.assign(status="failed", **{c: float("nan") for c in figures})
    runs.to_csv(folder / "runs.csv", index=False)
    write_summary(folder)
    page = render(folder)
    assert "<svg" not in page  # nothing to draw: no chart, and no crash on empty log scales
    assert f"{len(runs)} failed run(s)" in page
