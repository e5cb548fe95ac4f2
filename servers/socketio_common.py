"""The Socket.IO server both Socket.IO hosts share: the tier's settings and the echo handler.

``socketio_aiohttp`` and ``socketio_asgi`` differ only in how this server is hosted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from contextvars import ContextVar
from typing import Any

import socketio

from servers import broker
from servers.common import FAIRNESS, SOCKETIO_BROKER_CHANNEL, Tier, burn_handicap

# Not part of the contract: the longest a stop waits for clients to be sent Engine.IO's close.
DISCONNECT_TIMEOUT_S = 1.0

# --- Ack detection ---------------------------------------------------------------------------

# True while the event being handled carries an ack id, i.e. the client wants the reply as an
# acknowledgement. python-socketio 5.18 sends the handler's return value as the ack when an id is
# present and drops it otherwise, but never tells the handler which case it is in.
_ack_requested: ContextVar[bool] = ContextVar("ack_requested", default=False)


# socketio ships no type hints, so mypy sees AsyncServer as Any.
class _AckAwareServer(socketio.AsyncServer):  # type: ignore[misc]
    """``AsyncServer`` whose event handlers can ask ``_ack_requested`` whether an ack is wanted.

    There is no public hook for this, so ``_handle_event`` (the private method that receives the
    ack id) is wrapped. With ``async_handlers=True`` it starts the handler in a new task, which
    copies the context at creation, so the handler sees the value set here; with ``False`` the
    handler runs inside this call. Either way it costs one ContextVar set/reset per event.
    """

    async def _handle_event(
        self, eio_sid: str, namespace: str | None, ack_id: int | None, data: list[Any]
    ) -> None:
        token = _ack_requested.set(ack_id is not None)
        try:
            await super()._handle_event(eio_sid, namespace, ack_id, data)
        finally:
            _ack_requested.reset(token)


# --- Server ----------------------------------------------------------------------------------


def tier_settings(tier: Tier, transports: tuple[str, ...] | None) -> dict[str, Any]:
    """The AsyncServer arguments that the tier decides. ``transports`` None: the tier's own
    (equalised: the contract's; shipped: python-engineio's default, polling then websocket)."""
    if tier == "shipped":
        # None of the contract's settings is passed, so python-socketio's and python-engineio's
        # defaults decide (pings every 25 s answered within 20 s, 1,000,000-byte messages, every
        # transport and the upgrade offered, a task per event; servers/shipped.py reads them),
        # but the transports when --transports names them.
        return {} if transports is None else {"transports": list(transports)}
    transports = FAIRNESS.socketio_transports if transports is None else transports
    return {
        # The contract's WebSocket only (no long-polling handshake and upgrade before the first
        # message), unless the polling or connection scenarios ask for polling.
        "transports": list(transports),
        # engineio offers the upgrade to WebSocket even when that transport is not allowed.
        "allow_upgrades": "websocket" in transports,
        # Engine.IO's heartbeat cannot be turned off; it is pushed out beyond any run.
        "ping_interval": FAIRNESS.engineio_ping_interval_s,
        "ping_timeout": FAIRNESS.engineio_ping_timeout_s,
        # Enforced on WebSocket messages too; the same limit as the raw servers.
        "max_http_buffer_size": FAIRNESS.max_message_bytes,
        "async_handlers": FAIRNESS.socketio_async_handlers,
    }


def create_socketio_server(
    async_mode: str,
    transports: tuple[str, ...] | None = FAIRNESS.socketio_transports,
    worker_id: int | None = None,
    broker_url: str | None = None,
    tier: Tier = "equalised",
) -> socketio.AsyncServer:
    """A Socket.IO server with the tier's settings (``tier_settings``) that echoes
    ``FAIRNESS.socketio_event`` and broadcasts ``FAIRNESS.socketio_publish_event`` to the
    fan-out room.

    Each echoed message gets exactly one reply: the acknowledgement when the client asked for
    one, otherwise an ``echo`` event emitted back to the sender only. With ``worker_id``, the
    join is acknowledged with it instead of ``true``, and the worker event answers it. With
    ``broker_url``, the fan-out goes through Redis (python-socketio's AsyncRedisManager); call
    ``start_socketio_broker`` before accepting connections.
    """
    sio = _AckAwareServer(
        client_manager=None if broker_url is None else _redis_manager(broker_url),
        async_mode=async_mode,
        **tier_settings(tier, transports),
        # Logging is off in both tiers (python-socketio's default too): even filtered log calls
        # format their arguments per packet, and stdout carries only READY.
        logger=False,
        engineio_logger=False,
    )

    async def echo(sid: str, data: Any) -> Any:
        burn_handicap()
        if _ack_requested.get():
            return data  # python-socketio sends it back as the ack packet
        await sio.emit(FAIRNESS.socketio_event, data, to=sid, namespace=FAIRNESS.socketio_namespace)
        return None

    join_ack: bool | int = True if worker_id is None else worker_id

    async def join(sid: str, data: Any) -> bool | int:
        """A receiver of fan-out: into the room; the ack tells the client it is in (and, with
        --worker-id, which process it is on)."""
        await sio.enter_room(sid, FAIRNESS.fanout_room, namespace=FAIRNESS.socketio_namespace)
        return join_ack

    async def worker(sid: str, data: Any) -> int | None:
        """Which process this connection is on (--worker-id): for the publisher."""
        return worker_id

    async def publish(sid: str, data: Any) -> None:
        """One emit to the room: python-socketio encodes it once and queues it per client.
        With a broker (AsyncPubSubManager.emit in python-socketio 5.18) the emit delivers to
        this process's clients directly, then publishes the event once to Redis; every other
        process's listener task emits it to its own clients, and skips what it published
        itself (same host_id). So only deliveries to other processes cross the broker; the raw
        servers' broker path (servers/broker.py) does the same."""
        await sio.emit(
            FAIRNESS.socketio_fanout_event, data, to=FAIRNESS.fanout_room,
            namespace=FAIRNESS.socketio_namespace,
        )  # fmt: skip

    namespace = FAIRNESS.socketio_namespace
    sio.on(FAIRNESS.socketio_event, echo, namespace=namespace)
    sio.on(FAIRNESS.socketio_join_event, join, namespace=namespace)
    sio.on(FAIRNESS.socketio_publish_event, publish, namespace=namespace)
    if worker_id is not None:  # without --worker-id, the server knows no such event (as before)
        sio.on(FAIRNESS.socketio_worker_event, worker, namespace=namespace)
    return sio


def _redis_manager(url: str) -> socketio.AsyncRedisManager:
    return socketio.AsyncRedisManager(
        url,
        channel=SOCKETIO_BROKER_CHANNEL,
        redis_options={
            # See servers.broker.client: an idle listener must not time out (redis-py 8).
            "socket_timeout": None,
            "socket_connect_timeout": broker.CONNECT_TIMEOUT_S,
            # One connection to publish on, as the raw servers (see broker.PUBLISHING); the
            # listener's pub/sub connection is its own either way.
            **broker.PUBLISHING,
            # Lets start_socketio_broker find this process's subscription on the broker.
            "client_name": f"wsbench-socketio-{os.getpid()}-{uuid.uuid4().hex[:8]}",
        },
    )


async def start_socketio_broker(sio: socketio.AsyncServer) -> None:
    """With a broker: check it answers, start python-socketio's listener and wait until it is
    subscribed, so that a client connecting after READY misses no broadcast. Raises
    BrokerUnreachable (within broker.START_TIMEOUT_S each step). Without one: nothing."""
    manager = sio.manager
    if not isinstance(manager, socketio.AsyncRedisManager):
        return
    await broker.ping(manager.redis_url)
    # python-socketio starts the listener on the first Engine.IO connection
    # (AsyncServer._handle_eio_connect); started here instead, as it would be there.
    sio.manager_initialized = True
    manager.initialize()
    try:
        await broker.wait_subscribed(manager.redis_url, manager.redis_options["client_name"])
        # The publishing connection opens now, as the raw servers' does (Broker.start), not
        # at the first emit of a busy window.
        await broker.ping(manager.redis_url, through=manager.redis)
    except BaseException:
        await _stop_redis_manager(manager)
        raise


async def _stop_redis_manager(manager: socketio.AsyncRedisManager) -> None:
    """Stop the listener task and close its Redis connections (sio.shutdown() leaves both)."""
    manager.thread.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await manager.thread
    with contextlib.suppress(Exception):
        async with asyncio.timeout(broker.CLOSE_TIMEOUT_S):
            if manager.pubsub is not None:
                await manager.pubsub.aclose()
            if manager.redis is not None:
                await manager.redis.aclose()


async def stop_socketio_server(sio: socketio.AsyncServer) -> None:
    """Close every client's connection, then stop python-socketio's background tasks.

    Call it before stopping the host: an aiohttp host would otherwise wait for the handlers of
    connections that are still open. Each client gets Engine.IO's close packet ``1``, on which a
    Socket.IO client closes the WebSocket, as the raw servers close theirs with 1001.
    """
    # engineio's disconnect() with no sid closes all sockets, but fails on none (asyncio.wait([])).
    if sio.eio.sockets:
        # Bounded because engineio 4.15's close() waits for the socket's writer task to send the
        # close packet, and a connection that is ending at that moment has no writer left: the
        # wait would never end (seen when clients leave just before the stop).
        # ValueError: the last client left between the check and the start of wait_for's task
        # (asyncio.wait of an empty set; seen once in a full test run on a loaded host).
        with contextlib.suppress(TimeoutError, ValueError):
            await asyncio.wait_for(sio.eio.disconnect(), DISCONNECT_TIMEOUT_S)
    await sio.shutdown()
    if isinstance(sio.manager, socketio.AsyncRedisManager) and sio.manager_initialized:
        await _stop_redis_manager(sio.manager)
