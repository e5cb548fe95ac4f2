"use strict";
// Node's own clients against a server under test: socket.io-client 4 for the Socket.IO servers,
// ws 8 for the raw ones (tests/integration/test_node_interop.py).
//
//   node interop_client.js socketio http://127.0.0.1:PORT [--transports polling,websocket]
//   node interop_client.js raw ws://127.0.0.1:PORT
//
// The generator speaks the protocols itself; this checks that real clients, with their own
// defaults (a permessage-deflate offer, long-polling first), get what they expect from the
// servers. Prints one JSON summary line on stdout and exits 0, or names the first mismatch on
// stderr and exits 1 (2: bad arguments).

const { isDeepStrictEqual } = require("node:util");

const { io } = require("socket.io-client");
const { WebSocket } = require("ws");

const { FAIRNESS } = require("./common");

const TIMEOUT_MS = Number(process.env.WSBENCH_INTEROP_TIMEOUT_MS || 10000);
// Outside ASCII, so that each side's JSON encoder and decoder take part (python-socketio escapes
// it as \u00e9, socket.io does not: both must read either).
const TEXT = "héllo, wörld ✓";
// Every byte value, so that nothing can be "fixed up" on the way.
const BINARY = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

class Mismatch extends Error {}

function expectEqual(check, got, expected) {
  if (!isDeepStrictEqual(got, expected)) {
    throw new Mismatch(`${check}: expected ${show(expected)}, got ${show(got)}`);
  }
  return "ok";
}

function show(value) {
  if (!Buffer.isBuffer(value)) return JSON.stringify(value);
  return `<${value.length} bytes ${value.toString("hex", 0, 8)}...>`;
}

/** The next `event` on `emitter`, or a Mismatch after TIMEOUT_MS. */
function next(emitter, event, what) {
  return new Promise((resolve, reject) => {
    const fail = () => reject(new Mismatch(`${what}: nothing within ${TIMEOUT_MS} ms`));
    const timer = setTimeout(fail, TIMEOUT_MS);
    emitter.once(event, (...args) => {
      clearTimeout(timer);
      resolve(args);
    });
  });
}

// --- Socket.IO ----------------------------------------------------------------------------------

/** Every exchange the generator relies on, over whichever transport the session is on now. */
async function socketioRound(socket) {
  const { socketioEvent: echo, socketioJoinEvent: join } = FAIRNESS;
  const acked = socket.timeout(TIMEOUT_MS);
  const checks = {};
  socket.emit(echo, TEXT);
  checks.text = expectEqual("text echo", await next(socket, echo, "text echo"), [TEXT]);
  socket.emit(echo, BINARY);
  checks.binary = expectEqual("binary echo", await next(socket, echo, "binary echo"), [BINARY]);
  checks.text_ack = expectEqual("text ack", await acked.emitWithAck(echo, TEXT), TEXT);
  checks.binary_ack = expectEqual("binary ack", await acked.emitWithAck(echo, BINARY), BINARY);
  checks.join_ack = expectEqual("join ack", await acked.emitWithAck(join, null), true);
  socket.emit(FAIRNESS.socketioPublishEvent, TEXT);
  const delivered = await next(socket, FAIRNESS.socketioFanoutEvent, "fan-out");
  checks.fanout = expectEqual("fan-out", delivered, [TEXT]);
  return { transport: socket.io.engine.transport.name, checks };
}

/** A connected socket.io-client session; `options` on top of the client's defaults. */
async function connectSocketio(url, options) {
  // Reconnection off: it would hide a refused or dropped session.
  const socket = io(url, { reconnection: false, timeout: TIMEOUT_MS, forceNew: true, ...options });
  // The transport the session opens on: read now, since the upgrade can be over before the
  // Socket.IO connect.
  socket.firstTransport = socket.io.engine.transport.name;
  const [outcome] = await Promise.race([
    next(socket, "connect", "Socket.IO connect").then(() => ["connected"]),
    next(socket, "connect_error", "Socket.IO connect"),
  ]);
  if (outcome !== "connected") {
    socket.disconnect();
    throw new Mismatch(`Socket.IO connect refused: ${outcome.message}`);
  }
  return socket;
}

