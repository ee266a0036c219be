import { AggregatorRegistry, collectDefaultMetrics } from "prom-client";
import type { ChatIo } from "../chat/chat-io.js";
import { roomKey } from "../chat/rooms.js";
import type { PresenceStore } from "../presence/presence-store.js";
import { registry, sources } from "./metrics.js";

export interface WorkerMetricsOptions {
  io: ChatIo;
  workerId: number;
  adapter: "cluster" | "redis";
  /** The backend's presence store, once it is up. */
  presence: () => PresenceStore | undefined;
}

const ROOM_PREFIX = roomKey("");

/**
 * A worker's side of the node's scrape: its default process metrics (labelled with the
 * process), the sources of the gauges read when scraped, and prom-client's responder to the
 * primary's requests over the cluster IPC channel (see node-metrics.ts). Call once per worker,
 * before it reports ready: requests only go to ready workers.
 */
export function workerMetrics(opts: WorkerMetricsOptions): void {
  collectDefaultMetrics({ register: registry, labels: { process: `worker-${opts.workerId}` } });
  AggregatorRegistry.setRegistries(registry);
  // Constructed in a worker it only installs the responder (the primary never constructs one).
  new AggregatorRegistry();
  const namespace = opts.io.of("/");
  sources.connections = () => {
    const by: Record<string, number> = { websocket: 0, polling: 0 };
    for (const socket of namespace.sockets.values()) {
      const name = socket.conn.transport.name;
      by[name] = (by[name] ?? 0) + 1;
    }
    return by;
  };
  sources.rooms = () => {
    let n = 0;
    for (const key of namespace.adapter.rooms.keys()) if (key.startsWith(ROOM_PREFIX)) n++;
    return n;
  };
  // Both presence gauges are collected at once (concurrently): they share the store call in
  // flight. A store that does not answer leaves the gauges at their last values.
  let asking: ReturnType<NonNullable<typeof sources.presence>> | undefined;
  sources.presence = () => {
    asking ??= (opts.presence()?.stats() ?? Promise.resolve(undefined))
      .catch(() => undefined)
      .finally(() => {
        asking = undefined;
      });
    return asking;
  };
  // The cluster backend is the primary itself: up while this worker answers. The Redis backend
  // sets its own (redis-metrics.ts).
  if (opts.adapter === "cluster") sources.backend = { name: "cluster", up: () => true };
}
