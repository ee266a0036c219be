import { randomBytes } from "node:crypto";
import type { Delivery } from "../history/history-store.js";
import type { PresenceEvent } from "../presence/presence-store.js";
import { type QueuedChange, toWebhookEvents } from "./webhook-event.js";
import type { WebhookBatch, WebhookSource } from "./webhook-source.js";

/**
 * Cluster mode's queue, in the primary: at most `size` changes; a full queue drops its oldest.
 * Ids are `<random tag of this run>-<n>`: unique across restarts of the node.
 */
export class MemoryWebhookQueue implements WebhookSource {
  private items: QueuedChange[] = [];
  /** Index of the oldest item in `items` (shifting a 10,000-entry array per ack is O(n)). */
  private head = 0;
  private n = 0;
  private drops = 0;
  private readonly tag = randomBytes(6).toString("hex");

  constructor(
    private readonly size: number,
    /** Called with the number of changes waiting after each push. */
    private readonly onPush: (waiting: number) => void = () => {},
  ) {}

  get length(): number {
    return this.items.length - this.head;
  }

  pushPresence(p: PresenceEvent): void {
    this.push({ n: 0, t: Date.now(), p });
  }

  pushMessage(m: Delivery): void {
    this.push({ n: 0, t: Date.now(), m });
  }

  private push(change: QueuedChange): void {
    change.n = ++this.n;
    this.items.push(change);
    if (this.length > this.size) {
      this.head++;
      this.drops++;
    }
    this.compact();
    this.onPush(this.length);
  }

  async peek(max: number): Promise<WebhookBatch | undefined> {
    if (this.length === 0) return undefined;
    const picked = this.items.slice(this.head, this.head + max);
    return {
      events: picked.flatMap((c) => toWebhookEvents(`${this.tag}-${c.n}`, c)),
      last: picked[picked.length - 1].n,
      oldest: picked[0].t,
    };
  }

  async ack(last: number): Promise<void> {
    // Some of the batch may have been dropped meanwhile: remove by number, not by count.
    while (this.head < this.items.length && this.items[this.head].n <= last) this.head++;
    this.compact();
  }

  async dropped(): Promise<number> {
    return this.drops;
  }

  private compact(): void {
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }
}
