import cluster, { type Worker } from "node:cluster";
import { existsSync, rmSync } from "node:fs";
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { setupPrimary as setupClusterAdapter } from "@socket.io/cluster-adapter";
import { BAN_METHODS, BANS_SERVICE, MemoryBanStore } from "../admin/ban-store.js";
import { CLEAN_NODE_ENV } from "../backend/backend.js";
import { waitForRedis } from "../backend/wait-for-redis.js";
import { appConfigs, loadApps } from "../config/apps.js";
import { type Config, parseRate } from "../config/config.js";
import { historyPath, loadHistory, saveHistory } from "../history/history-file.js";
import { HISTORY_METHODS, HISTORY_SERVICE } from "../history/ipc-history-store.js";
import { MemoryHistoryStore } from "../history/memory-history-store.js";
import { ClientAddresses } from "../http/client-address.js";
import { LIMITS_METHODS, LIMITS_SERVICE, primaryLimits } from "../limits/shared-limits.js";
import { createLogger, type Logger } from "../log/logger.js";
import { isMetricsRequest, NodeMetrics } from "../metrics/node-metrics.js";
import { PRESENCE_METHODS, PRESENCE_SERVICE } from "../presence/ipc-presence-store.js";
import { MemoryPresenceStore } from "../presence/memory-presence-store.js";
import {
  handoverPath,
  RESTORED_OWNER,
  restoreHandover,
  saveHandover,
} from "../presence/presence-handover.js";
import { RECONNECT_GRACE_MS } from "../presence/reconnect-grace.js";
import { deferred, withTimeout } from "../util/deferred.js";
import { AppWebhooks } from "../webhooks/app-webhooks.js";
import { ClusterWebhooks } from "../webhooks/cluster-webhooks.js";
import { ConnectionLedger } from "./connection-ledger.js";
import type { PrimaryToWorker, WorkerStats, WorkerToPrimary } from "./ipc-messages.js";
import { isOurs } from "./ipc-messages.js";
import { serveRpc } from "./ipc-rpc.js";
import { perAddressPending } from "./pending-connections.js";
import { controlSocketPath, livePid, removePidFile, writePidFile } from "./pid-file.js";
import { HEALTH_RESERVE, StickyBalancer } from "./sticky-balancer.js";
import { CONFIG_ENV } from "./worker.js";
import { WorkerLinks } from "./worker-links.js";

type SlotState = "starting" | "ready" | "draining";

interface Slot {
  worker: Worker;
  state: SlotState;
  startedAt: number;
  owner?: string;
  backendUp: boolean;
  ready: Promise<void>;
  markReady: () => void;
  exited: Promise<number>;
}

export interface Status {
  pid: number;
  nodeId: string;
  adapter: Config["adapter"];
  host: string;
  port: number;
  uptimeSeconds: number;
  ready: boolean;
  workers: (Partial<WorkerStats> & { id: number; pid: number; state: SlotState })[];
  connections: number;
  users: number;
  /** Refusals of new connections since start, by code (admission: caps, rates, origins). */
  refusals: ConnectionLedger["refusals"];
  /** Connections whose head is being read, live sessions as reserved, heads past the deadline. */
  admission: { pending: number; sessions: number; headTimeouts: number };
  /** Refusals inside sessions since the workers started, by code, summed over the workers. */
  sessionRefusals: Record<string, number>;
  /** Every app (the default one first) and its connections on this node. */
  apps: { id: string; name: string; connections: number }[];
}

export class AlreadyRunningError extends Error {}

const READY_TIMEOUT_MS = 30_000;

/**
 * The primary process: owns the listening socket and routes connections to workers, keeps the
 * workers alive (replacing dead ones, rolling reloads), holds the node's presence store in
 * cluster mode, answers health checks and the CLI's control socket.
 */
