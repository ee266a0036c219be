/** IPC between the bench harness (parent) and its load-generator agents (forked processes). */

/** Open `count` Socket.IO connections, `rate` per second, round-robin over `urls`. */
export interface ConnectCommand {
  type: "connect";
  id: number;
  /** A name for this batch of sockets: later commands address it. */
  group: string;
  /**
   * `ws://host:port/socket.io/?EIO=4&transport=websocket` (the default namespace) or
   * `http://host:port/<namespace>` (an app: `socketIoTarget` in target.ts); socket i goes to
   * urls[i % urls.length].
   */
  urls: string[];
  count: number;
  /** Connects per second started by this agent. */
  rate: number;
  /** Socket i binds to localAddresses[i % n] (127.0.0.x) so ports do not run out. */
  localAddresses: string[];
  /** Usernames are `${usernamePrefix}${i}`. */
  usernamePrefix: string;
  room: string;
  /** When > 0, socket i joins `${room}-${Math.floor(i / roomSize)}` instead of `room`. */
  roomSize?: number;
  /** A connect that has not seen `40{sid}` by then counts as failed. */
  timeoutMs: number;
  /** Most connects in flight at once. */
  maxPending: number;
  /** Stop starting connects after this many ms (those in flight still finish). @default none */
  budgetMs?: number;
}

export interface ConnectResult {
  type: "connected";
  id: number;
  opened: number;
  failed: number;
  /** Connects never started because the budget ran out. */
  notStarted: number;
  /** Handshake time (ws connect → `40{sid}`) of each successful connect, in µs. */
  handshakeUs: Uint32Array;
  /** Epoch ms at which each successful connect completed (for "connections before the first failure"). */
  doneAtMs: Float64Array;
  /** Epoch ms of each failure. */
  failedAtMs: Float64Array;
  /** Failure reasons and their counts. */
  reasons: Record<string, number>;
  elapsedMs: number;
}

/** Emit chat messages from the first `senders` sockets of a group (or of each of `groups`). */
export interface SendCommand {
  type: "send";
  id: number;
  group: string;
  /**
   * Several groups (rooms, apps) sent to by one timer, their senders taken in turn so that each
   * group gets the same share of `rate`. Replaces `group` when given.
   */
  groups?: string[];
  /** Senders of each group. */
  senders: number;
  /** Messages per second from this agent (all senders of all groups together). */
  rate: number;
  durationMs: number;
  /** Carried in the message text as `tag * 16 + senderNode` and reported back with each delivery. */
  tag: number;
  /** Extra characters appended to each message. */
  pad: number;
  /**
   * Rooms of this many sockets (connected with `roomSize`): senders are taken one per room
   * first (sockets 0, stride, 2·stride…), then a second per room, and so on. @default none
   */
  stride?: number;
  /**
   * Senders are every `every`-th connection of the group (0, every, 2·every, …) instead of the
   * first ones: with `every` = the group's room size, one sender per room. @default 1
   */
  every?: number;
}

export interface SendResult {
  type: "sent";
  id: number;
  sent: number;
  /** Messages sent by senders of each node (index into the urls of the group). */
  sentByNode: number[];
  /**
   * Groups connected with a `roomSize`: Σ over the messages sent of the open connections in the
   * sender's room when it was sent (sender included), i.e. the deliveries expected.
   */
  roomReach?: number;
  /** Messages sent into each group (in the order of `groups`, or `[group]`). */
  sentByGroup: number[];
  elapsedMs: number;
}

/** Report (and optionally reset) what the agent's sockets received. */
export interface CollectCommand {
  type: "collect";
  id: number;
  reset: boolean;
  /** Return the latency samples too (otherwise counts only). */
  samples: boolean;
}

export interface CollectResult {
  type: "collected";
  id: number;
  /** key `${tag * 16 + senderNode}:${receiverNode}` → deliveries and their latencies (µs). */
  deliveries: Record<string, { count: number; samples?: Uint32Array }>;
  /** Frames received since the last reset (any kind). */
  frames: number;
  /** Server error envelopes (action 100) received since the last reset. */
  serverErrors: number;
  /** One example of a server error envelope. */
  lastServerError?: string;
  /**
   * Error codes (`E_...`) seen since the agent started (not reset): in error envelopes, in
   * connect_error packets and in the bodies of refused WebSocket upgrades. The guards' refusals
   * (E_RATE_LIMITED, E_TOO_MANY_CONNECTIONS, ...) show up here.
   */
  errorCodes: Record<string, number>;
  /** Connections lost after they were established (total, not reset). */
  disconnects: number;
  /** WebSocket close codes of those lost connections (and `engineClose`: an Engine.IO close packet). */
  closeCodes: Record<string, number>;
  open: number;
  /** Epoch ms of the last frame received. */
  lastFrameAtMs: number;
}

export interface CloseCommand {
  type: "close";
  id: number;
  /** Only this group; all when absent. */
  group?: string;
}

export interface CloseResult {
  type: "closed";
  id: number;
  closed: number;
}

export interface Progress {
  type: "progress";
  group: string;
  opened: number;
  failed: number;
  pending: number;
}

export type AgentCommand = ConnectCommand | SendCommand | CollectCommand | CloseCommand;
export type AgentReply = ConnectResult | SendResult | CollectResult | CloseResult;
export type AgentMessage = AgentReply | Progress | { type: "error"; id: number; message: string };

/** Marker that starts the text of every bench message: `bm~<epochMicros>:<tag>~<pad>`. */
export const MARK = "bm~";

/**
 * Monotonic time in µs (CLOCK_MONOTONIC, shared by every process of this machine, so a send time
 * taken in one agent can be compared with a receipt time in another; `performance.timeOrigin`
 * differs between processes by up to a millisecond).
 */
export function nowMicros(): number {
  const [s, ns] = process.hrtime();
  return s * 1_000_000 + Math.round(ns / 1000);
}
