"use strict";
// What both Node.js servers share: the fairness contract, the command line and the life cycle.
//
// The Node counterpart of servers/common.py, so that the Node and Python servers read alike:
// each server only says how its library serves on an HTTP server; this module parses
// --host/--port, prints "READY <port>" once listening and stops cleanly on SIGTERM or SIGINT.

const fs = require("node:fs");
const http = require("node:http");
const util = require("node:util");

// --- The fairness contract --------------------------------------------------------------------
// The values of servers/common.py's FairnessContract (a test compares them with the running
// servers). Node's libraries default differently on most lines (shared/FIELD-NOTES.md).

const FAIRNESS = Object.freeze({
  // permessage-deflate is off everywhere (socket.io and ws servers default to off already).
  compression: "off",
  maxMessageBytes: 1 << 20,
  // Engine.IO's heartbeat cannot be turned off: it is pushed out beyond any run.
  engineioPingIntervalMs: 3600 * 1000,
  engineioPingTimeoutMs: 60 * 1000,
  socketioTransports: Object.freeze(["websocket"]),
  socketioEvent: "echo",
  fanoutPath: "/fanout",
  publishPath: "/publish",
  fanoutRoom: "fanout",
  socketioJoinEvent: "join",
  socketioPublishEvent: "publish",
  socketioFanoutEvent: "fanout",
  // Node's listen defaults to 511; the contract's queue is the same on every server.
  listenBacklog: 4096,
});

const ENGINEIO_TRANSPORTS = ["websocket", "polling"];
// Node has one event loop; the flag exists so that a harness can pass --loop as it does to the
// Python servers (their asyncio or uvloop).
const LOOPS = ["libuv"];
// Not part of the contract: the longest a stop waits for clients to answer the close, as the
// Python servers' SHUTDOWN_TIMEOUT_S.
const SHUTDOWN_TIMEOUT_MS = 2000;
// WebSocket close code 1001 (going away), what every server sends its clients when it stops.
const GOING_AWAY = 1001;

// --- Handicap ---------------------------------------------------------------------------------
// A known, adjustable slowdown for testing a regression gate (servers/common.py): every server
// calls burnHandicap() once per echoed message. Zero (the default) costs one comparison.
const MAX_HANDICAP_US = 100000;
let handicapNs = 0n;

function burnHandicap() {
  if (handicapNs) {
    const deadline = process.hrtime.bigint() + handicapNs;
    while (process.hrtime.bigint() < deadline) {
      // Spin: hold the CPU, like real work would.
    }
  }
}

// --- Command line -----------------------------------------------------------------------------

function usageError(description, message) {
  process.stderr.write(
    `usage: node ${process.argv[1]} [--host HOST] [--port PORT] [--loop libuv] ` +
      `[--transports LIST] [--handicap-us N]\n${description}\nerror: ${message}\n`,
  );
  process.exit(2);
}

/** --host/--port/--loop/--transports/--handicap-us, as servers/common.py's parse_args. */
function parseArgs(argv, description) {
  const args = {
    host: "127.0.0.1", port: 0, loop: "libuv", transports: "websocket", handicapUs: 0,
  };
  const names = { "--host": "host", "--port": "port", "--loop": "loop",
    "--transports": "transports", "--handicap-us": "handicapUs" };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "-h" || argv[i] === "--help") {
      process.stdout.write(`${description}\n`);
      process.exit(0);
    }
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    const value = inline ?? argv[++i];
    if (!(flag in names) || value === undefined) usageError(description, `bad argument ${argv[i]}`);
    args[names[flag]] = value;
  }
  args.port = Number(args.port);
  if (!Number.isInteger(args.port) || args.port < 0 || args.port > 65535) {
    usageError(description, "--port: a number from 0 to 65535");
  }
  if (!LOOPS.includes(args.loop)) usageError(description, `--loop: Node has only ${LOOPS}`);
  args.handicapUs = Number(args.handicapUs);
  if (!(args.handicapUs >= 0 && args.handicapUs <= MAX_HANDICAP_US)) {
    usageError(description, `--handicap-us: a number of microseconds from 0 to ${MAX_HANDICAP_US}`);
  }
  args.transports = args.transports.split(",").filter(Boolean);
  if (!args.transports.length || args.transports.some((t) => !ENGINEIO_TRANSPORTS.includes(t))) {
    usageError(description, `--transports: comma list of ${ENGINEIO_TRANSPORTS.join(", ")}`);
  }
  return args;
}

