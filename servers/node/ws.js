"use strict";
// Plain WebSocket echo and fan-out server on ws 8 ("node-ws"), with the fairness contract (or,
// in the shipped tier, WebSocketServer's defaults).
//
// The Node counterpart of servers/websockets.py and servers/aiohttp.py: the same paths, the
// same replies, the same limits. socket.io's engine runs on this same ws, so node-ws is
// node-socketio's raw counterpart.

const { WebSocket, WebSocketServer } = require("ws");

const { startBroker } = require("./broker");
const {
  FAIRNESS, GOING_AWAY, burnHandicap, closeHttpServer, runServer, workerAnnouncement,
} = require("./common");

// --- Settings from the fairness contract ------------------------------------------------------

// ws's server already has permessage-deflate off by default; said here so no default decides.
const PER_MESSAGE_DEFLATE = FAIRNESS.compression !== "off";
// ws's default is 100 MiB; larger messages are refused with close code 1009, as everywhere.
const MAX_PAYLOAD_BYTES = FAIRNESS.maxMessageBytes;
// ws sends no pings unless the application does: none here, as on the Python servers.

// --- Settings by tier -------------------------------------------------------------------------

// shipped: none of them is passed, so WebSocketServer's defaults decide (permessage-deflate off,
// no pings, 100 MiB messages; servers/shipped.py records them).
const SETTINGS = {
  equalised: { perMessageDeflate: PER_MESSAGE_DEFLATE, maxPayload: MAX_PAYLOAD_BYTES },
  shipped: {},
};

// --- Handlers ---------------------------------------------------------------------------------

const receivers = new Set();
// Scale-out: the text sent first on both fan-out paths (--worker-id), the broker (--broker-url).
let announcement = null;
let broker = null;

function route(websocket, request) {
  // ws does no routing of its own: the fan-out paths are picked here, and every other path
  // gets the echo (the harness connects to "/"), as servers/websockets.py does.
  const path = new URL(request.url, "http://localhost").pathname;
  if (path === FAIRNESS.fanoutPath) receiveBroadcasts(websocket);
  else if (path === FAIRNESS.publishPath) startPublishing(websocket);
  else websocket.on("message", echo);
  // A client that leaves without a closing handshake is routine under load: without a
  // listener, ws would throw the error and end the process.
  websocket.on("error", () => {});
}

/** Send every message back unchanged: text as text, binary as binary. */
function echo(data, isBinary) {
  burnHandicap();
  this.send(data, { binary: isBinary });
}

/** A receiver: gets every published message until it leaves (after the worker announcement,
 * with --worker-id; what it sends is ignored). */
function receiveBroadcasts(websocket) {
  if (announcement !== null) websocket.send(announcement);
  receivers.add(websocket);
  websocket.once("close", () => receivers.delete(websocket));
}

/** A publisher (after the worker announcement, with --worker-id). */
function startPublishing(websocket) {
  if (announcement !== null) websocket.send(announcement);
  websocket.on("message", broker === null ? publish : publishThroughBroker);
}

/** Send every message to every receiver. ws has no broadcast: like its docs' example, this
 * loops over the connections; send() queues without waiting, so a slow receiver does not
 * hold up the others (as websockets' broadcast()). Also what the broker delivers, from the
 * other processes. */
function publish(data, isBinary) {
  for (const receiver of receivers) {
    if (receiver.readyState === WebSocket.OPEN) receiver.send(data, { binary: isBinary });
  }
}

/** With a broker, every message also goes to the other processes' receivers through it. */
function publishThroughBroker(data, isBinary) {
  publish(data, isBinary);
  broker.publish(data, isBinary);
}

// --- Start ------------------------------------------------------------------------------------

async function start(httpServer, { tier, workerId, brokerUrl }) {
  // Subscribed before listening: a receiver that connects after READY misses nothing.
  broker = brokerUrl === null ? null : await startBroker(brokerUrl, publish);
  announcement = workerId === null ? null : workerAnnouncement(workerId);
  // The HTTP server is what the harness needs in both tiers (its address, backlog and TLS).
  const wss = new WebSocketServer({ server: httpServer, ...SETTINGS[tier] });
  wss.on("connection", route);
  // ws passes on the HTTP server's errors (a port in use), which common.js reports.
  wss.on("error", () => {});
  return async () => {
    // Close open connections with 1001 (going away), as the Python servers do, and wait for
    // the clients to answer (bounded by common.js); then the broker's connections.
    for (const websocket of wss.clients) websocket.close(GOING_AWAY, "server shutdown");
    wss.close();
    await closeHttpServer(httpServer);
    if (broker !== null) await broker.close();
  };
}

// --- Main -------------------------------------------------------------------------------------

runServer({ description: "Plain WebSocket echo and fan-out server (ws).", socketio: false, start });
