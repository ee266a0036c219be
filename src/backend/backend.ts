import type { Server } from "socket.io";
import type { BanStore } from "../admin/ban-store.js";
import type { Config } from "../config/config.js";
import type { Delivery, HistoryStore } from "../history/history-store.js";
import type { SharedLimits } from "../limits/shared-limits.js";
import type { PresenceEvent, PresenceStore } from "../presence/presence-store.js";

/**
 * How a worker shares rooms and presence with the rest of the service: the cluster adapter and
 * the primary's store on one machine, or the Redis adapter and a Redis store across machines.
 */
/** What a backend may ask of the chat application (ChatServer implements it). */
export interface PresenceSink {
  /** Pushes every local client a fresh 201: presence events may have been lost in an outage. */
  refreshLists(): Promise<void>;
}

export interface Backend {
  readonly presence: PresenceStore;
  /** Installs the Socket.IO adapter on the server. */
  attach(io: Server): void;
  /** Starts background duties (heartbeats, reaping, recovery after an outage). */
  start(chat: PresenceSink): Promise<void>;
  /** Receives every presence change (202/203) of the whole service, in the order it happened. */
  onPresence(listener: (event: PresenceEvent) => void): void;
  /** Every chat message: numbered, kept for replay, delivered to every worker in order. */
  readonly history: HistoryStore;
  /** Receives every stored message of the whole service, in the store's order. */
  onDelivery(listener: (delivery: Delivery) => void): void;
  /** Bans of the admin API, shared like the rate limits. */
  readonly bans: BanStore;
  /** Rate limiters whose counts every worker (and, in Redis mode, every node) shares. */
  readonly sharedLimits: SharedLimits;
  /** Called with false when the shared backend is lost and true when it is back. */
  onHealth(listener: (up: boolean) => void): void;
  /** An apps reload (config.apps is the new list): per-app duties of the backend (webhooks). */
  applyApps?(config: Config): void;
  /** Stops background duties and closes connections. Idempotent. */
  close(): Promise<void>;
}

/** Set by the primary on the first worker of a node's start: clean the node's stale entries. */
export const CLEAN_NODE_ENV = "WEIGOT_WS_CLEAN_NODE";
