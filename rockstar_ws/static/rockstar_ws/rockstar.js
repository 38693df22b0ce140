// rockstar.js: the first-party browser client of rockstar_ws (docs/client.md).
//
// One ES module, no build step, no dependencies. It touches no browser-only global at import
// time (WebSocket, window, addEventListener are looked up when used), so node can import it
// for the pure functions below.

/** Connection states; `state` events carry (newState, oldState). */
export const State = Object.freeze({
  /** Not connected and not trying: before connect(), after disconnect() or a permanent refusal. */
  Closed: "closed",
  /** A token is being obtained or a handshake is in flight. */
  Connecting: "connecting",
  /** The server answered on this socket: sends go out, subscriptions are live. */
  Connected: "connected",
  /** The connection was lost; a reconnect is scheduled. */
  Disconnected: "disconnected",
});

/** Subscription states (pub/sub routes). */
export const SubscriptionState = Object.freeze({
  Subscribing: "subscribing",
  Subscribed: "subscribed",
  Unsubscribed: "unsubscribed",
  Failed: "failed",
});

/** Close codes after which the client never reconnects (4401 has its own rule). */
export const PERMANENT_CLOSE_CODES = Object.freeze([1000, 4400, 4403, 4404]);

/** The subprotocol of pub/sub routes (docs/protocol.md, "Version"). */
export const PUBSUB_PROTOCOL = "rockstar.pubsub.v1";
/** The marker subprotocol the token follows (docs/auth.md). */
export const BEARER_PROTOCOL = "rockstar.bearer";

/** Subscribe errors that a retry cannot fix (docs/protocol.md, "Error codes"). */
const PERMANENT_SUBSCRIBE_ERRORS = new Set(["bad_request", "unsupported_type", "bad_group", "no_rule",
  "unauthenticated", "forbidden", "already_subscribed", "too_many_subscriptions"]);

const DEFAULTS = Object.freeze({
  getToken: null,
  pubsub: false,
  minReconnectDelay: 500,
  maxReconnectDelay: 20000,
  reconnectSpread: 5000,
  queueSize: 100,
  heartbeatInterval: 10000,
  connectTimeout: 10000,
  commandTimeout: 10000,
  WebSocket: null,
});

/** getToken may throw this to say "no token will ever come" (log in again): the client stops. */
export class UnauthorizedError extends Error {
  constructor(message = "unauthorized") { super(message); this.name = "UnauthorizedError"; }
}

/** A send or command found the offline queue full; it was not queued. */
export class QueueFullError extends Error {
  constructor(message = "offline queue full") { super(message); this.name = "QueueFullError"; }
}

/** A command could not be answered: the connection ended first, or disconnect() was called. */
export class DisconnectedError extends Error {
  constructor(message = "disconnected") { super(message); this.name = "DisconnectedError"; }
}

/** The server answered a pub/sub command with an error (`code` as in docs/protocol.md). */
export class ReplyError extends Error {
  constructor(code, message) { super(`${code}: ${message}`); this.name = "ReplyError"; this.code = code; }
}

/**
 * Delay before reconnect attempt `attempt` (0-based), in ms: exponential backoff with full jitter.
 *
 * A uniformly random point in a window that doubles per attempt, on top of the minimum: a fleet
 * of clients dropped at the same instant comes back spread over the window instead of in one
 * burst, and the floor keeps a client from hammering a server that refuses it at once.
 */
export function backoff(attempt, minDelay, maxDelay, random = Math.random) {
  const window = Math.min(maxDelay, minDelay * 2 ** Math.min(Math.max(0, attempt), 31));
  return Math.min(maxDelay, minDelay + random() * window);
}

/** A FIFO of at most `capacity` items; `push` answers false when full (nothing is evicted). */
export class BoundedQueue {
  constructor(capacity) {
    if (!Number.isInteger(capacity) || capacity < 0) {
      throw new TypeError(`queue size must be an integer >= 0, got ${capacity}`);
    }
    this.capacity = capacity;
    this._items = [];
    this._head = 0;
  }

  get length() { return this._items.length - this._head; }

  push(item) {
    if (this.length >= this.capacity) return false;
    this._items.push(item);
    return true;
  }

  shift() {
    if (this._head >= this._items.length) return undefined;
    const item = this._items[this._head];
    this._items[this._head++] = undefined;
    // Compact now and then, so a long-lived queue does not keep a growing array of holes.
    if (this._head > 64 && this._head * 2 > this._items.length) {
      this._items = this._items.slice(this._head);
      this._head = 0;
    }
    return item;
  }

