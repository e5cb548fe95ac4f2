"""Fan-out through a Redis broker (``--broker-url``): the raw servers' publish goes to one pub/sub
channel too, and every process's subscriber hands what the others published to its receivers.

Written after websockets' own "broadcast with Redis" example (example/django/notifications.py):
subscribe, ``async for message in pubsub.listen()``, broadcast each one. The Socket.IO servers use
python-socketio's AsyncRedisManager instead; the start-up checks it lacks (is the broker there,
is this process subscribed) are here too, so that READY means the same on all four servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from servers.common import BROKER_CHANNEL, BrokerUnreachable

# --- Messages on the channel -----------------------------------------------------------------
# One published message: a type byte (text or binary, so each receiver gets the frame type that
# was published), the publishing process's origin id, then the payload as it came.
TEXT = b"t"
BINARY = b"b"
ORIGIN_BYTES = 16

# Not part of the contract: bounds on the waits for the broker. A start that cannot reach it
# fails within START_TIMEOUT_S (the harness allows 5 s for the whole process); a stop waits at
# most CLOSE_TIMEOUT_S for the connections to close.
CONNECT_TIMEOUT_S = 2.0
START_TIMEOUT_S = 2.0
CLOSE_TIMEOUT_S = 1.0
SUBSCRIBED_POLL_S = 0.01

# Every process publishes on one connection, its commands queued on it in turn, as Node's
# servers do (node-redis has one socket per client). redis-py's default pool instead opens a
# connection for each publish that finds the others busy: at 16,700 WebSocket connections a
# process, python-socketio's echo at 1,000 msgs/s then opened new ones faster than its starved
# loop could finish them, each "Timeout connecting to server" made AsyncRedisManager replace
# its client and pool, and the pool hit redis-py's limit of 100 (MaxConnectionsError):
# docs/measurements.md, scale-out at 50,000 connections. Both kinds of server take these
# options, so the broker path is the same on all of them.
PUBLISHING = {"single_connection_client": True}

Deliver = Callable[[str | bytes], Awaitable[None]]


def encode(origin: bytes, message: str | bytes) -> bytes:
    if isinstance(message, str):
        return TEXT + origin + message.encode()
    return BINARY + origin + message


def decode(data: bytes) -> tuple[bytes, str | bytes]:
    """``(origin, message)``: the message as str if it was published as text, else bytes."""
    kind, origin, payload = data[:1], data[1 : 1 + ORIGIN_BYTES], data[1 + ORIGIN_BYTES :]
    if kind == TEXT:
        return origin, payload.decode()
    if kind == BINARY:
        return origin, payload
    raise ValueError(f"not a fan-out message: type byte {kind!r}")


def client(url: str, subscriber: bool = False) -> Redis:
    # redis-py 8 reads with a 5 s socket_timeout by default, which an idle subscriber's
    # listen() hits (redis/redis-py#4098: it raised TimeoutError, and python-socketio's
    # listener then reconnects in a loop); a subscriber waits for messages as long as it takes.
    # Connecting stays bounded everywhere.
    # A publisher is one connection: see PUBLISHING.
    if subscriber:
        return Redis.from_url(url, socket_timeout=None, socket_connect_timeout=CONNECT_TIMEOUT_S)
    return Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S, **PUBLISHING)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {START_TIMEOUT_S:g} s"
    return str(exc) or type(exc).__name__


# --- Raw servers -----------------------------------------------------------------------------


class Broker:
    """This process's two connections to the broker: one to publish on, one subscribed to
    ``BROKER_CHANNEL``, whose task delivers every message another process published."""

    def __init__(self, url: str, publisher: Redis, subscriber: Redis, pubsub: PubSub) -> None:
        self.url = url
        self.origin = uuid.uuid4().bytes
        self._publisher = publisher
        self._subscriber = subscriber
        self._pubsub = pubsub
        self._relay: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, url: str, deliver: Deliver) -> Broker:
        """Connected and subscribed (Redis confirmed the subscription, so nothing published
        from now on is missed), or BrokerUnreachable within START_TIMEOUT_S."""
        publisher, subscriber = client(url), client(url, subscriber=True)
        broker = cls(url, publisher, subscriber, subscriber.pubsub())
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                await publisher.ping()
                await broker._pubsub.subscribe(BROKER_CHANNEL)
                confirmation = await broker._pubsub.get_message(timeout=START_TIMEOUT_S)
            if confirmation is None or confirmation["type"] != "subscribe":
                raise RedisError(f"no confirmation of the subscription: {confirmation!r}")
        except (RedisError, OSError, TimeoutError) as exc:
            await broker.close()
            raise BrokerUnreachable(url, _reason(exc)) from exc
        broker._relay = asyncio.create_task(broker._deliver_all(deliver))
        return broker

    async def publish(self, message: str | bytes) -> None:
        """To the other processes; this one's receivers are the caller's to deliver to. Two
        attempts, then the message is given up for the other processes (one line on stderr),
        as python-socketio's AsyncRedisManager._publish does: a broker outage loses
        broadcasts, never the publisher's connection."""
        data = encode(self.origin, message)
        for attempts_left in (1, 0):
            try:
                await self._publisher.publish(BROKER_CHANNEL, data)
                return
            except (RedisError, OSError) as exc:
                if not attempts_left:
                    print(f"error: cannot publish to the broker at {self.url}, giving up this "
                          f"message: {_reason(exc)}", file=sys.stderr)  # fmt: skip

    async def _deliver_all(self, deliver: Deliver) -> None:
        """Relay until closed. When the broker goes away, subscribe again after 1 s, then 2,
        4... at most 60 s apart: python-socketio's listener (_redis_listen_with_retries) does
        exactly that, so a broker fault costs both kinds of server the same wait."""
        retry_s = 1.0
        subscribed = True
        while True:
            try:
                if not subscribed:
                    self._pubsub = self._subscriber.pubsub()
                    await self._pubsub.subscribe(BROKER_CHANNEL)
                    subscribed, retry_s = True, 1.0
                async for message in self._pubsub.listen():
                    if message["type"] != "message":
                        continue
                    origin, payload = decode(message["data"])
                    # This process delivered its own messages already, as python-socketio does.
                    if origin != self.origin:
                        await deliver(payload)
            except (RedisError, OSError) as exc:
                print(f"error: lost the broker at {self.url}: {_reason(exc)}; subscribing "
                      f"again in {retry_s:g} s", file=sys.stderr)  # fmt: skip
                subscribed = False
                with contextlib.suppress(RedisError, OSError, TimeoutError):
                    async with asyncio.timeout(CLOSE_TIMEOUT_S):
                        await self._pubsub.aclose()  # type: ignore[no-untyped-call]
                await asyncio.sleep(retry_s)
                retry_s = min(2 * retry_s, 60.0)

    async def close(self) -> None:
        if self._relay is not None:
            self._relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._relay
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]
                await self._subscriber.aclose()
                await self._publisher.aclose()


# --- Socket.IO servers -----------------------------------------------------------------------


async def ping(url: str, through: Redis | None = None) -> None:
    """The broker answers (``through`` that client, which stays connected; else a probe), or
    BrokerUnreachable within START_TIMEOUT_S."""
    probe = client(url) if through is None else through
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            await probe.ping()
    except (RedisError, OSError, TimeoutError) as exc:
        raise BrokerUnreachable(url, _reason(exc)) from exc
    finally:
        if through is None:
            await probe.aclose()


async def wait_subscribed(url: str, client_name: str) -> None:
    """Wait until the broker lists a pub/sub connection named ``client_name`` with a
    subscription (python-socketio's listener subscribes in a task of its own and says nothing
    when it is in), or BrokerUnreachable after START_TIMEOUT_S."""
    probe = client(url)
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            while not any(
                entry.get("name") == client_name and int(entry.get("sub", 0)) > 0
                for entry in await probe.client_list(_type="pubsub")
            ):
                await asyncio.sleep(SUBSCRIBED_POLL_S)
    except (RedisError, OSError, TimeoutError) as exc:
        raise BrokerUnreachable(url, f"not subscribed: {_reason(exc)}") from exc
    finally:
        await probe.aclose()
