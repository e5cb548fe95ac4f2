"""``wsbench local-baseline``: a baseline counted on another CPU is measured again here on the
commit that recorded it, in a git worktree that is removed afterwards; one counted here is
copied; a baseline whose code is unknown is refused in one line (exit 2)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, TIME_FACTOR

pytestmark = pytest.mark.integration

TIMEOUT_S = 180.0 * TIME_FACTOR
GIT = ["git", "-c", "user.name=wsbench tests", "-c", "user.email=tests@wsbench.invalid"]


def run(repo: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench", *argv], cwd=repo, capture_output=True,
                          text=True, timeout=TIMEOUT_S)  # fmt: skip


def git(repo: Path, *argv: str) -> str:
    done = subprocess.run([*GIT, *argv], cwd=repo, capture_output=True, text=True, check=True,
                          timeout=TIMEOUT_S)  # fmt: skip
    return done.stdout.strip()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clone of HEAD with a small baseline committed in it, stamped as if counted on
    another CPU, and the run it was made from (this CPU's stamp) beside it."""
    repo = tmp_path_factory.mktemp("local-baseline") / "repo"
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(repo)], check=True,
                   timeout=TIMEOUT_S)  # fmt: skip
    done = run(repo, "run", "--mode", "closed", "--servers", "aiohttp", "--connections", "2",
               "--duration", "1", "--warmup", "0", "--out", "results/base")  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    shutil.copytree(repo / "results" / "base", repo.parent / "here")
    meta_path = repo / "results" / "base" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["machine"]["cpu_flags_sha256"] = "another-cpu"
    meta_path.write_text(json.dumps(meta))
    git(repo, "add", "-f", "results/base")
    git(repo, "commit", "-q", "-m", "a baseline counted elsewhere")
    return repo


def worktrees(repo: Path) -> list[str]:
    return [line for line in git(repo, "worktree", "list", "--porcelain").splitlines()
            if line.startswith("worktree ")]  # fmt: skip


def test_a_baseline_from_another_cpu_is_measured_again_on_its_commit(repo: Path) -> None:
    out = repo.parent / "measured"
    before = set(Path("/tmp").glob("wsbench-baseline-*"))
    done = run(repo, "local-baseline", "results/base", "--like", str(repo.parent / "here"),
               "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "measuring its commit" in done.stdout
    meta = json.loads((out / "meta.json").read_text())
    commit = git(repo, "rev-parse", "HEAD")
    assert meta["local_baseline"]["commit"] == commit and meta["harness"]["commit"] == commit
    here = json.loads((repo.parent / "here" / "meta.json").read_text())
    assert meta["machine"]["cpu_flags_sha256"] == here["machine"]["cpu_flags_sha256"]
    assert "cpu_flags_sha256" in " ".join(meta["local_baseline"]["because"])
    assert (out / "runs.csv").read_text().count("aiohttp") >= 1
    # The worktree is gone, from git's list and from /tmp.
    assert len(worktrees(repo)) == 1
    assert set(Path("/tmp").glob("wsbench-baseline-*")) <= before


def test_a_baseline_counted_here_is_copied(repo: Path, tmp_path: Path) -> None:
    here = repo.parent / "here"
    done = run(repo, "local-baseline", str(here), "--like", str(here), "--out", str(tmp_path / "c"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "copied" in done.stdout
    assert (tmp_path / "c" / "meta.json").read_bytes() == (here / "meta.json").read_bytes()


def test_a_baseline_whose_code_is_unknown_is_refused_in_one_line(
    repo: Path, tmp_path: Path
) -> None:
    loose = repo / "results" / "loose"
    shutil.copytree(repo / "results" / "base", loose)  # never committed
    done = run(repo, "local-baseline", str(loose), "--like", str(repo.parent / "here"),
               "--out", str(tmp_path / "x"))  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "not committed" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