  clear() { this._items = []; this._head = 0; }
}

/** The claims of a JWT, decoded without verifying (the server verifies); null if unreadable. */
export function decodeJwt(token) {
  try {
    const part = String(token).split(".")[1];
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((part.length + 3) % 4);
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === "object" ? claims : null;
  } catch {
    return null;
  }
}

/**
 * Milliseconds from `now` until a token should be refreshed, or null when it has no `exp`.
 *
 * The refresh point is a quarter of the token's life before `exp`, but at least 2 s before it
 * (and never earlier than half-way): enough margin for a token request on a slow network. When
 * the local clock disagrees with the token (`exp` already past, or further away than `exp - iat`),
 * the lifetime `exp - iat` is trusted instead of the clock.
 */
export function refreshIn(token, now = Date.now()) {
  const claims = decodeJwt(token);
  if (!claims || typeof claims.exp !== "number") return null;
  let left = claims.exp - now / 1000;
  const life = typeof claims.iat === "number" ? claims.exp - claims.iat : left;
  if (!(left > 0) || left > life + 1) left = life;
  if (!(left > 0)) return 0;
  const ahead = Math.min(left / 2, Math.max(left / 4, 2));
  return Math.round((left - ahead) * 1000);
}

function encode(data) {
  if (typeof data === "string") return data;
  if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) return data;
  if (typeof Blob !== "undefined" && data instanceof Blob) return data;
  return JSON.stringify(data);
}

function report(err) {
  // A listener that throws must not break the client; surface it as an uncaught error instead.
  setTimeout(() => { throw err; }, 0);
}

class Emitter {
  constructor() { this._listeners = new Map(); }

  /** Add a listener; returns a function that removes it. */
  on(name, fn) {
    if (typeof fn !== "function") throw new TypeError(`on(${JSON.stringify(name)}, fn): fn must be a function`);
    if (!this._listeners.has(name)) this._listeners.set(name, new Set());
    this._listeners.get(name).add(fn);
    return () => this.off(name, fn);
  }

  off(name, fn) { this._listeners.get(name)?.delete(fn); }

  _emit(name, ...args) {
    for (const fn of [...(this._listeners.get(name) || [])]) {
      try { fn(...args); } catch (err) { report(err); }
    }
  }
}

/** One group subscription on a pub/sub route; made by `client.subscribe(group, handlers)`. */
export class Subscription {
  constructor(client, group, handlers) {
    this.client = client;
    this.group = group;
    this.handlers = handlers || {};
    this.state = SubscriptionState.Subscribing;
    /** Position of the last publication delivered: {epoch, offset}, or nulls before any. */
    this.epoch = null;
    this.offset = null;
    this._early = [];  // pushes that arrived before the subscribe reply
    this._retries = 0;
    this._retryTimer = null;
  }

  /** Stop receiving publications; resolves when the server confirmed (or at once offline). */
  unsubscribe() {
    if (this.state === SubscriptionState.Unsubscribed) return Promise.resolve();
    // Also while subscribing: the server may have joined already; it answers in order.
    const wasLive = this.state === SubscriptionState.Subscribed || this.state === SubscriptionState.Subscribing;
    this._end(SubscriptionState.Unsubscribed);
    if (wasLive && this.client.state === State.Connected) {
      return this.client._command({ type: "unsubscribe", group: this.group }, false).then(() => undefined, () => undefined);
    }
    return Promise.resolve();
  }

  /** Who is in the group: resolves to {clients, users} (queued while offline). */
  presence() {
    return this.client._command({ type: "presence", group: this.group }, true);
  }

  _end(state) {
    clearTimeout(this._retryTimer);
    this.state = state;
    this._early = [];
    if (this.client._subs.get(this.group) === this) this.client._subs.delete(this.group);
  }

  _call(name, ...args) {
    const fn = this.handlers[name];
    if (typeof fn === "function") {
      try { fn(...args); } catch (err) { report(err); }
    }
  }

  _subscribe() {
    clearTimeout(this._retryTimer);
    this.state = SubscriptionState.Subscribing;
    this._early = [];
    const cmd = { type: "subscribe", group: this.group };
    const since = this.epoch !== null && this.offset !== null ? { epoch: this.epoch, offset: this.offset } : null;
    if (since) cmd.since = since;
    if (typeof this.handlers.onPresence === "function") cmd.presence = true;
    const ws = this.client._ws;
    this.client._command(cmd, false).then(
      (result) => { if (this.client._ws === ws && this.state === SubscriptionState.Subscribing) this._subscribed(result, since); },
      (err) => { if (this.client._ws === ws && this.state === SubscriptionState.Subscribing) this._subscribeFailed(err); });
  }

