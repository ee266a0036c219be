import { createAdapter, createShardedAdapter } from "@socket.io/redis-adapter";
import { RateLimiterMemory, RateLimiterRedis, RLWrapperTimeouts } from "rate-limiter-flexible";
import type { Server } from "socket.io";
import { RedisBanStore } from "../admin/redis-ban-store.js";
import { appConfigs } from "../config/apps.js";
import type { Config } from "../config/config.js";
import type { Delivery } from "../history/history-store.js";
import { parseDelivery, RedisHistoryStore } from "../history/redis-history-store.js";
import type { LimiterSpec } from "../limits/limiter-spec.js";
import { LimiterSet } from "../limits/shared-limits.js";
import type { Logger } from "../log/logger.js";
import { redisMetrics } from "../metrics/redis-metrics.js";
import { LocalTrackingStore } from "../presence/local-tracking-store.js";
import type { Heartbeat } from "../presence/owner-heartbeat.js";
import type { PresenceEvent } from "../presence/presence-store.js";
import { STALE_NODE_GRACE_MS } from "../presence/reconnect-grace.js";
import { RedisPresenceStore } from "../presence/redis-presence-store.js";
import { AppWebhooks } from "../webhooks/app-webhooks.js";
import { RedisWebhooks } from "../webhooks/redis-webhooks.js";
import { type Backend, CLEAN_NODE_ENV, type PresenceSink } from "./backend.js";
import { closeRedisClient, createRedisClient, type RedisHandle } from "./redis-clients.js";
import { storeLayout } from "./redis-layout.js";

type RedisClient = RedisHandle;

/** How long a shared rate limit may wait for Redis before this process counts alone. */
const LIMITER_TIMEOUT_MS = 300;

/**
 * A dead process is noticed within its liveness TTL plus one reaper round; both are cut from the
 * node timeout so that the sum stays within it (15 s: TTL 12 s, a round every 3 s).
 */
export const reapIntervalMs = (nodeTimeout: number) => Math.max(500, (nodeTimeout * 1000) / 5);
export const ownerTtlMs = (nodeTimeout: number) => nodeTimeout * 1000 - reapIntervalMs(nodeTimeout);

/**
 * Many machines: rooms over @socket.io/redis-adapter (its own pub and sub clients), presence in
 * Redis with a liveness key per process, reaped by every worker of every node.
 */
export class RedisBackend implements Backend {
  readonly presence: LocalTrackingStore;
  readonly history: RedisHistoryStore;
  readonly bans: RedisBanStore;
  private heartbeat?: Heartbeat;
  private reaper?: NodeJS.Timeout;
  private healthListeners: ((up: boolean) => void)[] = [];
  private up = true;
  private closing?: Promise<void>;
  private chat?: PresenceSink;
  private refreshTimer?: NodeJS.Timeout;
  /** Every process competes to send each app's webhooks; one at a time does, per app. */
  private webhooks?: AppWebhooks;

  private constructor(
    private readonly config: Config,
    private readonly pub: RedisClient,
    private readonly sub: RedisClient,
    private readonly cmd: RedisClient,
    /** History's own client: no offline queue, so an append fails while Redis is away. */
    private readonly hist: RedisClient,
    private readonly owner: string,
    private readonly log: Logger,
  ) {
    // One Redis and Sentinel: the key names as always; a cluster: slot groups (redis-layout.ts).
    const layout = storeLayout(config);
    this.presence = new LocalTrackingStore(
      new RedisPresenceStore({
        client: cmd,
        prefix: config.redisPrefix,
        nodeId: config.nodeId,
        ownerTtlSeconds: ownerTtlMs(config.nodeTimeout) / 1000,
        slotGroups: layout.slotGroups,
      }),
    );
    this.bans = new RedisBanStore(cmd, config.redisPrefix, layout.banTag);
    this.history = new RedisHistoryStore({
      client: hist,
      prefix: config.redisPrefix,
      size: config.historySize,
      ttlSeconds: config.historyTtl,
      slotGroups: layout.slotGroups,
    });
  }

