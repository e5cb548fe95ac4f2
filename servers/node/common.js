"use strict";
// What both Node.js servers share: the fairness contract, the command line and the life cycle.
//
// The Node counterpart of servers/common.py, so that the Node and Python servers read alike:
// each server only says how its library serves on an HTTP server, with the contract's settings
// (or, in the shipped tier, its library's defaults); this module parses --host/--port (the
// tier, TLS, and the scale-out options: several processes on one port, a Redis broker between
// them), prints "READY <port>" once listening and stops cleanly on SIGTERM or SIGINT.

const fs = require("node:fs");
const http = require("node:http");
const https = require("node:https");
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
  // Scale-out (--worker-id): the event a Socket.IO publisher asks which process it is on.
  socketioWorkerEvent: "worker",
  // Node's listen defaults to 511; the contract's queue is the same on every server.
  listenBacklog: 4096,
});

const ENGINEIO_TRANSPORTS = ["websocket", "polling"];

// --- Tiers ------------------------------------------------------------------------------------
// As servers/common.py: equalised is the contract above (the default); shipped leaves
// compression, pings, transports and limits to the library's defaults by not passing them
// (servers/shipped.py records what they are). What the harness needs of a server is passed in
// both: the address and port, the scale-out options, the listen backlog, TLS, the handlers and
// what the clean stop takes.
const TIERS = ["equalised", "shipped"];
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

// --- Scale-out (issue 18): several processes on one port, a broker between them ---------------
// As servers/common.py: the harness starts the first process on a free port, the others on the
// port its READY line gave. --worker-id tells a receiver which process it reached; --broker-url
// carries every broadcast through Redis pub/sub (broker.js), so that each process's receivers
// get what was published on any of them.
const MAX_WORKER_ID = 1023;
// Redis pub/sub channels: node-ws's is the Python raw servers' (the same messages, broker.js).
// node-socketio's adapter names its channels after this key ("<key>#/#fanout#"...), apart from
// python-socketio's "wsbench:socketio", whose JSON its MessagePack decoder could not read.
const BROKER_CHANNEL = "wsbench:fanout";
const SOCKETIO_BROKER_KEY = "wsbench:socketio-node";

/** The broker could not be reached, or not subscribed to, at start. */
class BrokerUnreachable extends Error {
  constructor(url, reason) {
    super(`cannot reach the broker at ${url}: ${reason}`);
  }
}

/** The TEXT frame a raw server sends first on every fan-out connection under --worker-id. */
function workerAnnouncement(workerId) {
  return `worker ${workerId}`;
}

/** Why `url` is not of the form redis://HOST[:PORT][/DB], or null if it is: servers/common.py's
 * broker_url_error, word for word. */
function brokerUrlError(url) {
  let parts;
  try {
    parts = new URL(url);
  } catch {
    return "not a URL"; // a port that is not a number in range too, as urlsplit's ValueError
  }
  if (parts.protocol !== "redis:") return "the scheme must be redis://";
  if (!parts.hostname) return "no host";
  const database = parts.pathname.replace(/^\//, "");
  if ((database && !/^\d+$/.test(database)) || parts.search || parts.hash) {
    return "the path is a database number (redis://HOST:PORT/DB), nothing else";
  }
  return null;
}

// Node's listen takes reusePort (SO_REUSEPORT) from 22.12 and 23.1 on. On an older Node (20
// here) a process that shares a port gets its listening socket from the harness instead, bound
// with SO_REUSEPORT there (--listen-fd): what reusePort would do, one socket per process and the
// kernel spreading connections over them.
function listenTakesReusePort() {
  const [major, minor] = process.versions.node.split(".").map(Number);
  return major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12);
}

// --- Command line -----------------------------------------------------------------------------

const USAGE =
  `usage: node ${process.argv[1]} [-h] [--host HOST] [--port PORT] [--loop libuv] ` +
  "[--tier {equalised,shipped}] [--transports LIST] [--tls-cert FILE] [--tls-key FILE] " +
  "[--handicap-us N] [--reuse-port] [--listen-fd N] [--worker-id K] " +
  "[--broker-url redis://HOST:PORT/DB]";

