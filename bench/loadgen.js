#!/usr/bin/env node
// The Node load generator: `node bench/loadgen.js '<json job>'`, the twin of bench/loadgen.py.
//
// The `ws` client spends a fraction of the CPU per message that a Python client does, so on a
// 2-core machine (server on one core, client on the other) the figures show the server, not the
// client. Same jobs and the same JSON line of figures as loadgen.py (echo, handshake, broadcast,
// hold), plus `storm`: hold connections, and when the server drops them (a restart), reconnect
// every one at once and count how the handshakes went. `MARK start` / `MARK stop` lines tell
// the runner when to sample the server's CPU. No compression, no pings, as in loadgen.py.
"use strict";

const { performance } = require("node:perf_hooks");
const readline = require("node:readline");
const WebSocket = require("ws");

const OPTS = { perMessageDeflate: false, handshakeTimeout: 30000, maxPayload: 2 ** 20 };

function mark(what) {
  process.stdout.write(`MARK ${what}\n`);
}

function percentile(values, q) {
  if (!values.length) return null;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function cpuSeconds() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.now() / 1000;

// Resolves with the open socket, or rejects with an Error whose `kind` says why ("http 500",
// "ECONNREFUSED", ...): the storm and handshake jobs count refusals by kind.
function open(url, job) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, job.subprotocols || [], { ...OPTS, headers: job.headers || {} });
    ws.once("open", () => {
      ws.removeAllListeners("error");
      ws.on("error", () => {});
      resolve(ws);
    });
    ws.once("unexpected-response", (_req, res) => {
      const err = new Error(`HTTP ${res.statusCode}`);
      err.kind = `http ${res.statusCode}`;
      res.resume();
      ws.on("error", () => {});
      ws.terminate();
      reject(err);
    });
    ws.once("error", (e) => {
      e.kind = e.code || e.message.split(":")[0];
      reject(e);
    });
  });
}