export class Primary {
  private readonly log: Logger;
  private readonly root: Logger;
  private readonly slots = new Map<number, Slot>();
  /** Cluster mode's presence: its changes go to every worker, in order, for their clients. */
  private readonly store = new MemoryPresenceStore((event) => {
    for (const slot of this.slots.values())
      this.send(slot.worker, { type: "wws:presence-event", event });
    // Before any worker exists, the changes are the previous run's users put back (restart):
    // receivers were never told they left, so they are not told they came.
    if (this.slots.size > 0) this.webhooks?.presence(event);
  });
  /**
   * Cluster mode's webhooks, one sender per app with a webhook URL: the primary's stores see
   * every change once, so it sends them.
   */
  private readonly webhooks: AppWebhooks | undefined;
  /** Cluster mode's per-user rate limits, counted for every worker. */
  private readonly limits = primaryLimits();
  /** Cluster mode's history: every stored message goes to every worker, in order. */
  private readonly history: MemoryHistoryStore;
  /** What workers may call in the primary (see serveRpc). */
  private rpcServices?: Parameters<typeof serveRpc>[0];
  private readonly server: net.Server;
  private readonly balancer: StickyBalancer;
  /** Each worker's link beside the cluster channel: what must not wait behind hand-offs. */
  private readonly links = new WorkerLinks((id, msg) => {
    const slot = this.slots.get(id);
    if (slot) this.onWorkerMessage(slot.worker, msg);
  });
  private readonly ledger: ConnectionLedger;
  /** The admin API's bans (cluster mode), kept here so that every worker sees them. */
  private readonly bans = new MemoryBanStore();
  private headTimeouts = 0;
  private readonly health: Server;
  private readonly metrics: NodeMetrics;
  private control?: Server;
  private readonly startedAt = Date.now();
  private port = 0;
  private crashes = 0;
  private pendingReaps: string[] = [];
  private statsSeq = 0;
  private readonly statsWaiters = new Map<number, (s: WorkerStats) => void>();
  private stopping?: Promise<void>;
  private reloading?: Promise<void>;

  constructor(private readonly config: Config) {
    this.root = createLogger(config, { node: config.nodeId });
    this.log = this.root.child({ component: "primary" });
    if (config.adapter === "cluster") {
      this.webhooks = new AppWebhooks((app, c) => ClusterWebhooks.create(c, this.root, app));
      this.webhooks.apply(appConfigs(config));
    }
    this.history = new MemoryHistoryStore(
      { size: config.historySize, ttlSeconds: config.historyTtl },
      (delivery) => {
        for (const slot of this.slots.values()) {
          this.send(slot.worker, { type: "wws:chat-delivery", delivery });
        }
        this.webhooks?.delivery(delivery);
      },
    );
    this.health = createHttpServer((req, res) => this.onHealthRequest(req, res));
    this.metrics = new NodeMetrics({
      adminKey: config.adminKey,
      workers: () => this.liveWorkers(),
    });
    this.ledger = new ConnectionLedger({
      maxConnections: config.maxConnections,
      maxConnectionsPerAddress: config.maxConnectionsPerAddress,
      maxConnectionsPerUser: config.maxConnectionsPerUser,
      connectRate: parseRate(config.connectRate),
    });
    const proxies = new ClientAddresses(config.trustedProxies);
    this.balancer = new StickyBalancer({
      routable: () =>
        [...this.slots.values()].filter((s) => s.state === "ready").map((s) => s.worker),
      byId: (id) => {
        const slot = this.slots.get(id);
        return slot && slot.state !== "starting" ? slot.worker : undefined;
      },
      local: this.health,
      localPaths: new Set(["/healthz", "/readyz", "/metrics"]),
      requestTimeoutMs: config.requestTimeout * 1000,
      pending: {
        max: config.maxPendingConnections,
        perAddress: perAddressPending(config.maxPendingConnections),
        reserve: HEALTH_RESERVE,
      },
      isTrusted: (address) => proxies.isTrusted(address),
      onRefused: (code) => this.ledger.count(code),
      onHeadTimeout: () => this.headTimeouts++,
    });
    this.server = net.createServer((socket) => this.balancer.handle(socket));
  }