// The options' help, in servers/common.py's words where the option is the same.
const OPTIONS_HELP = `options:
  -h, --help            show this help message and exit
  --host HOST           address to bind (default 127.0.0.1)
  --port PORT           port; 0 picks a free one
  --loop libuv          event loop (Node has one; the flag exists for the harness)
  --tier {equalised,shipped}
                        whose settings: the fairness contract's (equalised) or the library's
                        defaults as installed (shipped: its compression, pings, transports and
                        limits) (default: equalised)
  --transports LIST     Socket.IO server: Engine.IO transports to allow, comma list of
                        websocket, polling (default: websocket; in the shipped tier the
                        library's, polling,websocket)
  --tls-cert FILE       serve wss:// (and https://) with this PEM certificate chain, leaf first;
                        with --tls-key (default: none, plain ws://)
  --tls-key FILE        the PEM private key of --tls-cert
  --handicap-us N       burn this many microseconds of CPU per echoed message (off by default;
                        for testing regression gates, never for measuring)
  --reuse-port          bind with SO_REUSEPORT, so that several server processes listen on one
                        port and the kernel spreads connections over them: start the first with
                        --port 0, the others with the port its READY line gave (off by default;
                        Node.js 22.12 or later: on older ones, use --listen-fd)
  --listen-fd N         listen on the inherited listening socket N (bound with SO_REUSEPORT by
                        whoever started this process) instead of binding --host/--port: how the
                        harness shares a port between processes on a Node without reusePort
  --worker-id K         this process's number, 0 to ${MAX_WORKER_ID}: the raw server sends
                        every fan-out receiver the text frame 'worker K' before any broadcast;
                        the Socket.IO server acknowledges the join event with K instead of true
                        (default: none, no announcement)
  --broker-url redis://HOST:PORT/DB
                        fan out through Redis pub/sub at this URL, so that receivers on every
                        process get every message published on any (default: none, broadcast
                        within this process)`;

function usageError(message) {
  process.stderr.write(`${USAGE}\nerror: ${message}\n`);
  process.exit(2);
}

const VALUED = {
  "--host": "host", "--port": "port", "--loop": "loop", "--tier": "tier",
  "--transports": "transports", "--tls-cert": "tlsCert", "--tls-key": "tlsKey",
  "--handicap-us": "handicapUs", "--listen-fd": "listenFd", "--worker-id": "workerId",
  "--broker-url": "brokerUrl",
};
const SWITCHES = { "--reuse-port": "reusePort" };

/** An integer from `low` to `high` in `text`, or null (as Python's int(), no empty text). */
function integerIn(text, low, high) {
  const number = Number(text);
  return text.trim() !== "" && Number.isInteger(number) && number >= low && number <= high
    ? number
    : null;
}

/** The options of servers/common.py's parse_args (and --listen-fd), with its checks and its
 * messages: a bad one is the usage, one error line and exit 2. */
