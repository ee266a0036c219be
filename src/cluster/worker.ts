import cluster from "node:cluster";
import { createServer } from "node:http";
import type net from "node:net";
import { Server } from "socket.io";
import { AdminActions } from "../admin/admin-actions.js";
import { refuseBanned } from "../admin/ban-guard.js";
import { Authenticator } from "../auth/authenticate.js";
import type { Backend } from "../backend/backend.js";
import { ClusterBackend } from "../backend/cluster-backend.js";
import { type ChatIo, ChatServer, type ChatSocket } from "../chat/chat-server.js";
import { guardedParser, refuseBadHandshakes } from "../chat/guarded-parser.js";
import type { Config } from "../config/config.js";
import { adminApi } from "../http/admin-api.js";
import { Admission, corsFor } from "../http/admission.js";
import { pushApi } from "../http/push-api.js";
import { slimHandshakeRequests } from "../http/slim-request.js";
import { staticFiles } from "../http/static-files.js";
import { FloodGuard } from "../limits/flood-guard.js";
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
  const files = staticFiles(() => ({
    authRequired: config.jwtSecret !== "",
    // Open mode (no --jwt-secret): the page warns that anyone can claim any name.
    open: config.jwtSecret === "",
    maxImageBytes: config.maxImageBytes,
    maxMessageLength: config.maxMessageLength,
  }));
  const api = pushApi({
    apiKey: config.apiKey,
    chat: () => chat,
    presence: () => backend?.presence,
    history: () => backend?.history,
    maxMessageLength: config.maxMessageLength,
    maxImageBytes: config.maxImageBytes,
  });
  const admin = adminApi({
    adminKey: config.adminKey,
    presence: () => backend?.presence,
    bans: () => backend?.bans,
    actions: () => adminActions,
    maxMessageLength: config.maxMessageLength,
  });
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

  let chat: ChatServer | undefined;
  let adminActions: AdminActions | undefined;
  let guard: FloodGuard | undefined;
  let backend: Backend | undefined;
  let stopping: Promise<void> | undefined;
  const stop = (notice: string, graceMs: number): Promise<void> => {
    stopping ??= (async () => {
      log.info("draining", { notice });
      try {
        await chat?.drain(notice, graceMs);
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
          connections: io.of("/").sockets.size,
          rssBytes: mem.rss,
          heapUsedBytes: mem.heapUsed,
          historyAppends: appendsSoFar(),
          refusals: {
            ...guard?.counts,
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

  const io: ChatIo = new Server(httpServer, {
    maxHttpBufferSize: config.maxFrameBytes,
    perMessageDeflate: false,
    cors: corsFor(config.allowedOrigins),
    // Every client packet is checked before socket.io dispatches it (guarded-parser.ts).
    parser: guardedParser,
  });
  refuseBadHandshakes(io);
  workerMetrics({ io, workerId, adapter: config.adapter, presence: () => backend?.presence });
  io.engine.generateId = () => newSessionId(workerId);
  // Origin, connect rate and connection caps of new sessions (after the cors middleware).
  const admission = new Admission(config);
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
    guard = new FloodGuard({
      config,
      shared: backend.sharedLimits,
      onDisconnect: (socket, why) =>
        log.warn("disconnected a flooding client (E_RATE_LIMITED)", {
          fd: socket.id,
          userId: socket.data.user?.userId,
          why,
        }),
    });
    chat = new ChatServer({
      io,
      presence: backend.presence,
      auth: new Authenticator(config.jwtSecret, {
        audience: config.jwtAudience,
        issuer: config.jwtIssuer,
      }),
      owner,
      logger,
      maxMessageLength: config.maxMessageLength,
      maxImageBytes: config.maxImageBytes,
      presenceLimit: config.presenceLimit,
      listPageSize: config.listPageSize,
      history: backend.history,
      historySize: config.historySize,
      historyOnJoin: config.historyOnJoin,
      guard,
    });
    adminActions = new AdminActions(io, log);
    // After the ChatServer's own middleware (the user is known), before the per-user slots.
    refuseBanned(io, backend.bans, log);
    // After the ChatServer's own middleware: the user is known, nothing else refuses after it.
    admission.limitUsers(io);
    backend.onPresence(chat.deliverPresence.bind(chat));
    backend.onDelivery(chat.deliverMessage.bind(chat));
    // Messages published while the subscription was down never arrive: fetch them.
    backend.onHealth((up) => {
      if (up) void chat?.catchUpMessages();
    });
    backend.onHealth((up) => send({ type: "wws:health", backendUp: up }));
    await backend.start(chat);
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