// --- Event-loop health ------------------------------------------------------------------------
// As the Python servers do, sample how late a 10 ms timer fires and, when the harness names a
// file in WSBENCH_LOOP_LAG_FILE, write "<monotonic ns> <lag ns>" lines there on stop. Node's
// hrtime is CLOCK_MONOTONIC, the harness's clock. The cost, 100 wake-ups a second, is the same
// on every server. libuv counts timers in whole milliseconds of a time cached per loop turn, so
// a timer can fire up to 1 ms before 10 ms have passed on hrtime: that is no lag, recorded as 0
// (Node's lag is about 1 ms coarser than asyncio's, which fires timers to the nanosecond).
const LOOP_LAG_FILE_ENV = "WSBENCH_LOOP_LAG_FILE";
const LOOP_LAG_INTERVAL_MS = 10;

function sampleLoopLag() {
  // Pairs of int64 in a growing typed array, as the Python servers' array("q"): 16 bytes a
  // sample, so the memory scenarios see the same small growth on every server.
  let samples = new BigInt64Array(4096);
  let length = 0;
  const intervalNs = BigInt(LOOP_LAG_INTERVAL_MS * 1e6);
  let dueNs = process.hrtime.bigint() + intervalNs;
  const tick = () => {
    const nowNs = process.hrtime.bigint();
    if (length === samples.length) {
      const grown = new BigInt64Array(2 * samples.length);
      grown.set(samples);
      samples = grown;
    }
    samples[length++] = nowNs;
    samples[length++] = nowNs > dueNs ? nowNs - dueNs : 0n;
    dueNs = process.hrtime.bigint() + intervalNs;
    timer = setTimeout(tick, LOOP_LAG_INTERVAL_MS);
  };
  let timer = setTimeout(tick, LOOP_LAG_INTERVAL_MS);
  return () => {
    clearTimeout(timer);
    const path = process.env[LOOP_LAG_FILE_ENV];
    if (!path) return;
    const lines = [];
    for (let i = 0; i < length; i += 2) lines.push(`${samples[i]} ${samples[i + 1]}\n`);
    fs.writeFileSync(path, lines.join(""));
  };
}

// --- Life cycle -------------------------------------------------------------------------------

/**
 * Entry point shared by both servers: parse argv, serve until SIGTERM/SIGINT, exit 0.
 *
 * `start(httpServer, args)` attaches the library to the (not yet listening) HTTP server and
 * returns an async `close()` that closes every open connection with 1001. Raw WebSocket
 * servers (`socketio` false) have no transport but WebSocket and refuse any other.
 */
function runServer({ description, socketio, start }) {
  const args = parseArgs(process.argv.slice(2), description);
  if (!socketio && args.transports.join(",") !== "websocket") {
    process.stderr.write("error: --transports: a raw WebSocket server has only 'websocket'\n");
    process.exit(2);
  }
  handicapNs = BigInt(Math.round(args.handicapUs * 1000));
  // Node raises its soft open-file limit to the hard limit at start, as the Python servers do
  // by hand; glibc's malloc thresholds (settle_malloc) are left alone: V8 has its own heap.
  // Requests the library does not take (a plain GET) get an answer instead of hanging.
  const httpServer = http.createServer((request, response) => {
    response.writeHead(socketio ? 404 : 426).end();
  });
  const close = start(httpServer, args);
  httpServer.once("error", (error) => {
    const reason = util.getSystemErrorMap().get(error.errno)?.[1] ?? error.message;
    process.stderr.write(`error: cannot listen on ${args.host}:${args.port}: ${reason}\n`);
    process.exit(2);
  });
  // Installed before listening, so that a stop that comes early is still a clean one.
  let stopSampling = () => {};
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    const finish = () => {
      stopSampling();
      process.exit(0);
    };
    // Clients that do not answer the close are not waited for beyond the bound.
    setTimeout(finish, SHUTDOWN_TIMEOUT_MS).unref();
    close().then(finish, (error) => {
      process.stderr.write(`error while stopping: ${error.stack}\n`);
      finish();
    });
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  httpServer.listen({ host: args.host, port: args.port, backlog: FAIRNESS.listenBacklog }, () => {
    stopSampling = sampleLoopLag();
    // The harness reads this line to learn the port; nothing else goes to stdout.
    process.stdout.write(`READY ${httpServer.address().port}\n`);
  });
}

/** `httpServer.close()` as a promise: resolves once every connection has ended. */
function closeHttpServer(httpServer) {
  return new Promise((resolve) => httpServer.close(() => resolve()));
}

module.exports = { FAIRNESS, GOING_AWAY, burnHandicap, closeHttpServer, runServer };
