import type { Worker } from "node:cluster";
import type { Server as HttpServer } from "node:http";
import type net from "node:net";
import type { PrimaryToWorker } from "./ipc-messages.js";
import { workerIdOfRequest } from "./session-id.js";

export interface StickyBalancerOptions {
  /** Workers that take new sessions, in rotation order. */
  routable: () => Worker[];
  /** Any live worker by cluster id (including draining ones, which still hold sessions). */
  byId: (id: number) => Worker | undefined;
  /** Serves requests the primary answers itself (health, readiness). */
  local: HttpServer;
  /** Paths the primary answers itself. */
  localPaths: ReadonlySet<string>;
}

const MAX_HEAD = 16 * 1024;

/**
 * The primary's connection router. Reads just the request line of each new TCP connection,
 * stops reading, and hands the socket with the bytes read to a worker: the session's own worker
 * when the URL has a sid, else the next worker round-robin (least-connection sends bursts to one
 * worker). Workers answer with `Connection: close` outside WebSocket, so one TCP connection
 * carries one session's request and keep-alive can never cross workers.
 */
export class StickyBalancer {
  private next = 0;
  /** Sockets written to a worker's channel but not yet delivered (the worker may be stuck). */
  private readonly inFlight = new Map<Worker, Set<net.Socket>>();

  constructor(private readonly opts: StickyBalancerOptions) {}

  handle(socket: net.Socket): void {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      const head = Buffer.concat(chunks, size);
      const eol = head.indexOf("\r\n");
      if (eol === -1 && size < MAX_HEAD) return;
      socket.off("data", onData);
      socket.off("error", onError);
      this.route(socket, head, eol === -1 ? "" : head.toString("latin1", 0, eol));
    };
    const onError = () => socket.destroy();
    socket.on("data", onData);
    socket.on("error", onError);
    socket.setTimeout(30_000, () => socket.destroy());
  }

  private route(socket: net.Socket, head: Buffer, requestLine: string): void {
    socket.setTimeout(0);
    const path = requestLine.split(" ")[1]?.split("?")[0] ?? "";
    if (this.opts.localPaths.has(path)) {
      this.opts.local.emit("connection", socket);
      socket.emit("data", head);
      return;
    }
    // Stop reading before the hand-off: pause() alone leaves the handle reading into the stream
    // buffer, and bytes read by the primary after this point would be lost (a client's first
    // frame, now and then, with @socket.io/sticky).
    socket.pause();
    (socket as unknown as { _handle?: { readStop?: () => void } })._handle?.readStop?.();
    const data = head;
    const workerId = workerIdOfRequest(requestLine);
    const worker = workerId === undefined ? this.pick() : this.opts.byId(workerId);
    if (!worker) {
      refuse(socket, workerId === undefined ? 503 : 400);
      return;
    }
    const msg: PrimaryToWorker = { type: "wws:connection", data };
    let pending = this.inFlight.get(worker);
    if (!pending) {
      pending = new Set();
      this.inFlight.set(worker, pending);
    }
    pending.add(socket);
    // Once written, the worker holds its own copy of the descriptor and ours can go. (With
    // keepOpen: false, Node closes ours only when the worker acknowledges: a worker that dies
    // first would leave the client hanging.)
    worker.send(msg, socket, { keepOpen: true }, () => {
      pending.delete(socket);
      socket.destroy();
    });
  }

  /** A worker is gone: connections still queued for it are closed, so their clients retry. */
  dropWorker(worker: Worker): void {
    for (const socket of this.inFlight.get(worker) ?? []) socket.destroy();
    this.inFlight.delete(worker);
  }

  private pick(): Worker | undefined {
    const workers = this.opts.routable();
    if (workers.length === 0) return undefined;
    this.next = (this.next + 1) % workers.length;
    return workers[this.next];
  }
}

function refuse(socket: net.Socket, status: 400 | 503): void {
  // The same bodies Engine.IO sends, so clients treat them as they would from a worker.
  const body =
    status === 400
      ? '{"code":1,"message":"Session ID unknown"}'
      : '{"code":503,"message":"no worker is ready"}';
  socket.end(
    `HTTP/1.1 ${status} ${status === 400 ? "Bad Request" : "Service Unavailable"}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
      `Connection: close\r\n\r\n${body}`,
  );
}
