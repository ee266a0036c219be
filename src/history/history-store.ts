import type { Envelope } from "../chat/protocol.js";

/** A message to store and deliver. */
export interface AppendRequest {
  room: string;
  /** The envelope as every receiver gets it, without `seq`/`pseq` (the store assigns them). */
  envelope: Envelope;
  /**
   * Private messages: the users whose private history in the room keeps it, the recipient first
   * and the sender last; each gets its own `pseq`. Absent for room messages (`seq`).
   */
  inboxes?: string[];
  /** The sender's userId and client message id: a repeat returns the first append's envelope. */
  dedupe?: { userId: string; cid: string };
}

export interface AppendResult {
  /** What was stored, as the sender sees it (for a private message: with the sender's pseq). */
  envelope: Envelope;
  /** True when `dedupe` matched an earlier append: nothing was stored or delivered this time. */
  duplicate: boolean;
}

/** Where a stored message goes: a room's members, or one user's connections in the room. */
export interface Delivery {
  room: string;
  /** Set for private messages: the user (of the room) whose connections get this copy. */
  user?: string;
  envelope: Envelope;
}

/** Part of a history: a room's messages (by seq) or one user's private ones (by pseq). */
export interface HistoryRange {
  /** Oldest first. */
  messages: Envelope[];
  /** The lowest sequence number still held (0 when nothing is). */
  first: number;
  /** The highest sequence number assigned so far (0 when none). */
  last: number;
}

/**
 * Every chat message, in order, per room: the store gives each its number, keeps the last ones
 * for replay and delivers it to every worker, in the order of the numbers (the memory store
 * through its callback, the Redis store by publishing from its script), so that receivers on
 * every node see the same sequence. Implementations: MemoryHistoryStore (one node, in the
 * primary) and RedisHistoryStore (many nodes). One suite (test/history-store.test.ts) runs
 * against both.
 */
export interface HistoryStore {
  /** Numbers, stores and delivers a message, atomically; rejects when it cannot (Redis down). */
  append(req: AppendRequest): Promise<AppendResult>;
  /**
   * The room's messages with seq > `after`, oldest first, at most `limit`; with `after`
   * undefined, the room's last `limit` messages.
   */
  range(room: string, after: number | undefined, limit: number): Promise<HistoryRange>;
  /** The same for one user's private messages in the room, by pseq. */
  inbox(
    room: string,
    userId: string,
    after: number | undefined,
    limit: number,
  ): Promise<HistoryRange>;
  /** Releases the store's resources. Idempotent. */
  close(): Promise<void>;
}

/** How long a client message id is remembered. */
export const CID_TTL_MS = 5 * 60_000;

/** Options every store takes. */
export interface HistoryOptions {
  /** Messages kept per room and per user's private messages in a room. */
  size: number;
  /** Seconds an idle room's history (and counter) is kept. */
  ttlSeconds: number;
}
