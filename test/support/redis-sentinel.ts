/**
 * A throwaway Redis Sentinel deployment for tests and benchmarks: a master, a replica and three
 * sentinels (quorum 2), real redis-server processes on free ports (see redis-server.ts), ready
 * once the replica is in sync and every sentinel knows the replica and the two other sentinels
 * (before that a failover could not happen).
 *
 * ```ts
 * const s = await startRedisSentinel();
 * // --redis-sentinels s.sentinels --redis-sentinel-name s.name
 * await s.master.kill(); await s.waitForFailover(); … await s.stop();
 * ```
 */
import { createClient } from "redis";
import { type RedisServer, startRedisServer } from "./redis-server.js";
import { waitUntil } from "./service.js";

export interface RedisSentinelOptions {
  /** The master's name in the sentinels' config. @default "weigot" */
  name?: string;
  /** Sentinels' `down-after-milliseconds`: how long a silent master takes to be declared down. @default 1000 */
  downAfterMs?: number;
  /** Extra redis-server flags of the master and the replica (e.g. AOF). @default [] */
  dataArgs?: string[];
}

export interface RedisSentinelSetup {
  readonly name: string;
  /** The servers as started: `servers[0]` was the master, `servers[1]` its replica. */
  readonly servers: RedisServer[];
  readonly sentinelServers: RedisServer[];
  /** `127.0.0.1:<port>,…` of the sentinels, for `--redis-sentinels`. */
  readonly sentinels: string;
  /** The port of the server the sentinels call master now. */
  masterPort(): Promise<number>;
  /** The server the sentinels call master now. */
  master(): Promise<RedisServer>;
  /** Resolves once the sentinels name a master other than `oldPort` and it accepts writes. */
  waitForFailover(oldPort: number, timeoutMs?: number): Promise<RedisServer>;
  /** Stops every process (sentinels first, so that none starts a failover meanwhile). */
  stop(): Promise<void>;
}

/** Runs one command on a server (a fresh connection, no retries). */
export async function redisCommand(port: number, args: string[]): Promise<unknown> {
  const client = createClient({
    socket: { host: "127.0.0.1", port, reconnectStrategy: false, connectTimeout: 1000 },
  });
  client.on("error", () => {});
  try {
    await client.connect();
    return await client.sendCommand(args);
  } finally {
    client.destroy();
  }
}

async function replicaInSync(port: number): Promise<boolean> {
  const info = String(await redisCommand(port, ["INFO", "replication"]));
  return /master_link_status:up/.test(info);
}

export async function startRedisSentinel(
  options: RedisSentinelOptions = {},
): Promise<RedisSentinelSetup> {
  const name = options.name ?? "weigot";
  const downAfter = options.downAfterMs ?? 1000;
  const started: RedisServer[] = [];
  try {
    const first = await startRedisServer({ args: options.dataArgs });
    started.push(first);
    const replica = await startRedisServer({
      args: [
        ...(options.dataArgs ?? []),
        "--replicaof",
        "127.0.0.1",
        String(first.port),
        "--repl-diskless-sync",
        "yes",
        "--repl-diskless-sync-delay",
        "0",
      ],
    });
    started.push(replica);
    await waitUntil(() => replicaInSync(replica.port), "the replica to be in sync", 10_000);
    const servers = [first, replica];
    const sentinelServers: RedisServer[] = [];
    for (let i = 0; i < 3; i++) {
      const s = await startRedisServer({
        readyLine: /\+monitor master/,
        configFile: (port, dir) =>
          [
            `port ${port}`,
            "bind 127.0.0.1",
            `dir ${dir}`,
            `sentinel monitor ${name} 127.0.0.1 ${first.port} 2`,
            `sentinel down-after-milliseconds ${name} ${downAfter}`,
            `sentinel failover-timeout ${name} 10000`,
            `sentinel parallel-syncs ${name} 1`,
            "",
          ].join("\n"),
        args: ["--sentinel"],
      });
      started.push(s);
      sentinelServers.push(s);
    }
    // Sentinels find the replica and each other through the master (hello messages every 2 s).
    for (const s of sentinelServers) {
      await waitUntil(
        async () => {
          const replicas = (await redisCommand(s.port, [
            "SENTINEL",
            "REPLICAS",
            name,
          ])) as unknown[];
          const peers = (await redisCommand(s.port, ["SENTINEL", "SENTINELS", name])) as unknown[];
          return replicas.length === 1 && peers.length === 2;
        },
        `sentinel ${s.port} to know the replica and its 2 peers`,
        20_000,
        100,
      );
    }
    const masterPort = async () => {
      let lastErr: unknown;
      for (const s of sentinelServers) {
        try {
          const reply = (await redisCommand(s.port, [
            "SENTINEL",
            "GET-MASTER-ADDR-BY-NAME",
            name,
          ])) as [string, string];
          return Number(reply[1]);
        } catch (err) {
          lastErr = err;
        }
      }
      throw lastErr;
    };
    const byPort = async (port: number) => {
      const server = servers.find((s) => s.port === port);
      if (!server) throw new Error(`no server on port ${port}`);
      return server;
    };
    return {
      name,
      servers,
      sentinelServers,
      sentinels: sentinelServers.map((s) => `127.0.0.1:${s.port}`).join(","),
      masterPort,
      master: async () => byPort(await masterPort()),
      async waitForFailover(oldPort, timeoutMs = 30_000) {
        const port = await waitUntil(
          async () => {
            const p = await masterPort();
            if (p === oldPort) return undefined;
            const role = (await redisCommand(p, ["ROLE"])) as unknown[];
            return role[0] === "master" ? p : undefined;
          },
          "the sentinels to promote a new master",
          timeoutMs,
          50,
        );
        return byPort(port);
      },
      async stop() {
        for (const s of sentinelServers) await s.stop();
        await Promise.all(servers.map((s) => s.stop()));
      },
    };
  } catch (err) {
    await Promise.allSettled(started.map((s) => s.stop()));
    throw err;
  }
}
