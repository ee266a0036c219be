import { AggregatorRegistry, collectDefaultMetrics } from "prom-client";
import type { ChatNamespace } from "../chat/chat-io.js";
import { roomKey } from "../chat/rooms.js";
import type { PresenceStore } from "../presence/presence-store.js";
import { registry, sources } from "./metrics.js";

export interface WorkerMetricsOptions {
  /** Every app's namespace, by app id (apps come and go with reloads). */
  namespaces: () => Iterable<[string, ChatNamespace]>;
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
  sources.connections = () => {
    const out: { transport: string; app: string; n: number }[] = [];
    for (const [app, namespace] of opts.namespaces()) {
      const by: Record<string, number> = { websocket: 0, polling: 0 };
      for (const socket of namespace.sockets.values()) {
        const name = socket.conn.transport.name;
        by[name] = (by[name] ?? 0) + 1;
      }
      for (const [transport, n] of Object.entries(by)) out.push({ transport, app, n });
    }
    return out;
  };
  sources.rooms = () => {
    let n = 0;
    for (const [, namespace] of opts.namespaces()) {
      for (const key of namespace.adapter.rooms.keys()) if (key.startsWith(ROOM_PREFIX)) n++;
    }
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
