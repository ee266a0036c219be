import type { Logger } from "../log/logger.js";
import { POST_TIMEOUT_MS, postBatch } from "./webhook-post.js";
import type { WebhookSource } from "./webhook-source.js";

/** Changes per POST at most. */
export const BATCH_SIZE = 100;
/** A batch that is not full waits this long after its oldest change for more (fewer POSTs). */
export const BATCH_WINDOW_MS = 1000;
const IDLE_POLL_MS = 250;
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 30_000;

/** Delay before retry `attempt` (1, 2, …): exponential, capped, with jitter (half to full). */
export function backoffMs(attempt: number, random = Math.random): number {
  const full = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (attempt - 1));
  return Math.round(full / 2 + (random() * full) / 2);
}

export interface WebhookSenderOptions {
  url: string;
  secret: string;
  source: WebhookSource;
  log: Logger;
  /** Whether this process is the one that sends now (Redis mode: it holds the lease). */
  active?: () => boolean;
  postTimeoutMs?: number;
  /** Drops the source counted before this sender began (undefined: take its first count). */
  initialDrops?: number;
  /** The app whose events these are: the body's `app`. @default "default" */
  app?: string;
}

export interface WebhookStats {
  /** Events in 2xx-acknowledged batches. */
  sent: number;
  /** POSTs that failed (non-2xx, refused, timed out). */
  failures: number;
}

/**
 * Sends a source's changes, oldest first, one batch at a time, off the message path: the chat
 * only ever pushes onto the queue. A batch is removed from the queue only once the receiver
 * answered 2xx; until then it is sent again (same ids) after an exponential back-off with jitter.
 */
export class WebhookSender {
  readonly stats: WebhookStats = { sent: 0, failures: 0 };
  private stopped = false;
  private napping?: { done: () => void; wakeable: boolean };
  private seenDrops?: number;
  private burstDrops = 0;
  private failingSince?: number;
  private running?: Promise<void>;

  constructor(private readonly opts: WebhookSenderOptions) {
    this.seenDrops = opts.initialDrops;
  }

  start(): void {
    this.running ??= this.loop().catch((err: unknown) => {
      this.opts.log.error("webhook sender stopped", { err: String(err) });
    });
  }

  /** New changes are waiting: cuts an idle wait (not a back-off). */
  wake(): void {
    if (this.napping?.wakeable) this.napping.done();
  }

  /** Waits (at most `ms`) until nothing is waiting, for a graceful stop. */
  async flush(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline && !this.stopped) {
      if (!(await this.opts.source.peek(1).catch(() => undefined))) return;
      this.wake();
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Stops after the POST in flight, if any; resolves when stopped or after `ms`. */
  async stop(ms = 0): Promise<void> {
    this.stopped = true;
    this.napping?.done();
    if (this.running && ms > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.running, new Promise((r) => (timer = setTimeout(r, ms)))]);
      clearTimeout(timer);
    }
  }

  private sleep(ms: number, wakeable: boolean): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        if (this.napping?.done === done) this.napping = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      timer.unref();
      this.napping = { done, wakeable };
    });
  }

  private async loop(): Promise<void> {
    const { source, log } = this.opts;
    let attempt = 0;
    while (!this.stopped) {
      if (this.opts.active && !this.opts.active()) {
        attempt = 0;
        await this.sleep(IDLE_POLL_MS, true);
        continue;
      }
      let batch = await source.peek(BATCH_SIZE).catch(() => undefined);
      if (batch && batch.events.length < BATCH_SIZE && attempt === 0) {
        const wait = BATCH_WINDOW_MS - (Date.now() - batch.oldest);
        if (wait > 0) {
          await this.sleep(wait, false);
          batch = await source.peek(BATCH_SIZE).catch(() => undefined);
        }
      }
      if (!batch) {
        await this.sleep(IDLE_POLL_MS, true);
        continue;
      }
      await this.noteDrops();
      const res = await postBatch(
        this.opts.url,
        this.opts.secret,
        batch.events,
        this.opts.postTimeoutMs ?? POST_TIMEOUT_MS,
        this.opts.app ?? "default",
      );
      if (res.ok) {
        await source.ack(batch.last).catch((err: unknown) =>
          // Not removed: the batch is sent again (same ids), receivers dedupe.
          log.warn("could not remove delivered webhook events", { err: String(err) }),
        );
        this.stats.sent += batch.events.length;
        if (this.failingSince !== undefined) {
          log.info("webhook receiver is back", {
            failedForMs: Date.now() - this.failingSince,
            attempts: attempt,
          });
          this.failingSince = undefined;
        }
        if (this.burstDrops > 0) {
          log.warn("webhook events were dropped while the queue was full", {
            dropped: this.burstDrops,
          });
          this.burstDrops = 0;
        }
        attempt = 0;
        continue;
      }
      this.stats.failures++;
      attempt++;
      if (this.failingSince === undefined) {
        this.failingSince = Date.now();
        // Once per outage; the back-off retries quietly (debug) until the receiver is back.
        log.warn("webhook delivery failed; retrying with back-off", {
          status: res.status,
          err: res.error,
          events: batch.events.length,
        });
      } else {
        log.debug("webhook delivery failed again", { status: res.status, err: res.error, attempt });
      }
      await this.sleep(backoffMs(attempt), false);
    }
  }

  /** Logs drops once per burst (the first of a burst, then the total once a batch gets through). */
  private async noteDrops(): Promise<void> {
    const total = await this.opts.source.dropped().catch(() => undefined);
    if (total === undefined) return;
    if (this.seenDrops === undefined || total < this.seenDrops) {
      this.seenDrops = total;
      return;
    }
    const fresh = total - this.seenDrops;
    this.seenDrops = total;
    if (fresh === 0) return;
    if (this.burstDrops === 0) {
      this.opts.log.warn("webhook queue is full: dropping the oldest events", { dropped: fresh });
    }
    this.burstDrops += fresh;
  }
}
