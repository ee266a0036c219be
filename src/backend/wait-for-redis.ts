import { createClient } from "redis";
import type { Config } from "../config/config.js";
import {
  closeRedisClient,
  createRedisClient,
  describeTopology,
  redactUrl,
  redisTopology,
} from "./redis-clients.js";

/** How long one attempt may take (a sentinel or cluster client retries inside connect()). */
const ATTEMPT_MS = 3000;

/**
 * Resolves once Redis answers PING, retrying until `waitSeconds` have passed; then rejects with a
 * message that says where and why (a node that cannot reach Redis must not start half-working).
 * `target`: a Redis URL, or the config (its topology: one Redis, Sentinel or a cluster).
 */
export async function waitForRedis(target: string | Config, waitSeconds: number): Promise<void> {
  const deadline = Date.now() + waitSeconds * 1000;
  const topology =
    typeof target === "string" ? { kind: "single" as const, url: target } : redisTopology(target);
  for (;;) {
    try {
      if (topology.kind === "single") await pingUrl(topology.url);
      else await pingTopology(target as Config);
      return;
    } catch (err) {
      if (Date.now() >= deadline) {
        const reason = err instanceof Error ? err.message || err.name : String(err);
        throw new Error(
          `cannot reach Redis at ${describeTopology(topology)} (${reason})` +
            (waitSeconds > 0
              ? ` after waiting ${waitSeconds} s`
              : "; --redis-wait <seconds> waits for it"),
        );
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

async function pingUrl(url: string): Promise<void> {
  const client = createClient({
    url,
    socket: { reconnectStrategy: false, connectTimeout: 2000 },
  });
  client.on("error", () => {});
  try {
    await client.connect();
    await client.ping();
    await client.close();
  } catch (err) {
    client.destroy();
    throw err;
  }
}

async function pingTopology(config: Config): Promise<void> {
  const client = createRedisClient(config);
  let lastError: Error | undefined;
  client.on("error", (err) => {
    lastError = err;
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      (async () => {
        await client.connect();
        await client.ping();
      })(),
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(lastError ?? new Error(`no answer within ${ATTEMPT_MS} ms`)),
          ATTEMPT_MS,
        );
      }),
    ]);
    await closeRedisClient(client);
  } catch (err) {
    await Promise.resolve(client.destroy()).catch(() => {});
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

export { redactUrl };
