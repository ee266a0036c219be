import type { WebhookEvent } from "./webhook-event.js";

/** The oldest changes waiting, as events, and what acknowledging them takes. */
export interface WebhookBatch {
  events: WebhookEvent[];
  /** The queue number of the last change in the batch: ack(last) removes it and older ones. */
  last: number;
  /** When the oldest change in the batch happened (epoch ms). */
  oldest: number;
}

/**
 * Where a sender takes its events from: a queue that keeps the oldest changes until they are
 * acknowledged (so a failed batch is sent again, with the same ids) and drops the oldest when
 * full. The memory queue (cluster mode, in the primary) and the Redis list (Redis mode).
 */
export interface WebhookSource {
  /** Up to `max` of the oldest waiting changes, left in the queue; undefined: none waiting. */
  peek(max: number): Promise<WebhookBatch | undefined>;
  /** Removes every change numbered up to `last` (those the receiver acknowledged). */
  ack(last: number): Promise<void>;
  /** Changes dropped because the queue was full, since the queue began. */
  dropped(): Promise<number>;
}
