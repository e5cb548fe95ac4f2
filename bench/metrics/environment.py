"""The environment stamp written to meta.json: machine, software, pinning, fairness, command."""

from __future__ import annotations

import hashlib
import os
import platform
import resource
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from bench.catalog import SERVERS
from servers.common import FAIRNESS

# Libraries whose versions move results, beyond the servers' own (their records name those):
# the generator's stack and the analysis.
HOT_PATH_PACKAGES = (
    "httptools", "uvloop", "picows", "hdrhistogram", "numpy", "pandas", "psutil",
    "websockets", "aiohttp", "python-socketio", "python-engineio",  # the library clients
)  # fmt: skip


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def cpu_model() -> str:
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def cpu_flags_digest() -> str | None:
    """The first 16 hex digits of the SHA-256 of the CPU's feature flags, sorted (None when
    /proc/cpuinfo has none). The model name alone does not tell the CPUs a VM may land on
    apart ("AMD EPYC"), and the flags decide which variants of the C library's string and
    memory routines run, so they move instruction counts (bench.modes.instructions)."""
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        if line.startswith("flags"):
            flags = " ".join(sorted(line.split(":", 1)[1].split()))
            return hashlib.sha256(flags.encode()).hexdigest()[:16]
    return None


def libc_version() -> str:
    """The C library and its version ("glibc 2.36"): the servers' malloc settings
    (``servers.common.settle_malloc``) apply only on glibc."""
    name, version = platform.libc_ver()
    return f"{name} {version}".strip() or "unknown"


def distribution_versions(names: tuple[str, ...]) -> dict[str, str | None]:
    """Installed versions of these Python distributions (None: not installed)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def package_versions() -> dict[str, str | None]:
    """Python distributions by name, npm packages as ``npm:NAME`` and Node.js itself as
    ``node`` (None: not installed)."""
    versions = distribution_versions(HOT_PATH_PACKAGES)
    for info in SERVERS.values():
        prefix = "npm:" if info.runtime == "node" else ""
        versions.update({prefix + k: v for k, v in info.versions().items()})
    if any(info.runtime == "node" for info in SERVERS.values()):
        versions["node"] = node_version()
    return dict(sorted(versions.items()))


def node_version() -> str | None:
    """``node --version`` without its "v" (None when Node.js is not installed)."""
    node = shutil.which("node")
    if node is None:
        return None
    try:
        done = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip().removeprefix("v") or None


def git_state(root: Path) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=5, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD")
    # The harness's own files: results/ is what it writes (a run into results/reference would
    # otherwise stamp itself as run from a modified harness).
    status = git("status", "--porcelain", "--", ".", ":(exclude)results")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def stamp(argv: list[str], pinning: dict[str, Any], root: Path) -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": argv,
        "harness": git_state(root),
        "machine": {
            "hostname": platform.node(),
            "cpu_model": cpu_model(),
            "cpu_flags_sha256": cpu_flags_digest(),
            "cpu_count": os.cpu_count(),
            "cpus_available": sorted(os.sched_getaffinity(0)),
            "memory_bytes": psutil.virtual_memory().total,
            "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        },
        "os": {
            "kernel": platform.release(),
            "system": platform.system(),
            "libc": libc_version(),
            "open_files_limit": {"soft": soft, "hard": hard},
            "local_port_range": _read("/proc/sys/net/ipv4/ip_local_port_range"),
        },
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "build": list(platform.python_build()),
            "compiler": platform.python_compiler(),
            "executable": sys.executable,
        },
        "packages": package_versions(),
        "pinning": pinning,
        "fairness": FAIRNESS.as_dict(),
        "generator": {
            "client_stack": "picows on uvloop (raw WebSocket and Engine.IO/Socket.IO spoken "
            "by the generator itself)",
            "compression_offered": False,
            "latency_unit": "us",
            "histogram": "HdrHistogram, 3 significant figures",
        },
    }
