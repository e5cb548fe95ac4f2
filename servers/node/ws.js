"use strict";
// Plain WebSocket echo and fan-out server on ws 8 ("node-ws"), with the fairness contract.
//
// The Node counterpart of servers/websockets.py and servers/aiohttp.py: the same paths, the
// same replies, the same limits. socket.io's engine runs on this same ws, so node-ws is
// node-socketio's raw counterpart.

const { WebSocket, WebSocketServer } = require("ws");

const { FAIRNESS, GOING_AWAY, burnHandicap, closeHttpServer, runServer } = require("./common");

// --- Settings from the fairness contract ------------------------------------------------------

// ws's server already has permessage-deflate off by default; said here so no default decides.
const PER_MESSAGE_DEFLATE = FAIRNESS.compression !== "off";
// ws's default is 100 MiB; larger messages are refused with close code 1009, as everywhere.
const MAX_PAYLOAD_BYTES = FAIRNESS.maxMessageBytes;
// ws sends no pings unless the application does: none here, as on the Python servers.

// --- Handlers ---------------------------------------------------------------------------------

const receivers = new Set();

function route(websocket, request) {
  // ws does no routing of its own: the fan-out paths are picked here, and every other path
  // gets the echo (the harness connects to "/"), as servers/websockets.py does.
  const path = new URL(request.url, "http://localhost").pathname;
  if (path === FAIRNESS.fanoutPath) receiveBroadcasts(websocket);
  else if (path === FAIRNESS.publishPath) websocket.on("message", publish);
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

/** A receiver: gets every published message until it leaves (what it sends is ignored). */
function receiveBroadcasts(websocket) {
  receivers.add(websocket);
  websocket.once("close", () => receivers.delete(websocket));
}

/** Send every message to every receiver. ws has no broadcast: like its docs' example, this
 * loops over the connections; send() queues without waiting, so a slow receiver does not
 * hold up the others (as websockets' broadcast()). */
function publish(data, isBinary) {
  for (const receiver of receivers) {
    if (receiver.readyState === WebSocket.OPEN) receiver.send(data, { binary: isBinary });
  }
}

// --- Start ------------------------------------------------------------------------------------

function start(httpServer) {
  const wss = new WebSocketServer({
    server: httpServer,
    perMessageDeflate: PER_MESSAGE_DEFLATE,
    maxPayload: MAX_PAYLOAD_BYTES,
  });
  wss.on("connection", route);
  // ws passes on the HTTP server's errors (a port in use), which common.js reports.
  wss.on("error", () => {});
  return async () => {
    // Close open connections with 1001 (going away), as the Python servers do, and wait for
    // the clients to answer (bounded by common.js).
    for (const websocket of wss.clients) websocket.close(GOING_AWAY, "server shutdown");
    wss.close();
    await closeHttpServer(httpServer);
  };
}

// --- Main -------------------------------------------------------------------------------------

runServer({ description: "Plain WebSocket echo and fan-out server (ws).", socketio: false, start });