  static async connect(config: Config, owner: string, logger: Logger): Promise<RedisBackend> {
    const log = logger.child({ component: "redis" });
    const pub = createRedisClient(config);
    const sub = createRedisClient(config);
    const cmd = createRedisClient(config);
    const hist = createRedisClient(config, { failFast: true });
    const backend = new RedisBackend(config, pub, sub, cmd, hist, owner, log);
    redisMetrics(
      () => backend.up,
      () => hist.ping(),
    );
    for (const [name, client] of [
      ["pub", pub],
      ["sub", sub],
      ["cmd", cmd],
      ["hist", hist],
    ] as const) {
      client.on("error", (err: Error) => backend.setUp(false, `${name}: ${err.message}`));
      client.on("ready", () => backend.checkUp());
    }
    await Promise.all([pub.connect(), sub.connect(), cmd.connect(), hist.connect()]);
    return backend;
  }

  private setUp(up: boolean, why: string): void {
    if (this.up === up) return;
    this.up = up;
    // Logged once per outage, not once per reconnection attempt.
    if (up) this.log.info("redis is reachable again");
    else this.log.error("redis is unreachable; serving local clients only", { err: why });
    for (const l of this.healthListeners) l(up);
  }

  private checkUp(): void {
    if (this.pub.isReady && this.sub.isReady && this.cmd.isReady && this.hist.isReady) {
      this.setUp(true, "");
    }
  }

  /**
   * Counted in Redis, so that a user's limit holds across nodes. While Redis is down each process
   * counts alone (the insurance limiter) rather than refusing or letting everything through.
   */
  readonly sharedLimits = new LimiterSet(
    (spec: LimiterSpec) =>
      // The timeout covers the moments before node-redis notices an outage, when a command waits
      // in its offline queue instead of failing: a message must not wait for Redis to come back.
      new RLWrapperTimeouts({
        limiter: new RateLimiterRedis({
          ...spec,
          keyPrefix: `${this.config.redisPrefix}:rl:${spec.keyPrefix}`,
          storeClient: this.cmd,
          useRedisPackage: true,
          rejectIfRedisNotReady: true,
        }),
        insuranceLimiter: new RateLimiterMemory(spec),
        timeoutMs: LIMITER_TIMEOUT_MS,
      }),
  );

  attach(io: Server): void {
    io.adapter(
      storeLayout(this.config).sharded
        ? // Redis 7's sharded pub/sub, one channel per namespace (app), subscribed at start. The
          // default "dynamic" mode subscribes a room's channel when its first local member joins,
          // without waiting: a 102 sent right after a join was lost (seen under load). Only
          // states go through the adapter (messages go through the history stream).
          createShardedAdapter(this.pub, this.sub, {
            channelPrefix: this.config.redisPrefix,
            subscriptionMode: "static",
          })
        : createAdapter(this.pub, this.sub, {
            key: this.config.redisPrefix,
            requestsTimeout: 5000,
          }),
    );
  }

  async start(chat: PresenceSink): Promise<void> {
    this.chat = chat;
    this.webhooks = new AppWebhooks((app, c) => RedisWebhooks.create(c, this.owner, this.log, app));
    this.webhooks.apply(appConfigs(this.config));
    // Events published while this process's subscription was down are lost: once every process
    // has had a heartbeat to rebuild its entries, clients get a fresh list.
    this.onHealth((up) => {
      if (up) this.scheduleRefresh();
    });
    const store = this.presence.inner;
    if (process.env[CLEAN_NODE_ENV] === "1") {
      // This node restarted with the same id: what its previous run left is stale, but its users'
      // clients are reconnecting. Removed after the grace: those back by then see no 203/202.
      const stale = (await store.owners(this.config.nodeId)).filter((o) => o !== this.owner);
      if (stale.length > 0) {
        const timer = setTimeout(() => {
          for (const owner of stale) {
            store
              .removeOwner(owner)
              .then(
                (users) =>
                  users.length > 0 &&
                  this.log.info("removed stale entries of a previous run", { users: users.length }),
              )
              .catch(() => {
                // Redis is down: the TTL reaper removes them once it is back.
              });
          }
        }, STALE_NODE_GRACE_MS);
        timer.unref();
      }
    }
    this.heartbeat = store.startHeartbeat(this.owner, {
      connections: () => [...this.presence.local.values()],
      onError: (err) => this.setUp(false, String(err)),
      onResync: (n) => {
        // The first beat of every process "resyncs" nothing: not worth a warning.
        if (n > 0)
          this.log.warn("redis had lost this process's presence; rewrote it", { connections: n });
      },
    });
    const every = reapIntervalMs(this.config.nodeTimeout);
    this.reaper = setInterval(() => {
      // The store's scripts announce who went offline.
      store.reapExpired().catch(() => {
        // Redis is down: the heartbeat reports it; the next round retries.
      });
      if (this.up) void this.announceLostLeaves(every);
    }, every);
    this.reaper.unref();
  }

