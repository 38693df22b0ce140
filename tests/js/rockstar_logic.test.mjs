// Pure logic of rockstar.js under node's test runner (run by tests/unit/test_client_logic.py).
import assert from "node:assert/strict";
import { test } from "node:test";

import { BoundedQueue, backoff, decodeJwt, refreshIn, State } from "../../rockstar_ws/static/rockstar_ws/rockstar.js";

test("backoff: the window doubles from the minimum and is capped", () => {
  const lo = () => 0;
  const hi = () => 0.999999;
  assert.equal(backoff(0, 500, 20000, lo), 500);
  assert.ok(Math.abs(backoff(0, 500, 20000, hi) - 1000) < 1);
  assert.ok(Math.abs(backoff(1, 500, 20000, hi) - 1500) < 1);
  assert.ok(Math.abs(backoff(3, 500, 20000, hi) - 4500) < 1);
  assert.equal(backoff(10, 500, 20000, hi), 20000);
  assert.equal(backoff(1e9, 500, 20000, hi), 20000);
  assert.equal(backoff(-5, 500, 20000, lo), 500);
});

test("backoff: full jitter spreads attempts over the whole window", () => {
  const samples = Array.from({ length: 4000 }, () => backoff(4, 500, 20000));
  assert.ok(samples.every((d) => d >= 500 && d <= 8500));
  const buckets = [0, 0, 0, 0];
  for (const d of samples) buckets[Math.min(3, Math.floor((d - 500) / 2000))] += 1;
  // Uniform over [500, 8500]: each quarter holds about 1000; 700 is far outside chance.
  for (const b of buckets) assert.ok(b > 700, `buckets ${buckets}`);
});

test("queue: FIFO, bounded, never evicts", () => {
  const q = new BoundedQueue(3);
  assert.ok(q.push(1) && q.push(2) && q.push(3));
  assert.equal(q.push(4), false);
  assert.equal(q.length, 3);
  assert.deepEqual([q.shift(), q.shift()], [1, 2]);
  assert.ok(q.push(5));
  assert.deepEqual([q.shift(), q.shift(), q.shift()], [3, 5, undefined]);
  assert.equal(q.length, 0);
});

test("queue: order holds across compaction", () => {
  const q = new BoundedQueue(2000);
  const out = [];
  for (let i = 0; i < 5000; i++) {
    assert.ok(q.push(i));
    if (i % 3 !== 0) out.push(q.shift());
  }
  while (q.length) out.push(q.shift());
  assert.deepEqual(out, Array.from({ length: 5000 }, (_, i) => i));
});

test("queue: size 0 queues nothing; a bad size is a TypeError", () => {
  assert.equal(new BoundedQueue(0).push("x"), false);
  assert.throws(() => new BoundedQueue(-1), TypeError);
  assert.throws(() => new BoundedQueue(1.5), TypeError);
});

function jwt(claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${b64({ alg: "HS256" })}.${b64(claims)}.sig`;
}

test("decodeJwt reads base64url claims and returns null for garbage", () => {
  assert.deepEqual(decodeJwt(jwt({ exp: 10, name: "Zoë ✓" })), { exp: 10, name: "Zoë ✓" });
  assert.equal(decodeJwt("not.a.jwt"), null);
  assert.equal(decodeJwt(""), null);
  assert.equal(decodeJwt(null), null);
});

test("refreshIn: a quarter of the life ahead, at least 2 s, at most half-way", () => {
  const now = 1_000_000_000_000;
  const t = now / 1000;
  assert.equal(refreshIn(jwt({ iat: t, exp: t + 900 }), now), 675_000);
  assert.equal(refreshIn(jwt({ iat: t, exp: t + 5 }), now), 3_000);
  assert.equal(refreshIn(jwt({ iat: t, exp: t + 2 }), now), 1_000);
  assert.equal(refreshIn(jwt({ sub: 1 }), now), null);
});

test("refreshIn trusts exp - iat over a skewed clock", () => {
  const now = 1_000_000_000_000;
  const t = now / 1000;
  // The client's clock is an hour ahead (exp looks past) or behind (exp looks far away).
  assert.equal(refreshIn(jwt({ iat: t - 3600, exp: t - 3600 + 60 }), now), 45_000);
  assert.equal(refreshIn(jwt({ iat: t + 3600, exp: t + 3600 + 60 }), now), 45_000);
});

test("the module imports without browser globals", () => {
  assert.equal(typeof globalThis.WebSocket === "undefined" || typeof globalThis.window === "undefined", true);
  assert.equal(State.Connected, "connected");
});