  _subscribed(result, since) {
    this._retries = 0;
    const recovered = since ? result.recovered === true : undefined;
    if (since && !recovered) {
      // The history could not cover our position: the app reloads its state and the stream
      // continues from the reply's position (docs/protocol.md, "Subscribing and recovery").
      this.epoch = result.epoch ?? null;
      this.offset = result.offset ?? null;
      this._call("onRecoveryFailed", { since, epoch: this.epoch, offset: this.offset });
    } else if (!since) {
      this.epoch = result.epoch ?? null;
      this.offset = result.offset ?? null;
    }
    this.state = SubscriptionState.Subscribed;
    this._call("onSubscribed", { recovered, epoch: result.epoch ?? null, offset: result.offset ?? null,
      catchup: result.catchup ?? 0 });
    const early = this._early;
    this._early = [];
    for (const push of early) this._push(push);
  }

  _subscribeFailed(err) {
    if (err instanceof ReplyError && PERMANENT_SUBSCRIBE_ERRORS.has(err.code)) {
      this._end(SubscriptionState.Failed);
      this._call("onError", err);
      return;
    }
    if (err instanceof DisconnectedError) return;  // resubscribed after the reconnect
    this._call("onError", err);
    const { minReconnectDelay, maxReconnectDelay } = this.client.options;
    this._retryTimer = setTimeout(() => {
      if (this.client.state === State.Connected && this.state === SubscriptionState.Subscribing) this._subscribe();
    }, backoff(this._retries++, minReconnectDelay, maxReconnectDelay));
  }

  _push(msg) {
    if (this.state === SubscriptionState.Subscribing) {
      this._early.push(msg);
      return;
    }
    if (this.state !== SubscriptionState.Subscribed) return;
    if (msg.type === "pub") this._publication(msg);
    else if (msg.type === "join" || msg.type === "leave") {
      this._call("onPresence", { type: msg.type, user: msg.user ?? null, client: msg.client ?? null });
    } else if (msg.type === "unsubscribed") {
      if (msg.code === "insufficient_state") {
        // A hole in the live stream: subscribing again from our position fills it or says
        // recovered: false.
        this._subscribe();
      } else {
        this._end(SubscriptionState.Unsubscribed);
        this._call("onUnsubscribed", { code: msg.code, message: msg.message });
      }
    }
  }

  _publication(msg) {
    const hasPosition = typeof msg.offset === "number" && typeof msg.epoch === "string";
    if (hasPosition) {
      if (this.epoch !== null && msg.epoch !== this.epoch) {
        // Another epoch: the stream was reset (Redis lost it); what we hold may be stale.
        this._call("onRecoveryFailed", { since: { epoch: this.epoch, offset: this.offset }, epoch: msg.epoch,
          offset: msg.offset });
      } else if (this.offset !== null && msg.offset <= this.offset) {
        return;  // seen already (a catch-up overlapping a live one): each publication once
      }
      this.epoch = msg.epoch;
      this.offset = msg.offset;
    }
    this._call("onPublication", msg.data, { offset: hasPosition ? msg.offset : null,
      epoch: hasPosition ? msg.epoch : null });
  }
}

/**
 * A reconnecting WebSocket to a rockstar_ws route, with token refresh, an offline queue, a
 * heartbeat and, on pub/sub routes (`pubsub: true`), subscriptions with recovery.
 */
