import { PING_FAILED_S, redisPingSeconds, registry, sources } from "./metrics.js";

const PING_WAIT_MS = 2000;

/**
 * The Redis backend's figures, read at scrape time: whether the backend sees Redis (its health,
 * as /readyz reports it) and a PING's round trip on `ping`'s client (one without an offline
 * queue, so that a PING during an outage fails at once instead of waiting for Redis).
 */
export function redisMetrics(isUp: () => boolean, ping: () => Promise<unknown>): void {
  if (!registry.getSingleMetric("weigot_ws_redis_ping_seconds")) {
    registry.registerMetric(redisPingSeconds);
  }
  sources.backend = { name: "redis", up: isUp };
  sources.redisPing = async () => {
    const start = process.hrtime.bigint();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("timeout")), PING_WAIT_MS);
    });
    try {
      await Promise.race([ping(), late]);
      return Number(process.hrtime.bigint() - start) / 1e9;
    } catch {
      return PING_FAILED_S;
    } finally {
      clearTimeout(timer);
    }
  };
}
