"use strict";
// Fan-out through a Redis broker (--broker-url), the counterpart of servers/broker.py: node-ws
// publishes to one pub/sub channel too, and every process's subscriber hands what the others
// published to its receivers; node-socketio uses @socket.io/redis-adapter, with the start-up
// checks it lacks (is the broker there, is this process subscribed), so that READY means the
// same on every server. The Redis client is node-redis ("redis"), the adapter's own choice.

const crypto = require("node:crypto");

const { BROKER_CHANNEL, BrokerUnreachable, SOCKETIO_BROKER_KEY } = require("./common");

// --- Messages on the channel ------------------------------------------------------------------
// servers/broker.py's: a type byte (text or binary, so each receiver gets the frame type that
// was published), the publishing process's origin id, then the payload as it came.
const TEXT = "t".charCodeAt(0);
const BINARY = "b".charCodeAt(0);
const ORIGIN_BYTES = 16;

// Not part of the contract: bounds on the waits for the broker, servers/broker.py's. A start
// that cannot reach it fails within START_TIMEOUT_MS (the harness allows 5 s for the whole
// process); a stop waits at most CLOSE_TIMEOUT_MS for the connections to close.
const CONNECT_TIMEOUT_MS = 2000;
const START_TIMEOUT_MS = 2000;
const CLOSE_TIMEOUT_MS = 1000;
const SUBSCRIBED_POLL_MS = 10;
// A connection lost after the start is tried again after 1 s, then 2, 4... at most 60 s apart,
// as python-socketio's listener and servers/broker.py do (node-redis tries once at once first).
const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 60000;

function encode(origin, data, isBinary) {
  return Buffer.concat([Buffer.of(isBinary ? BINARY : TEXT), origin, data]);
}

/** `{ origin, payload, isBinary }`, or null when `message` is no fan-out message. */
function decode(message) {
  const kind = message[0];
  if (kind !== TEXT && kind !== BINARY) return null;
  return {
    origin: message.subarray(1, 1 + ORIGIN_BYTES),
    payload: message.subarray(1 + ORIGIN_BYTES),
    isBinary: kind === BINARY,
  };
}

/** One line for an error (node-redis may give an AggregateError, whose message is empty). */
function reason(error) {
  if (error instanceof StartTimeout) return `no answer within ${START_TIMEOUT_MS / 1000} s`;
  const first = error instanceof AggregateError && error.errors.length ? error.errors[0] : error;
  return String(first?.message || first?.code || first?.name || first).split("\n")[0];
}

class StartTimeout extends Error {}

/** `promise`, or a StartTimeout rejection after START_TIMEOUT_MS. */
function withinStartTimeout(promise) {
  let timer;
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new StartTimeout()), START_TIMEOUT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * A node-redis client for `url`, not yet connected. Until `started` is set on the returned
 * state, a failed connection is not retried (the start reports it, once); from then on it is
 * retried as RETRY_* say, one line on stderr a failure. `options`: more createClient options.
 */
function client(url, options = {}) {
  // Loaded here, not at the top: a server without --broker-url loads nothing it does not use,
  // so its memory and start-up are what they were before scale-out.
  const { createClient } = require("redis");
  const state = { started: false };
  const redis = createClient({
    url,
    ...options,
    socket: {
      connectTimeout: CONNECT_TIMEOUT_MS,
      reconnectStrategy: (retries) =>
        state.started && Math.min(RETRY_FIRST_MS * 2 ** retries, RETRY_MAX_MS),
    },
  });
  // Without a listener an error event would end the process; at start, connect() rejects with
  // the same error, which the caller reports.
  redis.on("error", (error) => {
    if (state.started) {
      const line = `error: lost the broker at ${url}: ${reason(error)}; connecting again`;
      process.stderr.write(`${line}\n`);
    }
  });
  return { redis, state };
}

/** Close each client, waiting at most CLOSE_TIMEOUT_MS for what it still has to send. */
async function closeClients(clients) {
  let timer;
  const bound = new Promise((resolve) => {
    timer = setTimeout(resolve, CLOSE_TIMEOUT_MS);
  });
  const closing = clients.map(async ({ redis, state }) => {
    state.started = false; // no reconnection from here on
    if (redis.isOpen) await redis.close();
  });
  await Promise.race([Promise.allSettled(closing), bound]);
  clearTimeout(timer);
}