/** One session per path a client can take: WebSocket only; or, with polling allowed, polling
 * only (no upgrade) and the client's default, long-polling first and then the upgrade. */
async function socketio(url, transports) {
  const sessions = transports.includes("polling")
    ? [{ upgrade: false, expect: ["polling", "polling"] }, { expect: ["polling", "websocket"] }]
    : [{ transports: ["websocket"], expect: ["websocket", "websocket"] }];
  const rounds = [];
  let extensions = null;
  for (const { expect, ...options } of sessions) {
    const socket = await connectSocketio(url, options);
    try {
      const engine = socket.io.engine;
      const first = socket.firstTransport;
      if (expect[1] === "websocket" && engine.transport.name !== "websocket") {
        await next(engine, "upgrade", "upgrade to WebSocket");
      }
      const round = await socketioRound(socket);
      expectEqual("transports (first, then the exchanges')", [first, round.transport], expect);
      rounds.push({ path: expect.join(" then "), ...round });
      // engine.io-client's WebSocket (ws) offers permessage-deflate; the contract refuses it.
      if (engine.transport.name === "websocket") extensions = engine.transport.ws?.extensions;
    } finally {
      socket.disconnect();
    }
  }
  const client = `socket.io-client ${require("socket.io-client/package.json").version}`;
  return { client, rounds, extensions };
}

// --- Raw WebSocket ------------------------------------------------------------------------------

async function open(url) {
  // ws's client defaults, a permessage-deflate offer included.
  const websocket = new WebSocket(url);
  const [outcome] = await Promise.race([
    next(websocket, "open", `open ${url}`).then(() => ["open"]),
    next(websocket, "error", `open ${url}`),
  ]);
  if (outcome !== "open") throw new Mismatch(`cannot open ${url}: ${outcome.message}`);
  return websocket;
}

async function message(websocket, what) {
  const [data, isBinary] = await next(websocket, "message", what);
  return isBinary ? { binary: data } : { text: data.toString() };
}

async function raw(url) {
  const base = url.replace(/\/$/, "");
  const checks = {};
  const echo = await open(`${base}/`);
  const receiver = await open(base + FAIRNESS.fanoutPath);
  const publisher = await open(base + FAIRNESS.publishPath);
  try {
    echo.send(TEXT);
    checks.text = expectEqual("text echo", await message(echo, "text echo"), { text: TEXT });
    echo.send(BINARY);
    const echoed = await message(echo, "binary echo");
    checks.binary = expectEqual("binary echo", echoed, { binary: BINARY });
    publisher.send(TEXT);
    const text = await message(receiver, "fan-out");
    checks.fanout_text = expectEqual("fan-out text", text, { text: TEXT });
    publisher.send(BINARY);
    const binary = await message(receiver, "fan-out");
    checks.fanout_binary = expectEqual("fan-out binary", binary, { binary: BINARY });
    const client = `ws ${require("ws/package.json").version}`;
    return { client, rounds: [{ transport: "websocket", checks }], extensions: echo.extensions };
  } finally {
    for (const websocket of [echo, receiver, publisher]) websocket.close(1000);
  }
}

// --- Main ---------------------------------------------------------------------------------------

async function main(argv) {
  const [protocol, url, flag, list] = argv;
  const transports = flag === "--transports" ? list.split(",") : ["websocket"];
  if (!["socketio", "raw"].includes(protocol) || !url || (flag && flag !== "--transports")) {
    process.stderr.write("usage: node interop_client.js socketio|raw URL [--transports LIST]\n");
    return 2;
  }
  try {
    const summary = protocol === "socketio" ? await socketio(url, transports) : await raw(url);
    process.stdout.write(`${JSON.stringify({ protocol, url, ...summary })}\n`);
    return 0;
  } catch (error) {
    process.stderr.write(`mismatch: ${error instanceof Mismatch ? error.message : error.stack}\n`);
    return 1;
  }
}

main(process.argv.slice(2)).then((code) => process.exit(code));
