import type { Config } from "../config/config.js";
import type { Delivery } from "../history/history-store.js";
import type { Logger } from "../log/logger.js";
import type { PresenceEvent } from "../presence/presence-store.js";
import { MemoryWebhookQueue } from "./memory-webhook-queue.js";
import { isWebhookMessage } from "./webhook-event.js";
import { BATCH_SIZE, WebhookSender } from "./webhook-sender.js";

/**
 * Cluster mode's webhooks, in the primary: its presence store announces every change once per
 * user and room, its history store sees every message once, so the primary is the one sender.
 * Pushing is synchronous and O(1); the POSTs happen in the sender's own loop.
 */
export class ClusterWebhooks {
  private readonly queue: MemoryWebhookQueue;
  private readonly sender: WebhookSender;

  constructor(
    private readonly config: Config,
    log: Logger,
    app = "default",
  ) {
    this.queue = new MemoryWebhookQueue(config.webhookQueueSize, (waiting) => {
      if (waiting === 1 || waiting >= BATCH_SIZE) this.sender.wake();
    });
    this.sender = new WebhookSender({
      url: config.webhookUrl,
      secret: config.webhookSecret,
      source: this.queue,
      log: log.child({ component: "webhooks", app }),
      initialDrops: 0,
      app,
    });
    this.sender.start();
  }

  /** The webhooks of a config, or undefined when --webhook-url is not set. */
  static create(config: Config, log: Logger, app?: string): ClusterWebhooks | undefined {
    return config.webhookUrl === "" ? undefined : new ClusterWebhooks(config, log, app);
  }

  presence(event: PresenceEvent): void {
    this.queue.pushPresence(event);
  }

  delivery(d: Delivery): void {
    if (this.config.webhookMessages && isWebhookMessage(d)) this.queue.pushMessage(d);
  }

  /** Sends what is waiting, for at most `ms` (a graceful stop), then stops. */
  async close(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    await this.sender.flush(ms);
    await this.sender.stop(Math.max(0, deadline - Date.now()));
  }
}