async function openMany(urls, n, concurrency, job) {
  const opened = [];
  const kinds = {};
  let failed = 0;
  let next = 0;
  async function worker() {
    while (next < n) {
      const i = next++;
      try {
        opened.push(await open(urls[i % urls.length], job));
      } catch (e) {
        failed++;
        kinds[e.kind] = (kinds[e.kind] || 0) + 1;
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
  return { opened, failed, kinds };
}

function closeAll(conns) {
  return Promise.all(conns.map((ws) => new Promise((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) return resolve();
    ws.once("close", resolve);
    ws.close();
    setTimeout(() => { ws.terminate(); resolve(); }, 10000).unref();
  })));
}

// The measured window of a timed load: the warm-up, then job.duration seconds between the
// "start" and "stop" marks; begin and end flip the load's own flags at the window's edges.
async function measuredWindow(job, begin, end) {
  await sleep(1000 * (job.warmup ?? 1));
  begin();
  mark("start");
  const t = now();
  const c = cpuSeconds();
  await sleep(1000 * job.duration);
  end();
  const elapsed = now() - t;
  const clientCpu = cpuSeconds() - c;
  mark("stop");
  return { elapsed, clientCpu };
}

async function echo(job) {
  const { opened: conns, failed } = await openMany([job.url], job.conns, 25, job);
  const payload = "x".repeat(job.size);
  let measuring = false;
  let stop = false;
  let count = 0;
  let errors = failed;
  const latencies = [];
  const loops = conns.map((ws) => new Promise((resolve) => {
    let t0 = 0;
    const fire = () => {
      if (stop) return resolve();
      t0 = performance.now();
      ws.send(payload);
    };
    ws.on("message", (data, isBinary) => {
      if (measuring && !stop) {
        latencies.push((performance.now() - t0) / 1000);
        count++;
      }
      if (isBinary || data.toString() !== payload) errors++;
      fire();
    });
    ws.on("close", () => { if (!stop) errors++; resolve(); });
    fire();
  }));
  const { elapsed, clientCpu } = await measuredWindow(job, () => { measuring = true; }, () => { stop = true; });
  await Promise.race([Promise.all(loops), sleep(10000)]);
  await closeAll(conns);
  return { ops: count, elapsed, rate: count / elapsed, p50: percentile(latencies, 0.5),
           p99: percentile(latencies, 0.99), errors, connections: conns.length, client_cpu: clientCpu / elapsed };
}

async function handshake(job) {
  let measuring = false;
  let stop = false;
  let count = 0;
  let errors = 0;
  const kinds = {};
  const latencies = [];
  async function worker() {
    while (!stop) {
      const t0 = performance.now();
      let ws;
      try {
        ws = await open(job.url, job);
      } catch (e) {
        if (measuring) {
          errors++;
          kinds[e.kind] = (kinds[e.kind] || 0) + 1;
        }
        await sleep(10);
        continue;
      }
      const opened = performance.now();
      await closeAll([ws]);
      if (measuring && !stop) {
        latencies.push((opened - t0) / 1000);
        count++;
      }
    }
  }
  const workers = Array.from({ length: job.concurrency }, worker);
  const { elapsed, clientCpu } = await measuredWindow(job, () => { measuring = true; }, () => { stop = true; });
  await Promise.all(workers);
  return { ops: count, elapsed, rate: count / elapsed, p50: percentile(latencies, 0.5),
           p99: percentile(latencies, 0.99), errors, error_kinds: kinds, client_cpu: clientCpu / elapsed };
}

async function broadcast(job) {
  const n = job.messages;
  const { opened: receivers, failed } = await openMany(job.urls, job.receivers, job.concurrency || 50, job);
  const sender = await open(job.sender_url, job);
  sender.on("message", () => {});
  const latencies = [];
  let received = 0;
  let duplicates = 0;
  let lastDelivery = 0;
  let complete = 0;
  let allDone;
  const done = new Promise((r) => { allDone = r; });
  for (const ws of receivers) {
    const seen = new Uint8Array(n);
    let got = 0;
    ws.on("message", (data) => {
      const t = performance.timeOrigin + performance.now();
      const text = data.toString();
      const sp = text.indexOf(" ");
      const i = Number(text.slice(0, sp));
      const sent = Number(text.slice(sp + 1, text.indexOf(" ", sp + 1)));
      if (seen[i]) { duplicates++; return; }
      seen[i] = 1;
      got++;
      received++;
      latencies.push((t - sent) / 1000);
      lastDelivery = now();
      if (got === n && ++complete === receivers.length) allDone();
    });
  }
  if (!receivers.length) allDone();
  await sleep(1000 * (job.settle ?? 1));
  mark("start");
  const t0 = now();
  const c = cpuSeconds();
  const interval = job.interval;
  for (let i = 0; i < n; i++) {
    const pad = "x".repeat(32);
    sender.send(`${i} ${(performance.timeOrigin + performance.now()).toFixed(3)} ${pad}`);
    // Paced on the schedule, not on the previous send: a slow send does not slow the offer.
    if (interval) await sleep(Math.max(0, 1000 * (t0 + (i + 1) * interval - now())));
  }
  const sentAt = now();
  const idle = job.idle ?? 5;
  const drain = job.drain ?? 10;
  while (complete < receivers.length) {
    await Promise.race([done, sleep(250)]);
    const t = now();
    if (t - sentAt > drain || t - Math.max(lastDelivery, sentAt) > idle) break;
  }
  const end = lastDelivery > t0 ? lastDelivery : now();
  const elapsed = end - t0;
  const clientCpu = cpuSeconds() - c;
  mark("stop");
  await closeAll([...receivers, sender]);
  const expected = receivers.length * n;
  return { ops: received, elapsed, rate: received / elapsed, p50: percentile(latencies, 0.5),
           p99: percentile(latencies, 0.99), lost: expected - received + failed * n, duplicates,
           errors: failed, send_secs: sentAt - t0, client_cpu: clientCpu / elapsed, receivers: receivers.length };
}

function waitLine() {
  return new Promise((resolve) => {
    const rl = readline.createInterface({ input: process.stdin });
    rl.once("line", () => { rl.close(); resolve(); });
    rl.once("close", resolve);
  });
}

async function hold(job) {
  const t = now();
  const { opened: conns, failed, kinds } = await openMany([job.url], job.conns, job.concurrency || 20, job);
  const openSecs = now() - t;
  process.stdout.write(`HELD ${conns.length} ${failed} ${JSON.stringify(kinds)}\n`);
  await waitLine();
  const alive = conns.filter((ws) => ws.readyState === WebSocket.OPEN).length;
  await closeAll(conns);
  return { held: conns.length, failed, failed_kinds: kinds, alive_at_end: alive, open_secs: openSecs };
}

// Hold `conns` connections; whenever the server drops one (a restart: the old process closes
// them, and may still accept a few while it shuts down), it reconnects at once and retries after a
// short jittered pause (`retry_ms`, about a browser client's first backoff step) until it is in
// again. Prints HELD once all are open; the runner restarts the server and watches the server's
// own counts; a line on stdin ends the job with the client's side of it.
async function storm(job) {
  const { opened, failed, kinds: openKinds } = await openMany([job.url], job.conns, job.concurrency || 100, job);
  const retryMs = job.retry_ms ?? 100;
  const kinds = {};
  let attempts = 0;
  let drops = 0;
  let reconnects = 0;
  let firstDrop = null;
  let lastBack = null;
  let stopping = false;
  const current = opened.slice();
  function watch(slot) {
    current[slot].once("close", async () => {
      if (stopping) return;
      drops++;
      if (firstDrop === null) firstDrop = now();
      current[slot] = null;
      while (!stopping) {
        attempts++;
        try {
          current[slot] = await open(job.url, job);
          reconnects++;
          lastBack = now();
          return watch(slot);
        } catch (e) {
          kinds[e.kind] = (kinds[e.kind] || 0) + 1;
          await sleep(retryMs * (0.5 + Math.random()));
        }
      }
    });
  }
  opened.forEach((_ws, slot) => watch(slot));
  process.stdout.write(`HELD ${opened.length} ${failed} ${JSON.stringify(openKinds)}\n`);
  await waitLine();
  stopping = true;
  const alive = current.filter((ws) => ws && ws.readyState === WebSocket.OPEN).length;
  await closeAll(current.filter(Boolean));
  return { held: opened.length, failed, drops, reconnects, attempts, refused_kinds: kinds, alive_at_end: alive,
           client_secs: lastBack !== null && firstDrop !== null ? lastBack - firstDrop : null };
}

const MODES = { echo, handshake, broadcast, hold, storm };

(async () => {
  const job = JSON.parse(process.argv[2]);
  const run = MODES[job.mode];
  if (!run) throw new Error(`unknown mode ${job.mode}: ${Object.keys(MODES).join(", ")}`);
  const result = await run(job);
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
})().catch((e) => {
  process.stderr.write(`${e.stack || e}\n`);
  process.exit(1);
});