function parseArgs(argv, description) {
  const args = {
    host: "127.0.0.1", port: "0", loop: "libuv", tier: "equalised", transports: null,
    tlsCert: null, tlsKey: null, handicapUs: "0", reusePort: false, listenFd: null,
    workerId: null, brokerUrl: null,
  };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "-h" || argv[i] === "--help") {
      process.stdout.write(`${USAGE}\n\n${description}\n\n${OPTIONS_HELP}\n`);
      process.exit(0);
    }
    if (argv[i] in SWITCHES) {
      args[SWITCHES[argv[i]]] = true;
      continue;
    }
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    const value = inline ?? argv[++i];
    if (!(flag in VALUED) || value === undefined) usageError(`bad argument ${argv[i]}`);
    args[VALUED[flag]] = value;
  }
  args.port = integerIn(args.port, 0, 65535);
  if (args.port === null) usageError("--port: a number from 0 to 65535");
  if (!LOOPS.includes(args.loop)) usageError(`--loop: Node has only ${LOOPS}`);
  if (!TIERS.includes(args.tier)) usageError(`--tier: one of ${TIERS.join(", ")}`);
  if ((args.tlsCert === null) !== (args.tlsKey === null)) {
    usageError("--tls-cert and --tls-key: give both or neither");
  }
  args.handicapUs = Number(args.handicapUs);
  if (!(args.handicapUs >= 0 && args.handicapUs <= MAX_HANDICAP_US)) {
    usageError(`--handicap-us: a number of microseconds from 0 to ${MAX_HANDICAP_US}`);
  }
  if (args.transports === null) {
    // The shipped tier leaves the transports to the library (null) unless they are named.
    args.transports = args.tier === "equalised" ? [...FAIRNESS.socketioTransports] : null;
  } else {
    args.transports = args.transports.split(",").filter(Boolean);
    if (!args.transports.length ||
        args.transports.some((t) => !ENGINEIO_TRANSPORTS.includes(t))) {
      usageError(`--transports: comma list of ${ENGINEIO_TRANSPORTS.join(", ")}`);
    }
  }
  if (args.workerId !== null) {
    args.workerId = integerIn(args.workerId, 0, MAX_WORKER_ID);
    if (args.workerId === null) usageError(`--worker-id: an integer from 0 to ${MAX_WORKER_ID}`);
  }
  if (args.brokerUrl !== null) {
    const problem = brokerUrlError(args.brokerUrl);
    if (problem) {
      usageError(`--broker-url: redis://HOST:PORT/DB expected (${problem}): ${args.brokerUrl}`);
    }
  }
  if (args.listenFd !== null) {
    // 0 to 2 are stdin, stdout and stderr; the harness passes its socket's own number.
    args.listenFd = integerIn(args.listenFd, 3, 2 ** 31 - 1);
    if (args.listenFd === null) usageError("--listen-fd: a file descriptor number, 3 or more");
    if (args.reusePort) {
      usageError("--reuse-port: not with --listen-fd (the inherited socket is bound already)");
    }
  }
  if (args.reusePort && !listenTakesReusePort()) {
    usageError(`--reuse-port: Node.js ${process.version} has no reusePort (22.12 and 23.1 ` +
      "have it); pass a socket bound with SO_REUSEPORT with --listen-fd");
  }
  return args;
}

// --- Event-loop health ------------------------------------------------------------------------
// As the Python servers do, sample how late a 10 ms timer fires and, when the harness names a
// file in WSBENCH_LOOP_LAG_FILE, write "<monotonic ns> <lag ns>" lines there on stop (before
// closing the connections). Node's hrtime is CLOCK_MONOTONIC, the harness's clock. The cost,
// 100 wake-ups a second, is the same on every server. libuv counts timers in whole
// milliseconds of a time cached per loop turn, so a timer can fire up to 1 ms before 10 ms have
// passed on hrtime: that is no lag, recorded as 0 (Node's lag is about 1 ms coarser than
// asyncio's, which fires timers to the nanosecond).
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

// --- TLS --------------------------------------------------------------------------------------
// With --tls-cert and --tls-key the HTTP server is https.createServer({cert, key}), nothing else
// set, so that Node's defaults (TLS 1.2 and 1.3) decide the rest, as Python's do on the Python
// servers; ws and socket.io serve on it unchanged.

/** The files' contents as https.createServer takes them; a file that cannot be read is one
 * line, "error: --tls-cert: cannot read FILE: reason" (servers/common.py's words), and exit 2. */
function readTlsFiles({ tlsCert, tlsKey }) {
  const read = (flag, path) => {
    try {
      return fs.readFileSync(path);
    } catch (error) {
      const reason = util.getSystemErrorMap().get(error.errno)?.[1] ?? error.message;
      process.stderr.write(`error: ${flag}: cannot read ${path}: ${reason}\n`);
      process.exit(2);
    }
  };
  return { cert: read("--tls-cert", tlsCert), key: read("--tls-key", tlsKey) };
}

/** The server the library attaches to: HTTPS with --tls-cert/--tls-key, else HTTP. Files that
 * are not a PEM chain and its key are one line and exit 2. */
function createHttpServer(args, onRequest) {
  if (args.tlsCert === null) return http.createServer(onRequest);
  const files = readTlsFiles(args);
  try {
    return https.createServer(files, onRequest);
  } catch (error) {
    process.stderr.write(`error: --tls-cert/--tls-key: ${args.tlsCert} and ${args.tlsKey} ` +
      `are not a PEM certificate chain and its key (${error.message})\n`);
    process.exit(2);
  }
}

