import { Counter, Gauge, Histogram, Registry } from "prom-client";

/**
 * Every metric of the service, in one registry per process. Counted where things happen (one
 * call at each counting point), or read when scraped (gauges' collect, see worker-metrics.ts).
 * Labels are codes, types, transports and apps only: never users or rooms, so a series count
 * stays fixed whatever the traffic (apps are the operator's, and few). The primary gathers the workers' registries into one scrape
 * (node-metrics.ts); how each metric combines across processes is its `aggregator`.
 */
export const registry = new Registry();

/**
 * Where the gauges read at scrape time get their figures: set by worker-metrics.ts and
 * redis-metrics.ts in the processes that have them (a gauge without its source keeps its value).
 */
export const sources: {
  /** Connected chat clients by transport name and app. */
  connections?: () => { transport: string; app: string; n: number }[];
  rooms?: () => number;
  /** The presence store's figures (one store call per scrape for both gauges). */
  presence?: () => Promise<{ connections: number; users: number } | undefined>;
  /** The shared backend's name and whether this process sees it. */
  backend?: { name: string; up: () => boolean };
  /** A Redis PING's round trip in seconds (PING_FAILED_S when it fails). */
  redisPing?: () => Promise<number>;
} = {};

const PREFIX = "weigot_ws_";
/** Seconds, from 1 ms to 10 s: handshakes and deliveries live in the low milliseconds. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export const connections = new Gauge({
  name: `${PREFIX}connections`,
  help: "Connected chat clients (handshake done), by Engine.IO transport and app",
  labelNames: ["transport", "app"] as const,
  registers: [registry],
  collect() {
    const by = sources.connections?.();
    if (!by) return;
    this.reset();
    for (const { transport, app, n } of by) this.set({ transport, app }, n);
  },
});

export const handshakes = new Counter({
  name: `${PREFIX}handshakes_total`,
  help: "Connection attempts by result: accepted (201 sent) or the refusal's error code, by app (none: refused before the app was known)",
  labelNames: ["result", "app"] as const,
  registers: [registry],
});

export const handshakeSeconds = new Histogram({
  name: `${PREFIX}handshake_seconds`,
  help: "From the Socket.IO CONNECT packet to the 201 (online list) sent",
  buckets: LATENCY_BUCKETS,
  registers: [registry],
});

export const messagesReceived = new Counter({
  name: `${PREFIX}messages_received_total`,
  help: "Chat messages accepted for delivery (clients and the push API), by message type and app",
  labelNames: ["type", "app"] as const,
  registers: [registry],
});

export const messagesDelivered = new Counter({
  name: `${PREFIX}messages_delivered_total`,
  help: "Stored chat messages handed to client connections, one per receiving connection",
  registers: [registry],
});

export const messagesReplayed = new Counter({
  name: `${PREFIX}messages_replayed_total`,
  help: "History messages replayed to connecting clients, one per message and connection",
  registers: [registry],
});

export const deliverySeconds = new Histogram({
  name: `${PREFIX}delivery_seconds`,
  help: "From a message's ts (taken before it is stored) to its emit on a worker with receivers",
  buckets: LATENCY_BUCKETS,
  registers: [registry],
});

export const errors = new Counter({
  name: `${PREFIX}errors_total`,
  help: "Error replies sent to clients in their sessions, by error code",
  labelNames: ["code"] as const,
  registers: [registry],
});

export const rateLimited = new Counter({
  name: `${PREFIX}rate_limited_total`,
  help: "Client events refused with E_RATE_LIMITED, by kind (message, state, query) and app",
  labelNames: ["kind", "app"] as const,
  registers: [registry],
});

export const disconnects = new Counter({
  name: `${PREFIX}forced_disconnects_total`,
  help: "Connections the server dropped: E_RATE_LIMITED (flooding), E_SLOW_CONSUMER (not reading)",
  labelNames: ["code"] as const,
  registers: [registry],
});

export const historyAppends = new Counter({
  name: `${PREFIX}history_appends_total`,
  help: "Chat messages appended to the history (ok) or not stored (failed)",
  labelNames: ["result"] as const,
  registers: [registry],
});

export const historyAppendSeconds = new Histogram({
  name: `${PREFIX}history_append_seconds`,
  help: "History append latency (Redis: one script call; cluster mode: IPC to the primary)",
  buckets: LATENCY_BUCKETS,
  registers: [registry],
});

export const presenceUsers = new Gauge({
  name: `${PREFIX}presence_users`,
  help: "Users online (a user in two rooms counts twice), as the presence store sees them",
  registers: [registry],
  aggregator: "max",
  async collect() {
    const stats = await sources.presence?.();
    if (stats) this.set(stats.users);
  },
});

export const presenceConnections = new Gauge({
  name: `${PREFIX}presence_connections`,
  help: "Connections in the presence store (Redis mode: every node's)",
  registers: [registry],
  aggregator: "max",
  async collect() {
    const stats = await sources.presence?.();
    if (stats) this.set(stats.connections);
  },
});

export const rooms = new Gauge({
  name: `${PREFIX}rooms`,
  help: "Rooms with a connection on this node (a room across workers counts once per worker)",
  registers: [registry],
  collect() {
    const n = sources.rooms?.();
    if (n !== undefined) this.set(n);
  },
});

export const backendUp = new Gauge({
  name: `${PREFIX}backend_up`,
  help: "1 while the shared backend is reachable from every worker, else 0",
  labelNames: ["backend"] as const,
  registers: [registry],
  aggregator: "min",
  collect() {
    const b = sources.backend;
    if (b) this.set({ backend: b.name }, b.up() ? 1 : 0);
  },
});

/** What a PING that fails or does not answer within 2 s counts as, in seconds. */
export const PING_FAILED_S = 10;

/** Registered by the Redis backend only (redis-metrics.ts): absent in cluster mode. */
export const redisPingSeconds = new Gauge({
  name: `${PREFIX}redis_ping_seconds`,
  help: "Round trip of a Redis PING at scrape time (the slowest worker; 10 s when it fails)",
  registers: [],
  aggregator: "max",
  async collect() {
    const seconds = await sources.redisPing?.();
    if (seconds !== undefined) this.set(seconds);
  },
});

/** History appends this process made (for `status`, which has no registry to read). */
let appendCount = 0;
export const appendsSoFar = () => appendCount;

/** A history append that began at `started` (performance.now()) is done: stored or not. */
export function appended(started: number, ok: boolean): void {
  historyAppendSeconds.observe((performance.now() - started) / 1000);
  historyAppends.inc({ result: ok ? "ok" : "failed" });
  if (ok) appendCount++;
}

/** A connection's handshake is done (201 sent): `issued` is Socket.IO's handshake time (ms). */
export function handshakeDone(issued: number, app: string): void {
  handshakes.inc({ result: "accepted", app });
  handshakeSeconds.observe(Math.max(0, Date.now() - issued) / 1000);
}

/** A stored message emitted to `receivers` local connections; `ts` is its envelope's (ms). */
export function delivered(receivers: number, ts: number | undefined): void {
  if (receivers === 0) return;
  messagesDelivered.inc(receivers);
  if (ts !== undefined) deliverySeconds.observe(Math.max(0, Date.now() - ts) / 1000);
}

export const workersScraped = new Gauge({
  name: `${PREFIX}workers_scraped`,
  help: "Workers asked in the last scrape, by whether they answered within 2 s",
  labelNames: ["answered"] as const,
  registers: [registry],
});
