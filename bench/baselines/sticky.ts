/**
 * A stand-in for `@socket.io/sticky` (setupMaster / setupWorker), which is not installed in this
 * repository. It follows the published package's behaviour (2.x): the primary owns the listening
 * socket, reads the first chunk of every TCP connection, picks a worker (by the `sid` query
 * parameter if it knows it, otherwise by the load-balancing method) and hands the socket and the
 * chunk to that worker over IPC; workers report session ids so later polling requests of a
 * session go to the same worker. When `@socket.io/sticky` is installed, `server.ts` uses the real
 * package instead of this file.
 */
import cluster, { type Worker } from "node:cluster";
import type { Server as HttpServer } from "node:http";
import type { Socket } from "node:net";
import type { Server } from "socket.io";

export interface StickyOptions {
  /** How a new session picks its worker. @default "least-connection" */
  loadBalancingMethod?: "random" | "round-robin" | "least-connection";
}

type CountedWorker = Worker & { clientsCount?: number };

export function setupMaster(httpServer: HttpServer, opts: StickyOptions = {}): void {
  if (!cluster.isPrimary) throw new Error("setupMaster: not the primary");
  const options = { loadBalancingMethod: "least-connection", ...opts };
  const sessionIdToWorker = new Map<string, number>();
  const sidRegex = /sid=([\w-]{20})/;
  let currentIndex = 0;

  const computeWorkerId = (data: string): number | undefined => {
    const match = sidRegex.exec(data);
    if (match) {
      const workerId = sessionIdToWorker.get(match[1]);
      if (workerId !== undefined && cluster.workers?.[workerId]) return workerId;
    }
    const workers = Object.values(cluster.workers ?? {}).filter(
      (w): w is CountedWorker => w !== undefined,
    );
    if (workers.length === 0) return undefined;
    switch (options.loadBalancingMethod) {
      case "random":
        return workers[Math.floor(Math.random() * workers.length)].id;
      case "round-robin":
        currentIndex = (currentIndex + 1) % workers.length;
        return workers[currentIndex].id;
      default: {
        let least = workers[0];
        for (const w of workers) {
          if ((w.clientsCount ?? 0) < (least.clientsCount ?? 0)) least = w;
        }
        return least.id;
      }
    }
  };

  httpServer.on("connection", (socket: Socket) => {
    socket.once("data", (buffer: Buffer) => {
      socket.pause();
      const data = buffer.toString();
      const workerId = computeWorkerId(data);
      const worker = workerId === undefined ? undefined : cluster.workers?.[workerId];
      if (!worker) {
        socket.destroy();
        return;
      }
      worker.send({ type: "sticky:connection", data }, socket, (err) => {
        if (err) socket.destroy();
      });
    });
  });

  cluster.on("message", (worker: CountedWorker, msg: { type?: string; data?: string }) => {
    if (!msg || typeof msg.data !== "string") return;
    switch (msg.type) {
      case "sticky:connection":
        sessionIdToWorker.set(msg.data, worker.id);
        if (options.loadBalancingMethod === "least-connection") {
          worker.clientsCount = (worker.clientsCount ?? 0) + 1;
        }
        break;
      case "sticky:disconnection":
        sessionIdToWorker.delete(msg.data);
        if (options.loadBalancingMethod === "least-connection") {
          worker.clientsCount = (worker.clientsCount ?? 1) - 1;
        }
        break;
    }
  });
}

export function setupWorker(io: Server): void {
  if (!cluster.isWorker) throw new Error("setupWorker: not a worker");
  process.on("message", (msg: { type?: string; data?: string }, socket?: Socket) => {
    if (msg?.type !== "sticky:connection" || !socket || typeof msg.data !== "string") return;
    io.httpServer.emit("connection", socket);
    socket.emit("data", Buffer.from(msg.data));
    socket.resume();
  });
  io.engine.on(
    "connection",
    (engineSocket: { id: string; once(ev: "close", fn: () => void): unknown }) => {
      process.send?.({ type: "sticky:connection", data: engineSocket.id });
      engineSocket.once("close", () => {
        process.send?.({ type: "sticky:disconnection", data: engineSocket.id });
      });
    },
  );
}
