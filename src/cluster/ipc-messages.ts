import type { ErrorCode } from "../chat/protocol.js";
import type { AppSpec } from "../config/config.js";
import type { Delivery } from "../history/history-store.js";
import type { Refusal } from "../http/refusal.js";
import type { PresenceEvent } from "../presence/presence-store.js";

/**
 * Messages between the primary and its workers, on the node:cluster IPC channel. The cluster
 * adapter shares that channel, so every message of ours carries a `wws:` type and anything
 * else is ignored.
 */
export type PrimaryToWorker =
  | { type: "wws:connection"; data: Uint8Array }
  | { type: "wws:drain"; notice: string; graceMs: number }
  /** The apps after a reload (validated): workers add, change and remove theirs in place. */
  | { type: "wws:apps"; apps: AppSpec[] }
  | { type: "wws:reap"; owner: string }
  | { type: "wws:presence-event"; event: PresenceEvent }
  | { type: "wws:stats-request"; id: number }
  | { type: "wws:rpc-reply"; service: string; id: number; result?: unknown; error?: string }
  /** A stored chat message, for this worker's clients (cluster mode; in store order). */
  | { type: "wws:chat-delivery"; delivery: Delivery }
  /** The ledger's answer to wws:admit: a token to release later, or the refusal. */
  | { type: "wws:admit-reply"; id: number; token?: number; refusal?: Refusal };

export interface WorkerStats {
  pid: number;
  connections: number;
  rssBytes: number;
  heapUsedBytes: number;
  /** Chat messages this worker stored in the history since it started. */
  historyAppends?: number;
  /** Cluster-wide presence figures, as this worker's store sees them. */
  presence?: { connections: number; users: number };
  /** In-session refusals since start, by code (rate limits, bad frames, slow consumers). */
  refusals?: Record<string, number>;
  /** Connections by app. */
  apps?: Record<string, number>;
}

export type WorkerToPrimary =
  | { type: "wws:ready"; owner: string }
  /** A socket handed over was received (the primary may hand over the next: handoff-queue.ts). */
  | { type: "wws:accepted" }
  | { type: "wws:stats-reply"; id: number; stats: WorkerStats }
  | { type: "wws:health"; backendUp: boolean }
  | { type: "wws:rpc-call"; id: number; service: string; method: string; args: unknown[] }
  /** Reserve a slot in the node's connection ledger: a new session (by address) or a user. */
  | { type: "wws:admit"; id: number; kind: AdmitKind; key: string; limit?: number }
  | { type: "wws:admit-release"; token: number }
  /** A refusal decided in the worker (origin): counted by the primary. */
  | { type: "wws:refused"; code: ErrorCode };

export type AdmitKind = "session" | "user";

export function isOurs<T extends { type: string }>(msg: unknown): msg is T {
  return (
    typeof msg === "object" &&
    msg !== null &&
    typeof (msg as { type?: unknown }).type === "string" &&
    (msg as { type: string }).type.startsWith("wws:")
  );
}