  /**
   * Users whose leave Redis lost (it came back empty) or refused (it was down) were never
   * announced. Once every process has had a heartbeat to rewrite its entries since (older than
   * one round), those no longer online in their room are, by the store (a 203 with a version).
   */
  private async announceLostLeaves(minAgeMs: number): Promise<void> {
    const { lostLeaves } = this.presence;
    const cutoff = Date.now() - minAgeMs;
    const ripe = lostLeaves.filter((l) => l.at <= cutoff);
    if (ripe.length === 0) return;
    lostLeaves.splice(0, ripe.length);
    const seen = new Set<string>();
    for (const { user } of ripe) {
      const key = `${user.room}\n${user.userId}`;
      if (seen.has(key)) continue;
      seen.add(key);
      await this.presence.inner.announceGone(user).catch(() => {
        lostLeaves.push({ user, at: Date.now() });
      });
    }
  }

  /**
   * Pushes every local client a fresh 201 once every process has had a heartbeat to rebuild its
   * entries (after an outage of this process's subscription, or Redis losing its data).
   */
  private scheduleRefresh(): void {
    if (this.refreshTimer) return;
    this.refreshTimer = setTimeout(
      () => {
        this.refreshTimer = undefined;
        if (this.up) this.chat?.refreshLists().catch(() => {});
      },
      ownerTtlMs(this.config.nodeTimeout) / 3 + 500,
    );
    this.refreshTimer.unref();
  }

  onPresence(listener: (event: PresenceEvent) => void): void {
    // Published by the store's scripts, so every node sees the changes in the order they happened.
    void this.sub
      .subscribe(this.presence.inner.channels, (message: string) => {
        try {
          const event = JSON.parse(message) as PresenceEvent | { relist: 1 };
          if ("relist" in event) this.scheduleRefresh();
          else listener(event);
        } catch (err) {
          this.log.error("bad presence event", { err: String(err) });
        }
      })
      .catch((err: unknown) =>
        this.log.error("presence events subscription failed", { err: String(err) }),
      );
  }

  onDelivery(listener: (delivery: Delivery) => void): void {
    // Published by the append script: every node receives the messages in the store's order.
    void this.sub
      .subscribe(this.history.channels, (message: string) => {
        const delivery = parseDelivery(message);
        if (delivery) listener(delivery);
        else this.log.error("bad history delivery", { message: message.slice(0, 200) });
      })
      .catch((err: unknown) => this.log.error("history subscription failed", { err: String(err) }));
  }

  onHealth(listener: (up: boolean) => void): void {
    this.healthListeners.push(listener);
  }

  /** An apps reload: each app's webhooks start, change or stop in this process. */
  applyApps(config: Config): void {
    this.webhooks?.apply(appConfigs(config));
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      clearInterval(this.reaper);
      await this.webhooks?.close(2000);
      clearTimeout(this.refreshTimer);
      this.heartbeat?.stop();
      await this.presence.close();
      await Promise.allSettled([this.pub, this.sub, this.cmd, this.hist].map(closeRedisClient));
    })();
    return this.closing;
  }
}
