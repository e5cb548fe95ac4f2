"use strict";
// Socket.IO echo and fan-out server on socket.io 4 ("node-socketio"), with the fairness contract
// (or, in the shipped tier, socket.io's defaults).
//
// The Node counterpart of servers/socketio_common.py: the same events, the same replies (a test
// compares them frame for frame with python-socketio's), the same limits.

const { Server } = require("socket.io");
const { WebSocketServer } = require("ws");

const { startSocketioBroker } = require("./broker");
const { FAIRNESS, GOING_AWAY, burnHandicap, runServer } = require("./common");

// --- WebSocket engine -------------------------------------------------------------------------

// engine.io closes its WebSockets without a status code when the server stops. This engine is
// ws's own server (engine.io's default, the one node-ws runs) that also keeps its open
// WebSockets, so a stop can close them with 1001 (going away) like every other server does;
// it adds one set insertion per connection and nothing per message.
const openWebsockets = new Set();

class TrackingWebSocketServer extends WebSocketServer {
  handleUpgrade(request, socket, head, callback) {
    super.handleUpgrade(request, socket, head, (websocket, ...rest) => {
      openWebsockets.add(websocket);
      websocket.once("close", () => openWebsockets.delete(websocket));
      callback(websocket, ...rest);
    });
  }
}

// --- Origin -----------------------------------------------------------------------------------

/** Same origin only, as python-engineio's default (cors_allowed_origins unset) that the Python
 * servers keep: a request with an Origin must come from this server's own http://host:port
 * (https:// under TLS). socket.io accepts every origin on WebSocket (its `cors` option covers
 * only HTTP), so a page on any site could otherwise open a session to a benchmark server on a
 * developer's machine: kept in both tiers, a safety of the harness, not a setting measured. */
function sameOriginOnly(scheme) {
  return (request, callback) => {
    const origin = request.headers.origin;
    callback(null, !origin || origin === `${scheme}://${request.headers.host}`);
  };
}

// --- Server -----------------------------------------------------------------------------------

/** Arguments and the ack function, when the client asked for one (socket.io passes it last). */
function splitAck(args) {
  return typeof args[args.length - 1] === "function" ? [args.slice(0, -1), args.at(-1)] : [args];
}

// --- Settings by tier -------------------------------------------------------------------------

/** The Server options that the tier decides. `transports` null: the tier's own (equalised: the
 * contract's; shipped: socket.io's default, polling then websocket). */
function tierSettings(tier, transports) {
  if (tier === "shipped") {
    // None of the contract's settings is passed, so socket.io's and engine.io's defaults decide
    // (pings every 25 s answered within 20 s, 1e6-byte messages, permessage-deflate off, gzip
    // of polling responses, every transport and the upgrade offered, the client bundle served;
    // servers/shipped.py records them), but the transports when --transports names them.
    return transports === null ? {} : { transports };
  }
  transports ??= [...FAIRNESS.socketioTransports];
  return {
    // The contract's WebSocket only (no long-polling handshake and upgrade before the first
    // message), unless the polling or connection scenarios ask for polling.
    transports,
    // engine.io offers the upgrade to WebSocket even when that transport is not allowed.
    allowUpgrades: transports.includes("websocket"),
    // Engine.IO's heartbeat cannot be turned off; it is pushed out beyond any run.
    pingInterval: FAIRNESS.engineioPingIntervalMs,
    pingTimeout: FAIRNESS.engineioPingTimeoutMs,
    // Enforced on WebSocket messages too (engine.io's ws maxPayload); the raw servers' limit.
    maxHttpBufferSize: FAIRNESS.maxMessageBytes,
    // Off by default since socket.io 3; said here so no default decides.
    perMessageDeflate: FAIRNESS.compression !== "off",
    // On by default (gzip of long-polling responses); the contract has compression off.
    httpCompression: false,
    // python-socketio serves no client bundle either.
    serveClient: false,
  };
}

async function start(httpServer, { tier, transports, tlsCert, workerId, brokerUrl }) {
  // With a broker, socket.io's Redis adapter carries every broadcast to the other processes;
  // connected before the Server exists, subscribed before listening (below).
  const broker = brokerUrl === null ? null : await startSocketioBroker(brokerUrl);
  const io = new Server(httpServer, {
    ...tierSettings(tier, transports),
    // What the harness needs in both tiers: the same-origin check (above), the engine that
    // lets a stop close WebSockets with 1001, the broker.
    allowRequest: sameOriginOnly(tlsCert === null ? "http" : "https"),
    wsEngine: TrackingWebSocketServer,
    // Without a broker, socket.io's default in-memory adapter, as before.
    ...(broker !== null && { adapter: broker.adapter }),
  });
  const joinAck = workerId === null ? true : workerId;

  io.on("connection", (socket) => {
    // Each echoed message gets exactly one reply: the acknowledgement when the client asked
    // for one, otherwise an echo event emitted back to the sender only.
    socket.on(FAIRNESS.socketioEvent, (...received) => {
      burnHandicap();
      const [args, ack] = splitAck(received);
      if (ack) ack(...args);
      else socket.emit(FAIRNESS.socketioEvent, ...args);
    });

    // A receiver of fan-out: into the room; the ack tells the client it is in (true, or with
    // --worker-id which process it is on).
    socket.on(FAIRNESS.socketioJoinEvent, (...received) => {
      const [, ack] = splitAck(received);
      socket.join(FAIRNESS.fanoutRoom);
      if (ack) ack(joinAck);
    });

    // Which process this connection is on (--worker-id): for the publisher. Without it the
    // server knows no such event (as before), as python-socketio's.
    if (workerId !== null) {
      socket.on(FAIRNESS.socketioWorkerEvent, (...received) => {
        const [, ack] = splitAck(received);
        if (ack) ack(workerId);
      });
    }

    // One emit to the room: socket.io encodes it once (and frames it once for WebSocket). The
    // publisher is not excluded (io.to, not socket.to), as in python-socketio's emit to a
    // room; an ack, when asked for, carries nothing (python-socketio's for a handler that
    // returns None). With a broker, the Redis adapter's broadcast() sends it to this process's
    // room members directly and publishes it once (MessagePack) on the room's channel; every
    // other process's adapter decodes it and broadcasts to its own members, and skips what it
    // published itself (same uid): as python-socketio's AsyncRedisManager. Unlike that, an
    // echo's socket.emit does not go through the adapter, so only room broadcasts cross Redis.
    socket.on(FAIRNESS.socketioPublishEvent, (...received) => {
      const [args, ack] = splitAck(received);
      io.to(FAIRNESS.fanoutRoom).emit(FAIRNESS.socketioFanoutEvent, ...args);
      if (ack) ack();
    });
  });

  // The process exits when this fails (it closed the broker's connections itself).
  if (broker !== null) await broker.waitSubscribed();

  return async () => {
    for (const websocket of openWebsockets) websocket.close(GOING_AWAY, "server shutdown");
    // Ends the remaining (long-polling) sessions, closes the adapter (its unsubscriptions) and
    // the HTTP server once every connection has ended (bounded by common.js); then the
    // broker's connections, once what they had to send is sent.
    await io.close();
    if (broker !== null) await broker.close();
  };
}

// --- Main -------------------------------------------------------------------------------------

runServer({ description: "Socket.IO echo and fan-out server (socket.io).", socketio: true, start });
