import type { WebhookEvent } from "./webhook-event.js";
import { SIGNATURE_HEADER, signBody } from "./webhook-signature.js";

/** A POST that has not answered in this time failed: a hanging receiver only delays webhooks. */
export const POST_TIMEOUT_MS = 10_000;

export const TIMESTAMP_HEADER = "X-Weigot-Timestamp";

export interface PostResult {
  ok: boolean;
  /** The receiver's HTTP status (0: no answer: refused, reset, timed out). */
  status: number;
  error?: string;
}

/**
 * POSTs one batch. The body carries `sentAt` (epoch ms, also in X-Weigot-Timestamp) inside the
 * signed bytes, so that a receiver can refuse old replays; ids make resends idempotent.
 * Redirects are not followed (a 3xx is a failure): the signed body goes only where configured.
 */
export async function postBatch(
  url: string,
  secret: string,
  events: WebhookEvent[],
  timeoutMs = POST_TIMEOUT_MS,
  app?: string,
): Promise<PostResult> {
  const sentAt = Date.now();
  // `app`: which app the events are of (every app has its own URL and secret).
  const body = JSON.stringify(app === undefined ? { sentAt, events } : { sentAt, app, events });
  try {
    const res = await fetch(url, {
      method: "POST",
      body,
      redirect: "manual",
      signal: AbortSignal.timeout(timeoutMs),
      headers: {
        "Content-Type": "application/json",
        "User-Agent": "weigot-ws-webhooks",
        [SIGNATURE_HEADER]: signBody(body, secret),
        [TIMESTAMP_HEADER]: String(sentAt),
      },
    });
    // The answer's body is not used (nor read: a receiver could send without end).
    await res.body?.cancel().catch(() => undefined);
    return { ok: res.status >= 200 && res.status < 300, status: res.status };
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code;
    return { ok: false, status: 0, error: cause ?? (err as Error).name ?? String(err) };
  }
}
