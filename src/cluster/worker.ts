import cluster from "node:cluster";
import { createServer } from "node:http";
import type net from "node:net";
import { Server } from "socket.io";
import { AppRuntimes } from "../apps/app-runtimes.js";
import { namespaceOf } from "../apps/app-scope.js";
import type { Backend } from "../backend/backend.js";
import { ClusterBackend } from "../backend/cluster-backend.js";
import type { ChatIo, ChatSocket } from "../chat/chat-io.js";
import { guardedParser } from "../chat/guarded-parser.js";
import type { Config } from "../config/config.js";
import { adminApi } from "../http/admin-api.js";
import { Admission } from "../http/admission.js";
import { pushApi } from "../http/push-api.js";
import { slimHandshakeRequests } from "../http/slim-request.js";
import { staticFiles } from "../http/static-files.js";
import { OutboundCap } from "../limits/outbound-cap.js";
import { createLogger, type Logger } from "../log/logger.js";
import { appendsSoFar, disconnects } from "../metrics/metrics.js";
import { workerMetrics } from "../metrics/worker-metrics.js";
import type { PrimaryToWorker, WorkerToPrimary } from "./ipc-messages.js";
import { isOurs } from "./ipc-messages.js";
import { connectPrimaryLink, sendToPrimary } from "./primary-link.js";
import { newSessionId } from "./session-id.js";

/** Environment variable through which the primary hands a worker its validated config. */
export const CONFIG_ENV = "WEIGOT_WS_WORKER_CONFIG";

/**
 * A worker process: one Socket.IO server fed with connections by the primary. The IPC listener
 * is installed before anything async, so that no connection routed here is ever lost; what
 * arrives before the backend is up waits in a queue.
 */