export class RockstarClient extends Emitter {
  constructor(url, options = {}) {
    super();
    if (typeof url !== "string" || !/^wss?:\/\//.test(url)) {
      throw new TypeError(`RockstarClient(url): a ws:// or wss:// URL, got ${JSON.stringify(url)}`);
    }
    if (/[?&]token=/.test(url)) {
      throw new TypeError("RockstarClient(url): do not put the token in the URL (it ends up in logs); use getToken");
    }
    const unknown = Object.keys(options).filter((k) => !(k in DEFAULTS));
    if (unknown.length) throw new TypeError(`RockstarClient: unknown option(s) ${unknown.join(", ")}`);
    this.url = url;
    this.options = { ...DEFAULTS, ...options };
    const o = this.options;
    for (const k of ["minReconnectDelay", "maxReconnectDelay", "reconnectSpread", "heartbeatInterval",
      "connectTimeout", "commandTimeout"]) {
      if (typeof o[k] !== "number" || !(o[k] >= 0)) throw new TypeError(`RockstarClient: ${k} must be a number >= 0`);
    }
    if (o.maxReconnectDelay < o.minReconnectDelay) throw new TypeError("RockstarClient: maxReconnectDelay < minReconnectDelay");
    if (o.getToken !== null && typeof o.getToken !== "function") throw new TypeError("RockstarClient: getToken must be an async function");
    this.state = State.Closed;
    this._queue = new BoundedQueue(o.queueSize);
    this._subs = new Map();
    this._pending = new Map();
    this._nextId = 0;
    this._ws = null;
    this._token = null;
    this._attempts = 0;        // failed attempts since the last established connection
    this._unauthorized = 0;    // 4401 closes since the last established connection
    this._established = false;
    this._lastFrame = 0;
    this._lastPing = 0;
    this._pingSeq = 0;
    this._timers = { reconnect: null, connect: null, heartbeat: null, refresh: null };
    this._onOnline = () => { if (this.state === State.Disconnected) { this._clear("reconnect"); this._open(false); } };
  }

  /** The subprotocol the server selected on the current socket ("" when none or not connected). */
  get protocol() { return this._ws?.protocol ?? ""; }

  /** Start connecting (and reconnecting); a no-op while already running. */
  connect() {
    if (this.state !== State.Closed) return;
    this._attempts = 0;
    this._unauthorized = 0;
    globalThis.addEventListener?.("online", this._onOnline);
    this._open(false);
  }

  /** Close for good (no reconnect); pending commands reject, the offline queue is dropped. */
  disconnect(code = 1000, reason = "") {
    globalThis.removeEventListener?.("online", this._onOnline);
    const ws = this._ws;
    const wasOpen = this.state !== State.Closed;
    this._teardown();
    if (ws) {
      try { ws.close(code, reason); } catch { /* already closing */ }
    }
    if (wasOpen) this._stop(code, reason, null);
    else this._dropQueue();
  }

  /** Send `data` (strings and binary as they are, anything else as JSON) on a handler route.
   * Not connected, it waits in the queue for the next connection; returns false when the queue
   * is full (the data is dropped and an `error` event says so). */
  send(data) {
    if (this.options.pubsub) throw new TypeError("send() is for handler routes; on a pub/sub route use publish()");
    const frame = encode(data);
    if (this.state === State.Connected) {
      this._ws.send(frame);
      return true;
    }
    if (!this._queue.push({ frame })) {
      this._emit("error", new QueueFullError());
      return false;
    }
    return true;
  }

  /** Subscribe to `group` (pub/sub routes); the subscription lives across reconnects. */
  subscribe(group, handlers = {}) {
    this._needPubsub("subscribe");
    if (typeof group !== "string" || !group) throw new TypeError("subscribe(group): group must be a non-empty string");
    if (this._subs.has(group)) throw new Error(`already subscribed to ${JSON.stringify(group)}: unsubscribe() first`);
    const sub = new Subscription(this, group, handlers);
    this._subs.set(group, sub);
    if (this.state === State.Connected) sub._subscribe();
    return sub;
  }

  /** The live subscription to `group`, or undefined. */
  getSubscription(group) { return this._subs.get(group); }

  /** Publish `data` to `group` (pub/sub routes); resolves to {epoch, offset}. Queued offline. */
  publish(group, data) {
    this._needPubsub("publish");
    return this._command({ type: "publish", group, data }, true);
  }

  _needPubsub(what) {
    if (!this.options.pubsub) {
      throw new TypeError(`${what}() needs a pub/sub route: new RockstarClient(url, {pubsub: true})`);
    }
  }

  // -- connection life -----------------------------------------------------------------
  _setState(next) {
    const prev = this.state;
    if (prev === next) return;
    this.state = next;
    this._emit("state", next, prev);
  }

  _clear(name) {
    clearTimeout(this._timers[name]);
    clearInterval(this._timers[name]);
    this._timers[name] = null;
  }

