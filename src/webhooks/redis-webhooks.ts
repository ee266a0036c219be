import { DEFAULT_APP, unscopeRoom } from "../apps/app-scope.js";
import { closeRedisClient, createRedisClient } from "../backend/redis-clients.js";
import { storeLayout } from "../backend/redis-layout.js";
import { allGroups, groupPrefix } from "../backend/slot-groups.js";
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
  /** Where the lease is (and, without slot groups, everything). */
  private readonly base: string;
  /** `:app:<id>` for an app's webhooks, "" for the default app's. */
  private readonly appSuffix: string;
  /** Slot groups (a cluster): each has its queue, sent in turn; [undefined] without. */
  private readonly groups: (number | undefined)[];
  /** The group of the batch last peeked: what ack() removes from. */
  private current = 0;
  private readonly groupDrops = new Map<number | undefined, number>();
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
    app: string,
  ) {
    const { slotGroups } = storeLayout(config);
    this.groups = allGroups(slotGroups);
    // An app's queues and lease sit beside the default app's (the hooks pick them by room).
    this.appSuffix = app === DEFAULT_APP ? "" : `:app:${app}`;
    this.base = `${config.redisPrefix}${slotGroups > 0 ? "{webhooks}" : ""}:webhooks${this.appSuffix}`;
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
      app,
      active: () => this.leader && this.up && Date.now() - this.leaseAt < LEASE_TRUST_MS,
    });
    this.renewer = setInterval(() => void this.renew(), LEASE_RENEW_MS);
    this.renewer.unref();
    this.sender.start();
  }

  /** An app's webhooks (its own queue), or undefined when it has no webhook URL. */
  static create(
    config: Config,
    owner: string,
    log: Logger,
    app: string = DEFAULT_APP,
  ): RedisWebhooks | undefined {
    if (config.webhookUrl === "") return undefined;
    return new RedisWebhooks(config, owner, log.child({ component: "webhooks", app }), app);
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
      if (this.groups[0] !== undefined) {
        await Promise.all(
          this.groups.map((g) =>
            this.evalIn(this.groupBase(g), scripts.CONFIG, [
              String(this.config.webhookQueueSize),
              this.config.webhookMessages ? "1" : "0",
              String(CFG_TTL_MS),
            ]),
          ),
        );
      }
      const leader = held === 1;
      if (leader) this.leaseAt = at;
      if (leader && !this.leader) this.log.info("sending the service's webhooks (lease taken)");
      this.leader = leader;
    } catch {
      // Redis is away: the lease lapses on its own (active() stops trusting it).
    }
  }

  async peek(max: number): Promise<WebhookBatch | undefined> {
    const peeked = (await Promise.all(
      this.groups.map((g) => this.evalIn(this.groupBase(g), scripts.PEEK, [String(max)])),
    )) as [number, ...string[]][];
    for (const [i, [dropped]] of peeked.entries()) this.groupDrops.set(this.groups[i], dropped);
    this.drops = [...this.groupDrops.values()].reduce((a, b) => a + b, 0);
    // The first group with waiting changes from the current one on: a failed batch is the same
    // batch next time; an acked one moves on to the next group.
    const n = this.groups.length;
    let at = this.current % n;
    for (let k = 0; k < n; k++) {
      const i = (this.current + k) % n;
      if (peeked[i].length > 1) {
        at = i;
        break;
      }
    }
    this.current = at;
    const group = this.groups[at];
    const [, ...raw] = peeked[at];
    const idOf = (c: QueuedChange) =>
      group === undefined ? `${c.t}-${c.n}` : `${c.t}-${group}.${c.n}`;
    let last = 0;
    const changes: QueuedChange[] = [];
    // LRANGE gives the newest first.
    for (const entry of raw.reverse()) {
      try {
        const change = JSON.parse(entry) as QueuedChange;
        if (!Number.isSafeInteger(change.n)) continue;
        changes.push(plainRooms(change));
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
      events: changes.flatMap((c) => toWebhookEvents(idOf(c), c)),
      last,
      oldest: changes[0].t,
    };
  }

  async ack(last: number): Promise<void> {
    const group = this.groups[this.current];
    const checkLease = group === undefined ? "1" : "0";
    await this.evalIn(this.groupBase(group), scripts.ACK, [this.owner, String(last), checkLease]);
    this.current = (this.current + 1) % this.groups.length;
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
    return this.evalIn(this.base, script, args);
  }

  /** `<prefix>:webhooks`, or a slot group's `<prefix>{g}:webhooks` (what the hooks fill). */
  private groupBase(group: number | undefined): string {
    return `${groupPrefix(this.config.redisPrefix, group)}:webhooks${this.appSuffix}`;
  }

  private evalIn(base: string, script: string, args: string[]): Promise<unknown> {
    return this.client.sendCommandFor(base, ["EVAL", script, "0", base, ...args]);
  }
}

/** The queue holds the stores' scoped rooms (`<app>/<room>`): receivers get the plain names. */
function plainRooms(change: QueuedChange): QueuedChange {
  if (change.p) {
    const room = unscopeRoom(change.p.user.room).room;
    return { ...change, p: { ...change.p, user: { ...change.p.user, room } } };
  }
  if (change.m) return { ...change, m: { ...change.m, room: unscopeRoom(change.m.room).room } };
  return change;
}
