/**
 * Every Redis client of the service, built from the config for one of three topologies: one
 * Redis (`--redis-url`), Redis with Sentinel (`--redis-sentinels`, node-redis `createSentinel`:
 * it follows a failover by itself) or a Redis Cluster (`--redis-cluster`, `createCluster`).
 * Whatever the topology, the code above sees one shape, {@link RedisHandle}: the node-redis
 * object itself (the Socket.IO adapter and rate-limiter-flexible take it as it is) with a
 * uniform `sendCommand(args)` and a `sendCommandFor(key, args)` that runs on the node holding
 * `key`'s slot (what a script touching that slot's keys must do on a cluster).
 */
import { createClient, createCluster, createSentinel } from "redis";
import { type Config, parseHostList } from "../config/config.js";

export type RedisTopology =
  | { kind: "single"; url: string }
  | { kind: "sentinel"; name: string; sentinels: { host: string; port: number }[] }
  | { kind: "cluster"; nodes: { host: string; port: number }[] };

/** The topology a config describes (its host lists were checked by parseConfig). */
export function redisTopology(config: Config): RedisTopology {
  const sentinels = parseHostList("redisSentinels", config.redisSentinels);
  if (sentinels.length > 0) {
    return { kind: "sentinel", name: config.redisSentinelName, sentinels };
  }
  const nodes = parseHostList("redisCluster", config.redisCluster);
  if (nodes.length > 0) return { kind: "cluster", nodes };
  return { kind: "single", url: config.redisUrl };
}

/** How the topology is named in logs and messages. */
export function describeTopology(t: RedisTopology): string {
  if (t.kind === "single") return redactUrl(t.url);
  const list = (t.kind === "sentinel" ? t.sentinels : t.nodes).map((n) => `${n.host}:${n.port}`);
  return t.kind === "sentinel"
    ? `master "${t.name}" of sentinels ${list.join(",")}`
    : `cluster ${list.join(",")}`;
}

/** What the service uses of a Redis client, whatever the topology. */
export interface RedisHandle {
  readonly isReady: boolean;
  connect(): Promise<unknown>;
  close(): Promise<unknown>;
  destroy(): unknown;
  /** Emitted on every failed connection attempt (of any node of a cluster). */
  on(event: "error", listener: (err: Error) => void): unknown;
  /** Emitted on every (re)connection: after a failover, once the new master is reached. */
  on(event: "ready", listener: () => void): unknown;
  off(event: "ready" | "error", listener: (...args: never[]) => void): unknown;
  /** Runs a command (a keyless one on a cluster: any node). */
  sendCommand(args: readonly string[]): Promise<unknown>;
  /** Runs a command on the node holding `key`'s slot (elsewhere: like sendCommand). */
  sendCommandFor(key: string, args: readonly string[]): Promise<unknown>;
  subscribe(
    channels: string | string[],
    listener: (message: string, channel: string) => void,
  ): Promise<unknown>;
  ping(): Promise<unknown>;
}

export interface RedisClientOptions {
  /**
   * Commands fail while Redis is unreachable instead of waiting to run later (history's appends:
   * a message must be refused, not stored after its sender was told it was not). One Redis and a
   * cluster: no offline queue; Sentinel, whose client holds commands during a failover and
   * retries them on the new master: each command is abandoned unless sent within
   * {@link FAIL_FAST_MS}. @default false
   */
  failFast?: boolean;
}

/** With failFast, how long a command may wait to be sent (Sentinel: a failover in progress). */
export const FAIL_FAST_MS = 1000;

/** Reconnect forever, backing off to 2 s; Redis coming back is the normal end of an outage. */
const reconnectStrategy = (retries: number) => Math.min(50 * 2 ** retries, 2000);

/** Credentials and TLS of --redis-url, which the sentinel and cluster nodes use too. */
function nodeAuth(config: Config): { username?: string; password?: string; tls: boolean } {
  try {
    const u = new URL(config.redisUrl);
    return {
      username: u.username ? decodeURIComponent(u.username) : undefined,
      password: u.password ? decodeURIComponent(u.password) : undefined,
      tls: u.protocol === "rediss:",
    };
  } catch {
    return { tls: false };
  }
}