  async _open(forceToken) {
    this._setState(State.Connecting);
    const epoch = {};
    this._connecting = epoch;
    let token = null;
    if (this.options.getToken) {
      const cached = this._token && !forceToken ? refreshIn(this._token) : null;
      if (cached !== null && cached > 1000) {
        token = this._token;
      } else {
        try {
          token = await this.options.getToken({ reason: forceToken ? "unauthorized" : "connect" });
        } catch (err) {
          if (this._connecting !== epoch || this.state !== State.Connecting) return;
          if (forceToken || err instanceof UnauthorizedError) {
            this._stop(4401, "getToken failed", err);
          } else {
            this._emit("error", err);
            this._retry(false, false);
          }
          return;
        }
        if (this._connecting !== epoch || this.state !== State.Connecting) return;
        if (!token) {
          this._stop(4401, "getToken returned no token", new UnauthorizedError("getToken returned no token"));
          return;
        }
        this._token = token;
      }
    }
    const protocols = [];
    if (this.options.pubsub) protocols.push(PUBSUB_PROTOCOL);
    if (token) protocols.push(BEARER_PROTOCOL, token);
    const WS = this.options.WebSocket || globalThis.WebSocket;
    let ws;
    try {
      if (!WS) throw new TypeError("no WebSocket implementation: pass options.WebSocket");
      ws = protocols.length ? new WS(this.url, protocols) : new WS(this.url);
    } catch (err) {
      this._stop(1006, "cannot open a WebSocket", err);
      return;
    }
    ws.binaryType = "arraybuffer";
    this._ws = ws;
    this._established = false;
    this._timers.connect = setTimeout(() => this._lost(ws, "connect timeout"), this.options.connectTimeout);
    ws.onopen = () => {
      if (this._ws !== ws) return;
      // The pong proves the server accepted us: a close-mode refusal opens too, then closes.
      this._ping(ws);
    };
    ws.onmessage = (ev) => this._frame(ws, ev.data);
    ws.onclose = (ev) => { if (this._ws === ws) this._closed(ev.code, ev.reason); };
    ws.onerror = () => {};  // a close event follows, with the code
  }

  _ping(ws) {
    this._lastPing = Date.now();
    try { ws.send(`{"rockstar.ping":${++this._pingSeq}}`); } catch { /* closing; its close event follows */ }
  }

  _establish(ws) {
    this._established = true;
    this._clear("connect");
    this._attempts = 0;
    this._unauthorized = 0;
    // The state changes before the flush (sends go straight out from here on) but is announced
    // after it: a listener that sends on "connected" must not overtake the queued messages.
    const prev = this.state;
    this.state = State.Connected;
    const interval = this.options.heartbeatInterval;
    if (interval > 0) {
      this._timers.heartbeat = setInterval(() => {
        const silent = Date.now() - this._lastFrame;
        if (silent >= 2 * interval) this._lost(ws, "heartbeat timeout");
        else if (silent >= interval && Date.now() - this._lastPing >= interval) this._ping(ws);
      }, Math.max(50, interval / 2));
    }
    this._armRefresh();
    for (const sub of this._subs.values()) sub._subscribe();
    while (this._queue.length && this._ws === ws && this.state === State.Connected) {
      const item = this._queue.shift();
      if (item.cmd) this._sendCommand(item.cmd, item.resolve, item.reject);
      else ws.send(item.frame);
    }
    if (this._ws === ws && this.state === State.Connected) this._emit("state", State.Connected, prev);
  }

  _frame(ws, data) {
    if (this._ws !== ws) return;
    this._lastFrame = Date.now();
    if (!this._established) this._establish(ws);
    if (typeof data === "string" && data.startsWith('{"rockstar.')) {
      if (data.startsWith('{"rockstar.pong"')) return;
      if (data.startsWith('{"rockstar.refreshed"')) {
        this._armRefresh();
        return;
      }
    }
    if (!this.options.pubsub) {
      this._emit("message", data);
      return;
    }
    let msg;
    try { msg = JSON.parse(data); } catch { msg = null; }
    if (!msg || typeof msg !== "object") {
      this._emit("error", new Error("pub/sub frame that is not a JSON object"));
      return;
    }
    if ("id" in msg) this._reply(msg);
    else this._subs.get(msg.group)?._push(msg);
  }

  /** Drop a connection the browser has not closed (silent, or never answered). */
  _lost(ws, reason) {
    if (this._ws !== ws) return;
    ws.onopen = ws.onmessage = ws.onclose = null;
    try { ws.close(4000, reason); } catch { /* already closing */ }
    this._closed(1006, reason);
  }

  _closed(code, reason) {
    const established = this._established;
    this._teardown();
    if (PERMANENT_CLOSE_CODES.includes(code)) {
      this._stop(code, reason, null);
      return;
    }
    if (code === 4401) {
      // The token was refused or expired: one more try with a fresh one from getToken, and
      // stop if that one is refused too before the server ever answered.
      if (!this.options.getToken || (this._unauthorized > 0 && !established)) {
        this._stop(code, reason, null);
        return;
      }
      this._unauthorized += 1;
      this._token = null;
    }
    this._emit("close", { code, reason, willReconnect: true });
    this._retry(established, code === 4401);
  }

