// Type declarations of rockstar.js (docs/client.md).

export declare const State: Readonly<{
  Closed: "closed";
  Connecting: "connecting";
  Connected: "connected";
  Disconnected: "disconnected";
}>;
export type State = (typeof State)[keyof typeof State];

export declare const SubscriptionState: Readonly<{
  Subscribing: "subscribing";
  Subscribed: "subscribed";
  Unsubscribed: "unsubscribed";
  Failed: "failed";
}>;
export type SubscriptionState = (typeof SubscriptionState)[keyof typeof SubscriptionState];

/** Close codes after which the client never reconnects: 1000, 4400, 4403, 4404. */
export declare const PERMANENT_CLOSE_CODES: readonly number[];
export declare const PUBSUB_PROTOCOL: "rockstar.pubsub.v1";
export declare const BEARER_PROTOCOL: "rockstar.bearer";

/** Why getToken is called. */
export interface TokenRequest {
  reason: "connect" | "refresh" | "unauthorized";
}

export interface RockstarClientOptions {
  /** Returns an access token; null/undefined/"" or a thrown UnauthorizedError stops the client. */
  getToken?: ((request: TokenRequest) => Promise<string | null | undefined> | string | null | undefined) | null;
  /** Speak rockstar.pubsub.v1 (docs/protocol.md) instead of raw frames. Default false. */
  pubsub?: boolean;
  /** Floor of every reconnect delay, ms. Default 500. */
  minReconnectDelay?: number;
  /** Cap of every reconnect delay, ms. Default 20000. */
  maxReconnectDelay?: number;
  /** Window the first reconnect after a dropped connection is spread over, ms. Default 5000. */
  reconnectSpread?: number;
  /** Sends and commands kept while not connected. Default 100. */
  queueSize?: number;
  /** Heartbeat interval, ms: a ping after this long without a frame; dead after twice it. 0: off. Default 10000. */
  heartbeatInterval?: number;
  /** A handshake that has not produced the server's first frame by then is abandoned, ms. Default 10000. */
  connectTimeout?: number;
  /** A pub/sub command without a reply by then rejects, ms. Default 10000. */
  commandTimeout?: number;
  /** A WebSocket constructor (default: globalThis.WebSocket). */
  WebSocket?: { new (url: string, protocols?: string | string[]): WebSocket } | null;
}

export interface CloseInfo {
  code: number;
  reason: string;
  willReconnect: boolean;
}

export interface Position {
  offset: number | null;
  epoch: string | null;
}

export interface RecoveryFailure {
  since: { epoch: string | null; offset: number | null };
  epoch: string | null;
  offset: number | null;
}

export interface SubscribedInfo {
  /** undefined on a first subscribe (no since), else whether every missed publication follows. */
  recovered: boolean | undefined;
  epoch: string | null;
  offset: number | null;
  catchup: number;
}

export interface PresenceEvent {
  type: "join" | "leave";
  user: string | number | null;
  client: string | null;
}

export interface Presence {
  clients: number;
  users: Array<string | number>;
}

export interface SubscriptionHandlers {
  /** Each publication once, in offset order. */
  onPublication?: (data: unknown, position: Position) => void;
  /** join/leave events; giving it subscribes with presence: true. */
  onPresence?: (event: PresenceEvent) => void;
  /** The history could not cover the last position (or the epoch changed): reload your state. */
  onRecoveryFailed?: (info: RecoveryFailure) => void;
  onSubscribed?: (info: SubscribedInfo) => void;
  onUnsubscribed?: (info: { code: string; message: string }) => void;
  onError?: (error: Error) => void;
}

export declare class UnauthorizedError extends Error {}
export declare class QueueFullError extends Error {}
export declare class DisconnectedError extends Error {}
export declare class ReplyError extends Error {
  readonly code: string;
  constructor(code: string, message: string);
}

export declare class Subscription {
  readonly client: RockstarClient;
  readonly group: string;
  readonly state: SubscriptionState;
  /** Position of the last publication delivered. */
  readonly epoch: string | null;
  readonly offset: number | null;
  unsubscribe(): Promise<void>;
  presence(): Promise<Presence>;
}

export interface RockstarClientEvents {
  state: (state: State, previous: State) => void;
  message: (data: string | ArrayBuffer) => void;
  close: (info: CloseInfo) => void;
  error: (error: Error) => void;
}

export declare class RockstarClient {
  constructor(url: string, options?: RockstarClientOptions);
  readonly url: string;
  readonly options: Required<RockstarClientOptions>;
  readonly state: State;
  /** The subprotocol the server selected on the current socket ("" when none). */
  readonly protocol: string;
  connect(): void;
  disconnect(code?: number, reason?: string): void;
  /** Strings and binary as they are, anything else as JSON; false when the queue is full. */
  send(data: unknown): boolean;
  subscribe(group: string, handlers?: SubscriptionHandlers): Subscription;
  getSubscription(group: string): Subscription | undefined;
  publish(group: string, data: unknown): Promise<{ epoch?: string; offset?: number }>;
  /** Returns a function that removes the listener. */
  on<K extends keyof RockstarClientEvents>(name: K, fn: RockstarClientEvents[K]): () => void;
  off<K extends keyof RockstarClientEvents>(name: K, fn: RockstarClientEvents[K]): void;
}

/** Reconnect delay of attempt `attempt` (0-based), ms: min + random * min(max, min * 2^attempt), capped at max. */
export declare function backoff(attempt: number, minDelay: number, maxDelay: number, random?: () => number): number;

export declare class BoundedQueue<T = unknown> {
  constructor(capacity: number);
  readonly capacity: number;
  readonly length: number;
  push(item: T): boolean;
  shift(): T | undefined;
  clear(): void;
}

/** The claims of a JWT, not verified. */
export declare function decodeJwt(token: string): Record<string, unknown> | null;
/** Milliseconds until the token should be refreshed, or null without exp. */
export declare function refreshIn(token: string, now?: number): number | null;

export default RockstarClient;