/** A client for the config's topology, not connected yet. Attach an `error` listener. */
export function createRedisClient(config: Config, options: RedisClientOptions = {}): RedisHandle {
  const topology = redisTopology(config);
  const failFast = options.failFast ?? false;
  if (topology.kind === "single") {
    const client = createClient({
      url: topology.url,
      disableOfflineQueue: failFast,
      socket: { reconnectStrategy },
    });
    return Object.assign(client, {
      sendCommandFor: (_key: string, args: readonly string[]) => client.sendCommand(args),
    }) as unknown as RedisHandle;
  }
  const { username, password, tls } = nodeAuth(config);
  const socket = tls
    ? { tls: true as const, reconnectStrategy }
    : { tls: false as const, reconnectStrategy };
  if (topology.kind === "sentinel") {
    const sentinel = createSentinel({
      name: topology.name,
      sentinelRootNodes: topology.sentinels,
      nodeClientOptions: { username, password, socket },
      sentinelClientOptions: { socket },
      // Every command on one connection to the master, in call order (the presence scripts rely
      // on it between failovers): one client, reserved, so no command waits for a lease while
      // a later one overtakes it.
      masterPoolSize: 1,
      reserveClient: true,
    });
    const send = sentinel.sendCommand.bind(sentinel);
    const run = (args: readonly string[]) =>
      failFast
        ? sendOrRefuse(sentinel as unknown as SentinelInternals, args)
        : send(false, args as string[]);
    return Object.assign(sentinel, {
      // node-redis's sentinel takes (isReadonly, args); the adapter and the stores send (args).
      sendCommand: (a: unknown, b?: unknown, c?: unknown) =>
        Array.isArray(a) ? run(a) : send(a as boolean, b as string[], c as never),
      sendCommandFor: (_key: string, args: readonly string[]) => run(args),
    }) as unknown as RedisHandle;
  }
  const cluster = createCluster({
    rootNodes: topology.nodes.map((n) => ({ socket: { host: n.host, port: n.port } })),
    defaults: { username, password, socket, disableOfflineQueue: failFast },
  });
  const send = cluster.sendCommand.bind(cluster);
  // A node's errors and reconnections are the cluster's: the backend tracks health by them.
  cluster.on("node-error", (err: Error) => cluster.emit("error", err));
  cluster.on("node-ready", () => cluster.emit("ready"));
  return Object.assign(cluster, {
    sendCommand: (a: unknown, b?: unknown, c?: unknown, d?: unknown) =>
      Array.isArray(a)
        ? send(undefined, false, a as string[])
        : send(a as string, b as boolean, c as string[], d as never),
    sendCommandFor: (key: string, args: readonly string[]) => send(key, false, args as string[]),
    ping: () => send(undefined, false, ["PING"]),
  }) as unknown as RedisHandle;
}

/** node-redis's sentinel runs each command through `_execute(isReadonly, fn(masterClient))`. */
interface SentinelInternals {
  _execute(
    isReadonly: boolean,
    fn: (client: {
      sendCommand(args: string[], options: { abortSignal: AbortSignal }): Promise<unknown>;
    }) => Promise<unknown>,
  ): Promise<unknown>;
}

/**
 * A command that is refused, promptly, unless sent to the master within FAIL_FAST_MS. During a
 * failover node-redis's sentinel holds commands until it has found the new master (seconds) and
 * then runs them: an append would be acked late, or stored after its sender gave up. Here a
 * command still waiting then is abandoned (never sent: its abort signal stops it in node-redis's
 * queue, and a retry after the failover), and one already written waits for its reply.
 */
function sendOrRefuse(sentinel: SentinelInternals, args: readonly string[]): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const abort = new AbortController();
    let handed = false;
    let settled = false;
    const refuse = (err: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(err);
    };
    const timer = setTimeout(() => {
      abort.abort();
      if (!handed) refuse(new Error(`Redis master not reached within ${FAIL_FAST_MS} ms`));
    }, FAIL_FAST_MS);
    sentinel
      ._execute(false, (client) => {
        if (abort.signal.aborted) return Promise.reject(new Error("abandoned during a failover"));
        handed = true;
        const sent = client.sendCommand([...args], { abortSignal: abort.signal });
        // Aborted before it was written: it never ran, refuse now (node-redis would retry it).
        sent.catch((err: unknown) => {
          if (err instanceof Error && err.constructor.name === "AbortError") refuse(err);
        });
        return sent;
      })
      .then((value) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(value);
      }, refuse);
  });
}

/** Closes a client: gracefully if it is ready, else at once (close() would wait for Redis). */
export function closeRedisClient(client: RedisHandle): Promise<unknown> {
  return client.isReady ? client.close() : Promise.resolve(client.destroy());
}

/** The URL without its password, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return url;
  }
}