// --- Life cycle -------------------------------------------------------------------------------

/** Where `httpServer.listen` listens: the inherited socket (--listen-fd) or --host/--port. */
function listenAt(httpServer, args, onListening) {
  if (args.listenFd !== null) {
    // With a socket, Node takes the backlog only as listen's second argument (options.backlog
    // is read for a port or a path); without it, it would listen(2) again with 511.
    httpServer.listen({ fd: args.listenFd }, FAIRNESS.listenBacklog, onListening);
  } else {
    const options = { host: args.host, port: args.port, backlog: FAIRNESS.listenBacklog };
    httpServer.listen(args.reusePort ? { ...options, reusePort: true } : options, onListening);
  }
}

/**
 * Entry point shared by both servers: parse argv, serve until SIGTERM/SIGINT, exit 0.
 *
 * `start(httpServer, args)` attaches the library to the (not yet listening) HTTP server (HTTPS
 * with --tls-cert/--tls-key) with the settings of `args.tier`, and
 * with --broker-url connects to the broker and subscribes first (broker.js: it rejects with
 * BrokerUnreachable within 2 s); it returns, or resolves to, an async `close()` that closes
 * every open connection with 1001, then the broker's. Raw WebSocket servers (`socketio`
 * false) have no transport but WebSocket and refuse any other.
 */
function runServer({ description, socketio, start }) {
  const args = parseArgs(process.argv.slice(2), description);
  if (!socketio && args.transports !== null && args.transports.join(",") !== "websocket") {
    process.stderr.write("error: --transports: a raw WebSocket server has only 'websocket'\n");
    process.exit(2);
  }
  handicapNs = BigInt(Math.round(args.handicapUs * 1000));
  // Node raises its soft open-file limit to the hard limit at start, as the Python servers do
  // by hand; glibc's malloc thresholds (settle_malloc) are left alone: V8 has its own heap.
  // Requests the library does not take (a plain GET) get an answer instead of hanging.
  const httpServer = createHttpServer(args, (request, response) => {
    response.writeHead(socketio ? 404 : 426).end();
  });
  httpServer.once("error", (error) => {
    const reason = util.getSystemErrorMap().get(error.errno)?.[1] ?? error.message;
    const where = args.listenFd !== null ? `fd ${args.listenFd}` : `${args.host}:${args.port}`;
    process.stderr.write(`error: cannot listen on ${where}: ${reason}\n`);
    process.exit(2);
  });
  const started = (async () => start(httpServer, args))();
  // Installed before listening, so that a stop that comes early is still a clean one (it
  // waits for the start, which is bounded, then closes what it opened).
  let stopSampling = () => {};
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    // The samples first, as the Python servers do: a close that outlasts the harness's grace
    // ends with SIGKILL, and they would be lost with it.
    stopSampling();
    const finish = () => process.exit(0);
    // Clients that do not answer the close are not waited for beyond the bound.
    setTimeout(finish, SHUTDOWN_TIMEOUT_MS).unref();
    started.then(
      (close) => close().then(finish, (error) => {
        process.stderr.write(`error while stopping: ${error.stack}\n`);
        finish();
      }),
      () => {}, // a failed start has said so and exits below
    );
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  started.then(
    () => {
      if (stopping) return;
      listenAt(httpServer, args, () => {
        stopSampling = sampleLoopLag();
        // The harness reads this line to learn the port; nothing else goes to stdout.
        process.stdout.write(`READY ${httpServer.address().port}\n`);
      });
    },
    (error) => {
      // BrokerUnreachable says it in one line; anything else is a bug: its stack.
      const text = error instanceof BrokerUnreachable ? error.message : error.stack;
      process.stderr.write(`error: ${text}\n`);
      process.exit(2);
    },
  );
}

/** `httpServer.close()` as a promise: resolves once every connection has ended. */
function closeHttpServer(httpServer) {
  return new Promise((resolve) => httpServer.close(() => resolve()));
}

module.exports = {
  BROKER_CHANNEL, BrokerUnreachable, FAIRNESS, GOING_AWAY, SOCKETIO_BROKER_KEY, burnHandicap,
  closeHttpServer, runServer, workerAnnouncement,
};
