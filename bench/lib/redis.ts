/**
 * A throwaway redis-server for the Redis-mode scenarios: the tests' helper
 * (test/support/redis-server.ts: no persistence, free port, own temp dir, cleaned up even if the
 * bench dies), plus the server's pid so its CPU can be counted.
 */
import { readFileSync } from "node:fs";
import { startRedisCluster } from "../../test/support/redis-cluster.js";
import { startRedisServer } from "../../test/support/redis-server.js";
import { processTree } from "./procfs.js";

export interface BenchRedis {
  url: string;
  port: number;
  /** 0 when it could not be found. */
  pid: number;
  /** Every redis-server process (a cluster has several). */
  pids: number[];
  /** A cluster's seed nodes (`host:port,…`, for --redis-cluster); undefined for one Redis. */
  seeds?: string;
  stop(): Promise<void>;
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");
  } catch {
    return "";
  }
}

function pidOf(port: number): number {
  return (
    processTree(process.pid).find((p) => {
      const cmd = cmdline(p);
      return cmd.includes("redis-server") && cmd.includes(`:${port}`);
    }) ?? 0
  );
}

/** One Redis, or (`cluster`) a Redis Cluster of 3 masters without replicas. */
export async function startRedis(topology: "single" | "cluster" = "single"): Promise<BenchRedis> {
  if (topology === "cluster") {
    const cluster = await startRedisCluster({ masters: 3 });
    const pids = cluster.servers.map((s) => pidOf(s.port));
    const first = cluster.servers[0];
    return {
      url: first.url,
      port: first.port,
      pid: pids[0],
      pids,
      seeds: cluster.seeds,
      stop: () => cluster.stop(),
    };
  }
  const server = await startRedisServer();
  const pid = pidOf(server.port);
  return { url: server.url, port: server.port, pid, pids: [pid], stop: () => server.stop() };
}
