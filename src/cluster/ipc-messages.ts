import type { PresenceEvent } from "../presence/presence-store.js";

/**
 * Messages between the primary and its workers, on the node:cluster IPC channel. The cluster
 * adapter shares that channel, so every message of ours carries a `wws:` type and anything
 * else is ignored.
 */
export type PrimaryToWorker =
  | { type: "wws:connection"; data: Uint8Array }
  | { type: "wws:presence-reply"; id: number; result?: unknown; error?: string }
  | { type: "wws:drain"; notice: string; graceMs: number }
  | { type: "wws:reap"; owner: string }
  | { type: "wws:presence-event"; event: PresenceEvent }
  | { type: "wws:stats-request"; id: number };

export interface WorkerStats {
  pid: number;
  connections: number;
  rssBytes: number;
  heapUsedBytes: number;
  /** Cluster-wide presence figures, as this worker's store sees them. */
  presence?: { connections: number; users: number };
}

export type WorkerToPrimary =
  | { type: "wws:ready"; owner: string }
  | { type: "wws:presence-call"; id: number; method: string; args: unknown[] }
  | { type: "wws:stats-reply"; id: number; stats: WorkerStats }
  | { type: "wws:health"; backendUp: boolean };

export function isOurs<T extends { type: string }>(msg: unknown): msg is T {
  return (
    typeof msg === "object" &&
    msg !== null &&
    typeof (msg as { type?: unknown }).type === "string" &&
    (msg as { type: string }).type.startsWith("wws:")
  );
}