  _retry(afterDrop, forceToken) {
    this._setState(State.Disconnected);
    const o = this.options;
    // After a drop a whole fleet lost its server at once: spread the first attempt too.
    const delay = afterDrop
      ? Math.min(o.maxReconnectDelay, o.minReconnectDelay + Math.random() * o.reconnectSpread)
      : backoff(this._attempts++, o.minReconnectDelay, o.maxReconnectDelay);
    this._timers.reconnect = setTimeout(() => { this._timers.reconnect = null; this._open(forceToken); }, delay);
  }

  _teardown() {
    for (const name of Object.keys(this._timers)) this._clear(name);
    this._connecting = null;
    const ws = this._ws;
    if (ws) ws.onopen = ws.onmessage = ws.onclose = null;
    this._ws = null;
    this._established = false;
    for (const { reject, timer } of this._pending.values()) {
      clearTimeout(timer);
      reject(new DisconnectedError());
    }
    this._pending.clear();
    for (const sub of this._subs.values()) {
      if (sub.state === SubscriptionState.Subscribed) sub.state = SubscriptionState.Subscribing;
      clearTimeout(sub._retryTimer);
      sub._early = [];
    }
  }

  _stop(code, reason, err) {
    globalThis.removeEventListener?.("online", this._onOnline);
    this._teardown();
    this._dropQueue();
    if (err) this._emit("error", err);
    this._emit("close", { code, reason, willReconnect: false });
    this._setState(State.Closed);
  }

  _dropQueue() {
    while (this._queue.length) this._queue.shift().reject?.(new DisconnectedError("client closed"));
  }

  // -- token refresh -------------------------------------------------------------------
  _armRefresh() {
    this._clear("refresh");
    if (!this._token || !this.options.getToken) return;
    const due = refreshIn(this._token);
    if (due !== null) this._scheduleRefresh(due, 0);
  }

  _scheduleRefresh(due, failures) {
    const ws = this._ws;
    this._timers.refresh = setTimeout(() => { this._timers.refresh = null; this._refresh(ws, failures); },
      Math.max(0, due));
  }

  async _refresh(ws, failures) {
    let token;
    try {
      token = await this.options.getToken({ reason: "refresh" });
    } catch (err) {
      if (this._ws !== ws) return;
      this._emit("error", err);
      // Try again while the token lives; once it has expired the server closes with 4401,
      // and the 4401 rule decides.
      if (!(err instanceof UnauthorizedError)) {
        const o = this.options;
        this._scheduleRefresh(backoff(failures, o.minReconnectDelay, o.maxReconnectDelay), failures + 1);
      }
      return;
    }
    if (this._ws !== ws || this.state !== State.Connected) return;
    if (!token) {
      this._emit("error", new UnauthorizedError("getToken returned no token"));
      return;
    }
    this._token = token;
    ws.send(JSON.stringify({ "rockstar.refresh": token }));  // the ack ({"rockstar.refreshed": exp}) re-arms
  }

  // -- pub/sub commands ----------------------------------------------------------------
  _command(cmd, queueable) {
    return new Promise((resolve, reject) => {
      if (this.state === State.Connected) {
        this._sendCommand(cmd, resolve, reject);
      } else if (!queueable) {
        reject(new DisconnectedError("not connected"));
      } else if (!this._queue.push({ cmd, resolve, reject })) {
        reject(new QueueFullError());
      }
    });
  }

  _sendCommand(cmd, resolve, reject) {
    const id = ++this._nextId;
    const timer = setTimeout(() => {
      if (this._pending.delete(id)) reject(new Error(`no reply to ${cmd.type} within ${this.options.commandTimeout} ms`));
    }, this.options.commandTimeout);
    this._pending.set(id, { resolve, reject, timer });
    this._ws.send(JSON.stringify({ id, ...cmd }));
  }

  _reply(msg) {
    const pending = msg.id === null ? undefined : this._pending.get(msg.id);
    if (!pending) {
      if (msg.error) this._emit("error", new ReplyError(msg.error.code, msg.error.message));
      return;
    }
    this._pending.delete(msg.id);
    clearTimeout(pending.timer);
    if (msg.error) pending.reject(new ReplyError(msg.error.code, msg.error.message));
    else pending.resolve(msg.result ?? {});
  }
}

export default RockstarClient;
