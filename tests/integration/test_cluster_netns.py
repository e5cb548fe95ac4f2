"""Issue 21: load across a network the test makes itself. Two network namespaces joined by a
veth pair (198.18.0.0/30, the range RFC 2544 sets aside for benchmarks): a server in one, the
harness with its Dask shards (``--cluster local:2``) in the other, the target reached through
``--allow-network``. Both namespaces are removed whatever happens, and the test checks that
they are. Needs root and iproute2: skipped with the reason elsewhere, failed instead with
WSBENCH_REQUIRE_NETNS=1 (CI runs as root)."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import READY_TIMEOUT_S, REPO_ROOT, TIME_FACTOR, read_ready_port, stop_process

pytestmark = pytest.mark.integration
pytest.importorskip("distributed", reason="pip install 'wsbench[cluster]'")

RUN_TIMEOUT_S = 300.0 * TIME_FACTOR
IP_TIMEOUT_S = 20.0
NETWORK = "198.18.0.0/30"
SERVER_ADDRESS, LOAD_ADDRESS = "198.18.0.1", "198.18.0.2"


def ip(*argv: str) -> str:
    done = subprocess.run(["ip", *argv], capture_output=True, text=True, timeout=IP_TIMEOUT_S)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


def why_not() -> str | None:
    if shutil.which("ip") is None:
        return "iproute2's ip is not installed (apt-get install iproute2)"
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    probe = f"wsb-probe-{os.getpid()}"
    try:
        ip("netns", "add", probe)
    except (RuntimeError, OSError) as exc:
        return f"ip netns does not work here: {exc}"
    ip("netns", "del", probe)
    return None


@pytest.fixture(autouse=True)
def netns_here() -> None:
    why = why_not()
    if why is not None:
        if os.environ.get("WSBENCH_REQUIRE_NETNS") == "1":
            pytest.fail(f"WSBENCH_REQUIRE_NETNS=1 but {why}")
        pytest.skip(why)


@dataclass(frozen=True)
class Namespaces:
    server: str
    load: str
    server_link: str  # the veth end in the server's namespace


def namespace_list() -> set[str]:
    return {line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()}


def kill_everything_in(namespace: str) -> None:
    with_pids = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True,
                               text=True, timeout=IP_TIMEOUT_S)  # fmt: skip
    for pid in with_pids.stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


@pytest.fixture
def namespaces() -> Iterator[Namespaces]:
    tag = str(os.getpid() % 100_000)
    made = Namespaces(f"wsb-srv-{tag}", f"wsb-load-{tag}", f"wsbs{tag}")
    load_link = f"wsbl{tag}"  # interface names: at most 15 characters
    try:
        for namespace in (made.server, made.load):
            ip("netns", "add", namespace)
            ip("-n", namespace, "link", "set", "lo", "up")
        ip("link", "add", made.server_link, "type", "veth", "peer", "name", load_link)
        ip("link", "set", made.server_link, "netns", made.server)
        ip("link", "set", load_link, "netns", made.load)
        ip("-n", made.server, "addr", "add", f"{SERVER_ADDRESS}/30", "dev", made.server_link)
        ip("-n", made.load, "addr", "add", f"{LOAD_ADDRESS}/30", "dev", load_link)
        ip("-n", made.server, "link", "set", made.server_link, "up")
        ip("-n", made.load, "link", "set", load_link, "up")
        yield made
    finally:
        for namespace in (made.server, made.load):
            kill_everything_in(namespace)
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True,
                           timeout=IP_TIMEOUT_S)  # fmt: skip
        # Deleting the namespaces removed the veth pair with them; if one were left, say so.
        subprocess.run(["ip", "link", "del", made.server_link], capture_output=True,
                       timeout=IP_TIMEOUT_S)  # fmt: skip
        left = namespace_list() & {made.server, made.load}
        assert not left, f"namespaces left behind: {left}"


def received_bytes(namespace: str, link: str) -> int:
    stats = json.loads(ip("-n", namespace, "-s", "-j", "link", "show", link))
    return int(stats[0]["stats64"]["rx"]["bytes"])


def test_shards_in_one_namespace_load_a_server_in_another_across_a_veth(
    namespaces: Namespaces, tmp_path: Path
) -> None:
    server = subprocess.Popen(
        ["ip", "netns", "exec", namespaces.server, sys.executable, "-m", "servers.websockets",
         "--host", SERVER_ADDRESS, "--port", "0", "--loop", "uvloop"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        port = read_ready_port(server, READY_TIMEOUT_S * 2)
        before = received_bytes(namespaces.server, namespaces.server_link)
        out = tmp_path / "out"
        done = subprocess.run(
            ["ip", "netns", "exec", namespaces.load, sys.executable, "-m", "bench", "run",
             "--target", f"ws://{SERVER_ADDRESS}:{port}/", "--protocol", "raw",
             "--allow-network", NETWORK, "--cluster", "local:2", "--mode", "closed",
             "--connections", "20", "--duration", "2", "--warmup", "1", "--out", str(out)],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
        )  # fmt: skip
        crossed = received_bytes(namespaces.server, namespaces.server_link) - before
    finally:
        stop_process(server)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with open(out / "runs.csv", newline="") as stream:
        (row,) = csv.DictReader(stream)
    assert (row["status"], row["errors"], row["cluster"]) == ("ok", "0", "local:2"), row["failure"]
    received = int(row["received"])
    shards = [int(pair.split(":")[1]) for pair in row["received_per_worker"].split()]
    assert len(shards) == 2 and sum(shards) == received > 0
    # Every echo's request went through the veth: at least a 32-byte payload each.
    assert crossed >= received * 32, (crossed, received)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["network"] == {"allowed": [NETWORK]}
