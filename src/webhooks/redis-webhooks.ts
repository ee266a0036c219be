import { closeRedisClient, createRedisClient } from "../backend/redis-clients.js";
import type { Config } from "../config/config.js";
import type { Logger } from "../log/logger.js";
import * as scripts from "./redis-webhook-scripts.js";
import { type QueuedChange, toWebhookEvents } from "./webhook-event.js";
import { WebhookSender } from "./webhook-sender.js";
import type { WebhookBatch, WebhookSource } from "./webhook-source.js";

/** The sender's lease: renewed every LEASE_RENEW_MS; a dead holder's expires after LEASE_TTL_MS. */
const LEASE_TTL_MS = 10_000;
const LEASE_RENEW_MS = 2000;
/** How long this process keeps sending after its last renewal (a margin below the TTL). */
const LEASE_TRUST_MS = LEASE_TTL_MS - 2 * LEASE_RENEW_MS;
/** The queue's settings outlive every process that runs webhooks by this much. */
const CFG_TTL_MS = 30_000;

/**
 * Redis mode's webhooks, one per worker of every node: each keeps the queue's settings alive and
 * competes for the lease; the holder alone sends (see redis-webhook-scripts.ts). When it dies, its
 * lease expires and another process of any node takes over with the queue intact: a crash loses no
 * queued event, and a batch it had POSTed without removing it is sent again (same ids).
 */
export class RedisWebhooks implements WebhookSource {
  private readonly client;
  private readonly base: string;
  private readonly sender: WebhookSender;
  private readonly renewer: NodeJS.Timeout;
  private leaseAt = 0;
  private leader = false;
  private drops = 0;
  private up = true;

  private constructor(
    private readonly config: Config,
    private readonly owner: string,
    private readonly log: Logger,
  ) {
    this.base = `${config.redisPrefix}:webhooks`;
    // One Redis or Sentinel (a cluster is refused with webhooks: see config.ts).
    this.client = createRedisClient(config);
    // The backend logs Redis outages; here they only pause the sender.
    this.client.on("error", () => {
      this.up = false;
    });
    this.client.on("ready", () => {
      this.up = true;
      void this.renew();
    });
    void this.client.connect().catch(() => {});
    this.sender = new WebhookSender({
      url: config.webhookUrl,
      secret: config.webhookSecret,
      source: this,
      log,
      active: () => this.leader && this.up && Date.now() - this.leaseAt < LEASE_TRUST_MS,
    });
    this.renewer = setInterval(() => void this.renew(), LEASE_RENEW_MS);
    this.renewer.unref();
    this.sender.start();
  }

  /** The webhooks of a config, or undefined when --webhook-url is not set. */
  static create(config: Config, owner: string, log: Logger): RedisWebhooks | undefined {
    if (config.webhookUrl === "") return undefined;
    return new RedisWebhooks(config, owner, log.child({ component: "webhooks" }));
  }

  private async renew(): Promise<void> {
    const at = Date.now();
    try {
      const held = await this.eval(scripts.LEASE, [
        this.owner,
        String(LEASE_TTL_MS),
        String(this.config.webhookQueueSize),
        this.config.webhookMessages ? "1" : "0",
        String(CFG_TTL_MS),
      ]);
      const leader = held === 1;
      if (leader) this.leaseAt = at;
      if (leader && !this.leader) this.log.info("sending the service's webhooks (lease taken)");
      this.leader = leader;
    } catch {
      // Redis is away: the lease lapses on its own (active() stops trusting it).
    }
  }

  async peek(max: number): Promise<WebhookBatch | undefined> {
    const [dropped, ...raw] = (await this.eval(scripts.PEEK, [String(max)])) as [
      number,
      ...string[],
    ];
    this.drops = dropped;
    let last = 0;
    const changes: QueuedChange[] = [];
    // LRANGE gives the newest first.
    for (const entry of raw.reverse()) {
      try {
        const change = JSON.parse(entry) as QueuedChange;
        if (!Number.isSafeInteger(change.n)) continue;
        changes.push(change);
        last = change.n;
      } catch {
        this.log.error("bad webhook queue entry", { entry: entry.slice(0, 200) });
      }
    }
    if (changes.length === 0) {
      // Only unreadable entries: remove them (ACK drops entries without a number).
      if (raw.length > 0) await this.ack(0);
      return undefined;
    }
    return {
      events: changes.flatMap((c) => toWebhookEvents(`${c.t}-${c.n}`, c)),
      last,
      oldest: changes[0].t,
    };
  }

  async ack(last: number): Promise<void> {
    await this.eval(scripts.ACK, [this.owner, String(last)]);
  }

  async dropped(): Promise<number> {
    return this.drops;
  }

  async close(): Promise<void> {
    clearInterval(this.renewer);
    // A batch POSTed but not removed would be sent again by the next holder: let it finish.
    await this.sender.stop(2000);
    // Hand over at once instead of after the lease's TTL.
    if (this.leader) await this.eval(scripts.RELEASE, [this.owner]).catch(() => {});
    await closeRedisClient(this.client);
  }

  private eval(script: string, args: string[]): Promise<unknown> {
    return this.client.sendCommand(["EVAL", script, "0", this.base, ...args]);
  }
}
