"""The calibration server: the fastest echo this machine offers (picows, Cython, on uvloop).

``wsbench calibrate`` drives it with the generator to find the generator's own ceiling, the
most messages a second one generator process can verify and record. It is not a server under
test, but it shares the servers' command line and life cycle (``servers.common``).
"""

from __future__ import annotations

from dataclasses import dataclass

from picows import WSFrame, WSListener, WSTransport, WSUpgradeRequest, ws_create_server

from servers.common import FAIRNESS, run_server


class Echo(WSListener):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        transport.send(frame.msg_type, frame.get_payload_as_bytes())


@dataclass(frozen=True)
class RunningEcho:
    port: int
    server: object

    async def close(self) -> None:
        self.server.close()  # type: ignore[attr-defined]


async def start(host: str, port: int) -> RunningEcho:
    def listener_factory(request: WSUpgradeRequest) -> Echo:
        return Echo()

    server = await ws_create_server(
        listener_factory, host, port, max_frame_size=FAIRNESS.max_message_bytes
    )
    return RunningEcho(port=server.sockets[0].getsockname()[1], server=server)


def main() -> int:
    return run_server(start, "Calibration echo server (picows on uvloop).")


if __name__ == "__main__":
    raise SystemExit(main())
