/**
 * A throwaway redis-server for the Redis-mode scenarios: the tests' helper
 * (test/support/redis-server.ts: no persistence, free port, own temp dir, cleaned up even if the
 * bench dies), plus the server's pid so its CPU can be counted.
 */
import { readFileSync } from "node:fs";
import { startRedisServer } from "../../test/support/redis-server.js";
import { processTree } from "./procfs.js";

export interface BenchRedis {
  url: string;
  port: number;
  /** 0 when it could not be found. */
  pid: number;
  stop(): Promise<void>;
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");
  } catch {
    return "";
  }
}

export async function startRedis(): Promise<BenchRedis> {
  const server = await startRedisServer();
  const pid =
    processTree(process.pid).find((p) => {
      const cmd = cmdline(p);
      return cmd.includes("redis-server") && cmd.includes(`:${server.port}`);
    }) ?? 0;
  return { url: server.url, port: server.port, pid, stop: () => server.stop() };
}
