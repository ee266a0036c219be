import { type RateLimiterAbstract, RateLimiterRes } from "rate-limiter-flexible";
import { parseRate } from "../config/config.js";

/** One rate limit: `points` per `duration` seconds, under its own key prefix. */
export interface LimiterSpec {
  keyPrefix: string;
  points: number;
  duration: number;
}

/** Builds the spec of a rate config value (`20/4s`), or undefined when the limit is off (`0`). */
export function specOf(keyPrefix: string, value: string): LimiterSpec | undefined {
  const rate = parseRate(value);
  return rate && { keyPrefix, points: rate.points, duration: rate.seconds };
}

export type Verdict = { ok: true } | { ok: false; retryAfterMs: number };

/**
 * Consumes from a limiter. A store failure (the primary too slow, Redis gone without an insurance
 * limiter) lets the action through: refusing every user because the counter is unreachable would
 * turn an outage of the counter into an outage of the chat.
 */
export async function consume(
  limiter: RateLimiterAbstract,
  key: string,
  points = 1,
): Promise<Verdict> {
  try {
    await limiter.consume(key, points);
    return { ok: true };
  } catch (err) {
    if (err instanceof RateLimiterRes) return { ok: false, retryAfterMs: err.msBeforeNext };
    return { ok: true };
  }
}
