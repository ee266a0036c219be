/**
 * A throwaway Redis Cluster for tests and benchmarks: `masters` masters (each with `replicas`
 * replicas), real redis-server processes on free ports (client and bus ports both picked free),
 * joined with `redis-cli --cluster create`, ready once every node says `cluster_state:ok`.
 *
 * ```ts
 * const c = await startRedisCluster({ masters: 3, replicas: 1 });
 * // --redis-cluster c.seeds
 * await c.masterOf(slot).kill(); await c.waitForPromotion(slot, oldPort); … await c.stop();
 * ```
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { freePort } from "./nginx.js";
import { redisCommand } from "./redis-sentinel.js";
import { type RedisServer, startRedisServer } from "./redis-server.js";
import { waitUntil } from "./service.js";

const run = promisify(execFile);

export interface RedisClusterOptions {
  /** @default 3 */
  masters?: number;
  /** Replicas per master. @default 0 */
  replicas?: number;
  /** `cluster-node-timeout`: how long a silent master takes to be failed over. @default 1000 */
  nodeTimeoutMs?: number;
}

export interface RedisClusterSetup {
  readonly servers: RedisServer[];
  /** `127.0.0.1:<port>,…` of every node, for `--redis-cluster`. */
  readonly seeds: string;
  /** [first slot, last slot, master port] per slot range, from CLUSTER SLOTS of a live node. */
  slots(): Promise<[number, number, number][]>;
  /** The port of the master serving `slot`. */
  masterPortOf(slot: number): Promise<number>;
  server(port: number): RedisServer;
  /** Resolves once a master other than `oldPort` serves `slot` and the cluster says ok. */
  waitForPromotion(slot: number, oldPort: number, timeoutMs?: number): Promise<number>;
  stop(): Promise<void>;
}

export async function startRedisCluster(
  options: RedisClusterOptions = {},
): Promise<RedisClusterSetup> {
  const masters = options.masters ?? 3;
  const replicas = options.replicas ?? 0;
  const servers: RedisServer[] = [];
  try {
    for (let i = 0; i < masters * (1 + replicas); i++) {
      const port = await freePort();
      const bus = await freePort();
      servers.push(
        await startRedisServer({
          port,
          args: [
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            String(bus),
            "--cluster-config-file",
            `nodes-${port}.conf`,
            "--cluster-node-timeout",
            String(options.nodeTimeoutMs ?? 1000),
            // A replica may take over at once (no data-age check in a test).
            "--cluster-replica-validity-factor",
            "0",
          ],
        }),
      );
    }
    const addrs = servers.map((s) => `127.0.0.1:${s.port}`);
    await run("redis-cli", [
      "--cluster",
      "create",
      ...addrs,
      "--cluster-replicas",
      String(replicas),
      "--cluster-yes",
    ]);
    const alive = () => servers.filter((s) => !killed.has(s.port));
    const killed = new Set<number>();
    for (const s of servers) {
      await waitUntil(
        async () =>
          /cluster_state:ok/.test(String(await redisCommand(s.port, ["CLUSTER", "INFO"]))),
        `node ${s.port} to say cluster_state:ok`,
        20_000,
        100,
      );
    }
    const slots = async (): Promise<[number, number, number][]> => {
      let last: unknown;
      for (const s of alive()) {
        try {
          const reply = (await redisCommand(s.port, ["CLUSTER", "SLOTS"])) as [
            number,
            number,
            [string, number],
          ][];
          return reply.map(([from, to, master]) => [from, to, Number(master[1])]);
        } catch (err) {
          last = err;
        }
      }
      throw last;
    };
    const masterPortOf = async (slot: number) => {
      const range = (await slots()).find(([from, to]) => from <= slot && slot <= to);
      if (!range) throw new Error(`no master serves slot ${slot}`);
      return range[2];
    };
    const server = (port: number) => {
      const s = servers.find((x) => x.port === port);
      if (!s) throw new Error(`no node on port ${port}`);
      return s;
    };
    return {
      servers,
      seeds: addrs.join(","),
      slots,
      masterPortOf,
      server,
      async waitForPromotion(slot, oldPort, timeoutMs = 30_000) {
        killed.add(oldPort);
        return waitUntil(
          async () => {
            const port = await masterPortOf(slot);
            if (port === oldPort) return undefined;
            const info = String(await redisCommand(port, ["CLUSTER", "INFO"]));
            return /cluster_state:ok/.test(info) ? port : undefined;
          },
          `a replica to take over slot ${slot}`,
          timeoutMs,
          50,
        );
      },
      async stop() {
        await Promise.all(servers.map((s) => s.stop()));
      },
    };
  } catch (err) {
    await Promise.allSettled(servers.map((s) => s.stop()));
    throw err;
  }
}