// --- node-ws ----------------------------------------------------------------------------------

/**
 * This process's two connections to the broker: one to publish on, one subscribed to
 * BROKER_CHANNEL that calls `deliver(payload, isBinary)` for every message another process
 * published. Resolves once Redis confirmed the subscription (nothing published from then on is
 * missed), or rejects with BrokerUnreachable within START_TIMEOUT_MS.
 */
async function startBroker(url, deliver) {
  const origin = crypto.randomBytes(ORIGIN_BYTES);
  // No offline queue: a publish while the broker is away fails at once instead of waiting in
  // memory for it, as a python-socketio or servers/broker.py publish gives up (see publish).
  const publisher = client(url, { disableOfflineQueue: true });
  const subscriber = client(url);
  const relay = (message) => {
    const decoded = decode(message);
    // This process delivered its own messages already, as python-socketio does.
    if (decoded !== null && !decoded.origin.equals(origin)) {
      deliver(decoded.payload, decoded.isBinary);
    }
  };
  try {
    await withinStartTimeout((async () => {
      await publisher.redis.connect();
      await publisher.redis.ping();
      await subscriber.redis.connect();
      // Resolves on Redis's confirmation; `true`: messages as Buffers, as they were published.
      await subscriber.redis.subscribe(BROKER_CHANNEL, relay, true);
    })());
  } catch (error) {
    await closeClients([publisher, subscriber]);
    throw new BrokerUnreachable(url, reason(error));
  }
  publisher.state.started = subscriber.state.started = true;

  /** To the other processes; this one's receivers are the caller's to deliver to. Two
   * attempts, then the message is given up for the other processes (one line on stderr), as
   * servers/broker.py does: a broker outage loses broadcasts, never the publisher's connection.
   * Not awaited: node-redis sends the commands in order on one connection. */
  const publish = (data, isBinary) => {
    const message = encode(origin, data, isBinary);
    publisher.redis.publish(BROKER_CHANNEL, message)
      .catch(() => publisher.redis.publish(BROKER_CHANNEL, message))
      .catch((error) => {
        process.stderr.write(`error: cannot publish to the broker at ${url}, giving up this ` +
          `message: ${reason(error)}\n`);
      });
  };
  return { publish, close: () => closeClients([publisher, subscriber]) };
}

// --- node-socketio ----------------------------------------------------------------------------

/**
 * @socket.io/redis-adapter's two clients, connected (or BrokerUnreachable within
 * START_TIMEOUT_MS), and `adapter` to give socket.io's Server. Call `waitSubscribed()` once
 * the Server exists: the adapter subscribes when the namespace is created and does not say
 * when Redis confirmed it.
 */
async function startSocketioBroker(url) {
  const { createAdapter } = require("@socket.io/redis-adapter");
  // Lets waitSubscribed find this process's subscriptions on the broker.
  const name = `wsbench-socketio-node-${process.pid}-${crypto.randomBytes(4).toString("hex")}`;
  const publisher = client(url);
  const subscriber = client(url, { name });
  const close = () => closeClients([publisher, subscriber]);
  try {
    await withinStartTimeout((async () => {
      await publisher.redis.connect();
      await publisher.redis.ping();
      await subscriber.redis.connect();
    })());
  } catch (error) {
    await close();
    throw new BrokerUnreachable(url, reason(error));
  }

  /** Until the broker lists the subscriber with its pattern (broadcasts to rooms) and its
   * channels (requests between servers), or BrokerUnreachable after START_TIMEOUT_MS. */
  const waitSubscribed = async () => {
    try {
      await withinStartTimeout((async () => {
        const subscribed = (entry) => entry.name === name && entry.psub > 0 && entry.sub > 0;
        while (!(await publisher.redis.clientList({ TYPE: "pubsub" })).some(subscribed)) {
          await new Promise((resolve) => setTimeout(resolve, SUBSCRIBED_POLL_MS));
        }
      })());
    } catch (error) {
      await close();
      throw new BrokerUnreachable(url, `not subscribed: ${reason(error)}`);
    }
    publisher.state.started = subscriber.state.started = true;
  };
  const adapter = createAdapter(publisher.redis, subscriber.redis, { key: SOCKETIO_BROKER_KEY });
  return { adapter, waitSubscribed, close };
}

module.exports = { startBroker, startSocketioBroker };