  /** Forks the workers, waits until every one is ready, then listens. */
  async start(): Promise<void> {
    const running = livePid(this.config.pidFile);
    if (running !== undefined && running !== process.pid) {
      throw new AlreadyRunningError(
        `weigot-ws is already running (pid ${running}, pid file ${this.config.pidFile})`,
      );
    }
    writePidFile(this.config.pidFile);
    await this.links.listen(this.config.pidFile);
    if (!this.config.jwtSecret) {
      this.log.warn(
        "OPEN MODE, for development only: no --jwt-secret, so anyone can claim any name and read its private messages; run with --jwt-secret (and --jwt-audience/--jwt-issuer) in production",
      );
    }
    cluster.setupPrimary({
      exec: path.join(path.dirname(fileURLToPath(import.meta.url)), "worker-main.js"),
      serialization: "advanced",
    });
    cluster.on("message", (worker, msg) => this.onWorkerMessage(worker, msg));
    cluster.on("exit", (worker, code, signal) => this.onWorkerExit(worker, code, signal));
    process.on("SIGTERM", () => void this.stop("SIGTERM"));
    process.on("SIGINT", () => void this.stop("SIGINT"));
    // SIGHUP: the apps only, no worker restarted (what `reload --apps` does).
    process.on("SIGHUP", () => {
      try {
        this.reloadApps();
      } catch (err) {
        this.log.error("apps reload failed; the apps stay as they were", {
          err: err instanceof Error ? err.message : String(err),
        });
      }
    });

    let slots: Slot[];
    if (this.config.adapter === "redis") {
      await waitForRedis(this.config, this.config.redisWait);
      // The first worker cleans what a previous run of this node id left, before any other joins.
      const first = this.fork({ [CLEAN_NODE_ENV]: "1" });
      await withTimeout(first.ready, READY_TIMEOUT_MS, "worker start");
      slots = Array.from({ length: this.config.workers - 1 }, () => this.fork());
    } else {
      setupClusterAdapter();
      const rooms = loadHistory(historyPath(this.config.pidFile), this.history);
      if (rooms > 0) this.log.info("history of the previous run loaded", { logs: rooms });
      // A restart: the previous primary's users stay online while their clients reconnect.
      const restored = await restoreHandover(handoverPath(this.config.pidFile), this.store);
      if (restored > 0) {
        this.log.info("kept the previous run's users online for the grace", {
          connections: restored,
        });
        this.reapLater(RESTORED_OWNER);
      }
      slots = Array.from({ length: this.config.workers }, () => this.fork());
    }
    await Promise.all(slots.map((s) => withTimeout(s.ready, READY_TIMEOUT_MS, "worker start")));
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(this.config.port, this.config.host, () => resolve());
    });
    this.server.on("error", (err) => this.log.error("listener error", { err: String(err) }));
    this.port = (this.server.address() as net.AddressInfo).port;
    await this.openControl();
    this.log.info("ready", {
      pid: process.pid,
      host: this.config.host,
      port: this.port,
      workers: this.config.workers,
      adapter: this.config.adapter,
    });
  }

  private fork(env: Record<string, string> = {}): Slot {
    const worker = cluster.fork({
      ...env,
      ...this.links.env(),
      [CONFIG_ENV]: JSON.stringify(this.config),
    });
    const ready = deferred<void>();
    const exited = deferred<number>();
    const slot: Slot = {
      worker,
      state: "starting",
      startedAt: Date.now(),
      backendUp: true,
      ready: ready.promise,
      markReady: ready.resolve,
      exited: exited.promise,
    };
    worker.once("exit", (code) => exited.resolve(code ?? 1));
    // A send racing the worker's exit fails with EPIPE: its exit handler does what is needed.
    worker.on("error", (err) =>
      this.log.debug("worker channel error", { worker: worker.id, err: String(err) }),
    );
    this.slots.set(worker.id, slot);
    return slot;
  }

  private onWorkerMessage(worker: Worker, msg: unknown): void {
    if (!isOurs<WorkerToPrimary>(msg)) return;
    const slot = this.slots.get(worker.id);
    if (!slot) return;
    switch (msg.type) {
      case "wws:ready":
        slot.owner = msg.owner;
        if (slot.state === "starting") slot.state = "ready";
        slot.markReady();
        this.flushReaps();
        break;
      case "wws:rpc-call":
        // Built once: this runs for every chat message (its history append and its limits).
        this.rpcServices ??= {
          [PRESENCE_SERVICE]: { target: this.store, methods: PRESENCE_METHODS },
          [HISTORY_SERVICE]: { target: this.history, methods: HISTORY_METHODS },
          [LIMITS_SERVICE]: { target: this.limits, methods: LIMITS_METHODS },
          [BANS_SERVICE]: { target: this.bans, methods: BAN_METHODS },
        };
        serveRpc(this.rpcServices, msg, (reply) => this.send(worker, reply));
        break;
      case "wws:stats-reply":
        this.statsWaiters.get(msg.id)?.(msg.stats);
        break;
      case "wws:admit":
        this.ledger
          .reserve(worker.id, msg.kind, msg.key, msg.limit)
          .then((r) =>
            this.send(
              worker,
              typeof r === "number"
                ? { type: "wws:admit-reply", id: msg.id, token: r }
                : { type: "wws:admit-reply", id: msg.id, refusal: r },
            ),
          );
        break;
      case "wws:accepted":
        this.balancer.accepted(worker);
        break;
      case "wws:admit-release":
        this.ledger.release(msg.token);
        break;
      case "wws:refused":
        this.ledger.count(msg.code);
        break;
      case "wws:health":
        if (slot.backendUp !== msg.backendUp) {
          this.log.warn(msg.backendUp ? "backend is back" : "backend is down", {
            worker: worker.id,
          });
        }
        slot.backendUp = msg.backendUp;
        break;
    }
  }

  private onWorkerExit(worker: Worker, code: number | null, signal: string | null): void {
    const slot = this.slots.get(worker.id);
    this.balancer.dropWorker(worker);
    this.links.drop(worker.id);
    this.ledger.dropWorker(worker.id);
    if (!slot) return;
    this.slots.delete(worker.id);
    const planned = slot.state === "draining" || this.stopping !== undefined;
    // A drained worker hands its users over (they stay online while their clients reconnect), a
    // killed one never ran its disconnect handlers: either way its entries go after the grace.
    if (slot.owner && this.stopping === undefined) this.reapLater(slot.owner);
    if (planned) return;
    const lived = Date.now() - slot.startedAt;
    this.crashes = lived > 30_000 ? 0 : this.crashes + 1;
    const delay = this.crashes <= 1 ? 0 : Math.min(100 * 2 ** this.crashes, 10_000);
    this.log.warn("worker died, replacing it", {
      worker: worker.id,
      pid: worker.process.pid,
      code,
      signal,
      delayMs: delay,
    });
    setTimeout(() => {
      if (this.stopping) return;
      const fresh = this.fork();
      withTimeout(fresh.ready, READY_TIMEOUT_MS, "worker start").catch((err) =>
        this.log.error("replacement worker did not start", { err: String(err) }),
      );
    }, delay).unref();
  }

  /**
   * Removes a dead owner's connections; the store announces who went offline. In Redis mode a
   * live worker does it (the primary has no Redis client); should that worker die too, the TTL
   * reaper still removes them within --node-timeout.
   */
  private reapLater(owner: string): void {
    setTimeout(() => {
      if (this.stopping === undefined) this.reap(owner);
    }, RECONNECT_GRACE_MS).unref();
  }

  private reap(owner: string): void {
    if (this.config.adapter === "cluster") {
      void this.store.removeOwner(owner);
      return;
    }
    this.pendingReaps.push(owner);
    this.flushReaps();
  }

  private flushReaps(): void {
    const slot = [...this.slots.values()].find((s) => s.state === "ready");
    if (!slot) return;
    for (const owner of this.pendingReaps.splice(0)) {
      this.send(slot.worker, { type: "wws:reap", owner });
    }
  }

  private send(worker: Worker, msg: PrimaryToWorker): void {
    if (worker.isConnected() && !this.links.send(worker.id, msg)) worker.send(msg);
  }

  /**
   * Reads the apps again (--apps-file, or the --config file) and applies them in every worker,
   * in place: apps added start, changed ones take their new settings (a rotated secret, limits),
   * removed ones' clients are disconnected with E_UNKNOWN_APP. A file that does not validate
   * changes nothing (the error is returned). Workers forked later start with the new apps.
   */
  reloadApps(): { apps: string[] } {
    const apps = loadApps(this.config);
    this.config.apps = apps;
    for (const slot of this.slots.values()) this.send(slot.worker, { type: "wws:apps", apps });
    this.webhooks?.apply(appConfigs(this.config));
    const ids = apps.map((a) => a.id);
    this.log.info("apps reloaded", { apps: ids });
    return { apps: ids };
  }

  /** Rolling restart: each worker is replaced by a fresh, ready one before it drains. */
  reload(): Promise<void> {
    this.reloading ??= (async () => {
      try {
        // A broken apps file fails the reload before any worker is touched.
        this.reloadApps();
        const old = [...this.slots.values()].filter((s) => s.state !== "draining");
        for (const slot of old) {
          if (this.stopping) return;
          const fresh = this.fork();
          await withTimeout(fresh.ready, READY_TIMEOUT_MS, "worker start");
          await this.drainSlot(slot, "server reloading, reconnecting", RECONNECT_GRACE_MS);
        }
        this.log.info("reload complete", { workers: this.slots.size });
      } finally {
        this.reloading = undefined;
      }
    })();
    return this.reloading;
  }

  private async drainSlot(slot: Slot, notice: string, graceMs: number): Promise<void> {
    slot.state = "draining";
    this.send(slot.worker, { type: "wws:drain", notice, graceMs });
    // The worker hands its users over (the grace runs here, see reapLater): it exits at once.
    const limit = this.config.shutdownTimeout * 1000;
    try {
      await withTimeout(slot.exited, limit, "worker drain");
    } catch {
      this.log.warn("worker did not drain in time, killing it", { worker: slot.worker.id });
      slot.worker.process.kill("SIGKILL");
      await slot.exited;
    }
  }

  /** Graceful stop: runs once; every client is told, then the workers drain and exit. */
  stop(reason: string, exitCode = 0): Promise<void> {
    this.stopping ??= (async () => {
      this.log.info("stopping", { reason });
      const hardStop = setTimeout(() => {
        this.log.error("shutdown timed out, exiting");
        removePidFile(this.config.pidFile);
        process.exit(1);
      }, this.config.shutdownTimeout * 1000);
      hardStop.unref();
      this.server.close();
      // The workers hand their users over instead of removing them: in Redis mode other nodes
      // reap them once their liveness expires (clients moving there do not flap), in cluster mode
      // the next start on this pid file keeps them online for the grace (a restart does not flap).
      await Promise.allSettled(
        [...this.slots.values()].map((slot) =>
          this.drainSlot(slot, "server shutting down", RECONNECT_GRACE_MS),
        ),
      );
      if (this.config.adapter === "cluster") {
        try {
          saveHistory(historyPath(this.config.pidFile), this.history);
        } catch (err) {
          this.log.warn("could not save history for the next start", { err: String(err) });
        }
        try {
          saveHandover(handoverPath(this.config.pidFile), this.store);
        } catch (err) {
          this.log.warn("could not save presence for the next start", { err: String(err) });
        }
      }
      // What the receiver has not taken yet, for a moment (the queue is in this process).
      await this.webhooks?.close(2000);
      this.control?.close();
      this.links.close();
      this.health.close();
      rmSync(controlSocketPath(this.config.pidFile), { force: true });
      removePidFile(this.config.pidFile);
      this.log.info("stopped");
      await new Promise<void>((resolve) => {
        this.root.on("finish", resolve);
        this.root.end();
        setTimeout(resolve, 500).unref();
      });
      clearTimeout(hardStop);
      process.exit(exitCode);
    })();
    return this.stopping;
  }

  private isReady(): boolean {
    const slots = [...this.slots.values()];
    const ready = slots.filter((s) => s.state === "ready");
    return !this.stopping && ready.length > 0 && ready.every((s) => s.backendUp);
  }

  async status(): Promise<Status> {
    const slots = [...this.slots.values()];
    const stats = await Promise.all(slots.map((s) => this.requestStats(s.worker)));
    const workers = slots.map((s, i) => ({
      ...stats[i],
      id: s.worker.id,
      pid: s.worker.process.pid ?? 0,
      state: s.state,
    }));
    const presence =
      this.config.adapter === "cluster"
        ? await this.store.stats()
        : stats.find((s) => s?.presence)?.presence;
    return {
      pid: process.pid,
      nodeId: this.config.nodeId,
      adapter: this.config.adapter,
      host: this.config.host,
      port: this.port,
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      ready: this.isReady(),
      workers,
      connections: workers.reduce((n, w) => n + (w.connections ?? 0), 0),
      users: presence?.users ?? 0,
      refusals: { ...this.ledger.refusals },
      admission: {
        pending: this.balancer.pendingCount,
        sessions: this.ledger.size,
        headTimeouts: this.headTimeouts,
      },
      sessionRefusals: sumCounts(stats.map((s) => s?.refusals)),
      apps: [{ id: "default", name: "default" }, ...this.config.apps].map((a) => ({
        id: a.id,
        name: a.name,
        connections: stats.reduce((n, s) => n + (s?.apps?.[a.id] ?? 0), 0),
      })),
    };
  }

  /** Workers holding connections: ready or draining (what /metrics asks). */
  private liveWorkers(): Worker[] {
    return [...this.slots.values()].filter((s) => s.state !== "starting").map((s) => s.worker);
  }

  private requestStats(worker: Worker): Promise<WorkerStats | undefined> {
    const id = ++this.statsSeq;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.statsWaiters.delete(id);
        resolve(undefined);
      }, 2000);
      this.statsWaiters.set(id, (stats) => {
        clearTimeout(timer);
        this.statsWaiters.delete(id);
        resolve(stats);
      });
      this.send(worker, { type: "wws:stats-request", id });
    });
  }

  private onHealthRequest(req: IncomingMessage, res: ServerResponse): void {
    if (isMetricsRequest(req.url)) {
      this.metrics.serve(req, res);
      return;
    }
    res.setHeader("Connection", "close");
    res.setHeader("Content-Type", "application/json");
    if (req.url?.startsWith("/healthz")) {
      res.writeHead(200).end(JSON.stringify({ status: "ok" }));
      return;
    }
    const ready = this.isReady();
    const slots = [...this.slots.values()];
    res.writeHead(ready ? 200 : 503).end(
      JSON.stringify({
        ready,
        workers: slots.filter((s) => s.state === "ready").length,
        backend: slots.every((s) => s.backendUp) ? "up" : "down",
        stopping: this.stopping !== undefined,
      }),
    );
  }

  /** The CLI talks to a running primary over a Unix socket beside the pid file. */
  private async openControl(): Promise<void> {
    const socketPath = controlSocketPath(this.config.pidFile);
    if (existsSync(socketPath)) rmSync(socketPath);
    this.control = createHttpServer((req, res) => {
      const reply = (code: number, body: unknown) =>
        res.writeHead(code, { "Content-Type": "application/json" }).end(JSON.stringify(body));
      if (req.method === "GET" && req.url === "/config") {
        reply(200, this.config);
      } else if (req.method === "GET" && req.url === "/status") {
        this.status().then(
          (s) => reply(200, s),
          (err) => reply(500, { error: String(err) }),
        );
      } else if (req.method === "POST" && req.url === "/reload-apps") {
        try {
          reply(200, this.reloadApps());
        } catch (err) {
          reply(400, { error: err instanceof Error ? err.message : String(err) });
        }
      } else if (req.method === "POST" && req.url === "/reload") {
        this.reload().then(
          () => this.status().then((s) => reply(200, s)),
          (err) => reply(500, { error: String(err) }),
        );
      } else {
        reply(404, { error: "not found" });
      }
    });
    await new Promise<void>((resolve, reject) => {
      this.control!.once("error", reject);
      // The control socket hands out the config (the JWT secret included): owner only.
      const mask = process.umask(0o077);
      this.control!.listen(socketPath, () => resolve());
      process.umask(mask);
    });
  }
}

function sumCounts(all: (Record<string, number> | undefined)[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const counts of all) {
    for (const [code, n] of Object.entries(counts ?? {})) out[code] = (out[code] ?? 0) + n;
  }
  return out;
}
