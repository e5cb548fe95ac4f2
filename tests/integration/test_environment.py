"""The environment stamp against a real git: the harness is dirty only when its own files
changed. (The C library's stamp: tests/unit/metrics/test_environment.py.)"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from bench.metrics.environment import git_state

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("git") is None, reason="needs git"),
]


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=root, capture_output=True, text=True, check=True, timeout=10,
    ).stdout.strip()  # fmt: skip


def test_results_written_into_the_repository_do_not_make_the_harness_dirty(
    tmp_path: Path,
) -> None:
    git(tmp_path, "init", "-q")
    (tmp_path / "bench.py").write_text("x = 1\n")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "runs.csv").write_text("a\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "one")
    assert git_state(tmp_path) == {"commit": git(tmp_path, "rev-parse", "HEAD"), "dirty": False}

    (tmp_path / "results" / "runs.csv").write_text("b\n")  # a run replaced committed results
    (tmp_path / "results" / "new").mkdir()
    (tmp_path / "results" / "new" / "meta.json").write_text("{}\n")
    assert git_state(tmp_path)["dirty"] is False

    (tmp_path / "bench.py").write_text("x = 2\n")  # the harness itself changed
    assert git_state(tmp_path)["dirty"] is True
    (tmp_path / "bench.py").write_text("x = 1\n")
    (tmp_path / "notes.txt").write_text("untracked\n")
    assert git_state(tmp_path)["dirty"] is True