export function runWorker(): void {
  const config = JSON.parse(process.env[CONFIG_ENV] ?? "{}") as Config;
  const workerId = cluster.worker?.id ?? 0;
  const owner = `${config.nodeId}/${process.pid}`;
  const logger = createLogger(config, { worker: workerId });
  const log = logger.child({ component: "worker" });
  const send = (msg: WorkerToPrimary) => process.connected && process.send?.(msg);

  const queue: [Buffer, net.Socket][] = [];
  let ready = false;
  const files = staticFiles((app) => {
    const c = apps?.get(app ?? "default");
    const settings = c && !c.removed ? c.config : config;
    return {
      app: c && !c.removed ? { id: c.id, name: c.name, namespace: namespaceOf(c.id) } : undefined,
      authRequired: settings.jwtSecret !== "",
      // Open mode (no --jwt-secret): the page warns that anyone can claim any name.
      open: settings.jwtSecret === "",
      maxImageBytes: settings.maxImageBytes,
      maxMessageLength: settings.maxMessageLength,
    };
  });
  const api = pushApi({
    apps: () => apps?.live(),
    maxImageBytes: config.maxImageBytes,
  });
  const admin = adminApi({ apps: () => apps?.live() });
  const httpServer = createServer((req, res) => {
    if (req.url?.startsWith("/api/v1/admin/")) void admin(req, res);
    else if (req.url?.startsWith("/api/")) void api(req, res);
    else void files(req, res);
  });
  const accept = (data: Buffer, socket: net.Socket) => {
    httpServer.emit("connection", socket);
    socket.emit("data", data);
    socket.resume();
  };

  let apps: AppRuntimes | undefined;
  let backend: Backend | undefined;
  let stopping: Promise<void> | undefined;
  const stop = (notice: string, graceMs: number): Promise<void> => {
    stopping ??= (async () => {
      log.info("draining", { notice });
      try {
        await apps?.drain(notice, graceMs);
        io.close();
        await backend?.close();
      } catch (err) {
        log.error("drain failed", { err: String(err) });
      } finally {
        logger.on("finish", () => process.exit(0));
        logger.end();
        setTimeout(() => process.exit(0), 1000).unref();
      }
    })();
    return stopping;
  };

  process.on("message", (msg: unknown, handle: unknown) => {
    if (!isOurs<PrimaryToWorker>(msg)) return;
    switch (msg.type) {
      case "wws:connection": {
        const socket = handle as net.Socket | undefined;
        sendToPrimary({ type: "wws:accepted" });
        if (!socket) return;
        const data = Buffer.from(msg.data);
        if (ready) accept(data, socket);
        else queue.push([data, socket]);
        break;
      }
      case "wws:drain":
        void stop(msg.notice, msg.graceMs);
        break;
      case "wws:apps":
        // Validated by the primary; an app that stays keeps its connections.
        config.apps = msg.apps;
        apps?.apply(msg.apps);
        backend?.applyApps?.(config);
        break;
      case "wws:reap":
        // The store announces who went offline.
        backend?.presence
          .removeOwner(msg.owner)
          .catch((err: unknown) =>
            log.error("reap failed", { owner: msg.owner, err: String(err) }),
          );
        break;
      case "wws:stats-request": {
        const mem = process.memoryUsage();
        const stats = {
          pid: process.pid,
          connections: apps?.connections ?? 0,
          apps: Object.fromEntries(
            [...(apps?.namespaces() ?? [])].map(([id, nsp]) => [id, nsp.sockets.size]),
          ),
          rssBytes: mem.rss,
          heapUsedBytes: mem.heapUsed,
          historyAppends: appendsSoFar(),
          refusals: {
            ...apps?.counts,
            ...(slowConsumers ? { E_SLOW_CONSUMER: slowConsumers } : {}),
            ...(admission.ledgerTimeouts ? { ledgerTimeouts: admission.ledgerTimeouts } : {}),
          },
        };
        backend?.presence.stats().then(
          (presence) =>
            send({ type: "wws:stats-reply", id: msg.id, stats: { ...stats, presence } }),
          () => send({ type: "wws:stats-reply", id: msg.id, stats }),
        );
        break;
      }
    }
  });
  // A send racing the primary's exit fails with EPIPE; the disconnect handler below stops us.
  process.on("error", (err) => log.debug("channel error", { err: String(err) }));
  // The primary is this worker's lifeline: without it nobody routes or reaps.
  process.on("disconnect", () => void stop("server stopping", 0));
  process.on("SIGTERM", () => void stop("server stopping", 3000));
  // The service never crashes on input: a stray rejection is logged, not fatal.
  process.on("unhandledRejection", (err) => log.error("unhandled rejection", { err: String(err) }));
  process.on("SIGINT", () => {
    // Ctrl-C reaches the whole process group; the primary coordinates the stop.
  });

  // Origins follow the apps (setOrigins): the union of theirs, each app's checked at its namespace.
  const admission = new Admission(config);
  admission.setOrigins([
    config.allowedOrigins,
    ...config.apps.map((a) => a.settings.allowedOrigins ?? config.allowedOrigins),
  ]);
  const io: ChatIo = new Server(httpServer, {
    maxHttpBufferSize: config.maxFrameBytes,
    perMessageDeflate: false,
    cors: admission.cors,
    // Every client packet is checked before socket.io dispatches it (guarded-parser.ts).
    parser: guardedParser,
  });
  workerMetrics({
    namespaces: () => apps?.namespaces() ?? [],
    workerId,
    adapter: config.adapter,
    presence: () => backend?.presence,
  });
  io.engine.generateId = () => newSessionId(workerId);
  // Origin, connect rate and connection caps of new sessions (after the cors middleware).
  admission.attach(io.engine);
  let slowConsumers = 0;
  const outbound = new OutboundCap(config.maxBufferedBytes, (conn, bytes) => {
    slowConsumers++;
    disconnects.inc({ code: "E_SLOW_CONSUMER" });
    log.warn("dropped a connection that does not read (E_SLOW_CONSUMER)", {
      address: conn.remoteAddress,
      queuedBytes: bytes,
    });
  });
  io.engine.on("connection", (conn: ChatSocket["conn"]) => outbound.add(conn));
  // Last of the engine's connection listeners: the others read the whole request.
  slimHandshakeRequests(io.engine);
  io.engine.on(
    "headers",
    (headers: Record<string, string>, req: { headers: { upgrade?: string } }) => {
      if (!req.headers.upgrade) headers.Connection = "close";
    },
  );

  (async () => {
    await connectPrimaryLink();
    backend = await createBackend(config, owner, logger);
    backend.attach(io);
    apps = new AppRuntimes(
      {
        io,
        config,
        backend,
        admission,
        owner,
        logger,
        onFlood: (socket, app, why) =>
          log.warn("disconnected a flooding client (E_RATE_LIMITED)", {
            app,
            fd: socket.id,
            userId: socket.data.user?.userId,
            why,
          }),
      },
      config.apps,
    );
    const runtimes = apps;
    backend.onPresence((event) => runtimes.deliverPresence(event));
    backend.onDelivery((delivery) => runtimes.deliverMessage(delivery));
    // Messages published while the subscription was down never arrive: fetch them.
    backend.onHealth((up) => {
      if (up) void runtimes.catchUpMessages();
    });
    backend.onHealth((up) => send({ type: "wws:health", backendUp: up }));
    await backend.start(runtimes);
    ready = true;
    for (const [data, socket] of queue.splice(0)) accept(data, socket);
    send({ type: "wws:ready", owner });
    log.debug("ready", { owner });
  })().catch((err: unknown) => {
    log.error("worker failed to start", { err: String(err) });
    logger.on("finish", () => process.exit(1));
    logger.end();
  });
}

async function createBackend(config: Config, owner: string, logger: Logger): Promise<Backend> {
  if (config.adapter === "redis") {
    const { RedisBackend } = await import("../backend/redis-backend.js");
    return RedisBackend.connect(config, owner, logger);
  }
  return new ClusterBackend();
}
