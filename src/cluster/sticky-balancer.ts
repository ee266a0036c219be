import type { Worker } from "node:cluster";
import type { Server as HttpServer } from "node:http";
import type net from "node:net";
import type { ErrorCode } from "../chat/protocol.js";
import { addressKey, plainIp } from "../http/client-address.js";
import { type Refusal, rawRefusal } from "../http/refusal.js";
import { HandoffQueue, HandoffQueues } from "./handoff-queue.js";
import type { PrimaryToWorker } from "./ipc-messages.js";
import { PendingConnections, type PendingLimits } from "./pending-connections.js";
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
  /** Milliseconds from accept within which the whole request head must have arrived. */
  requestTimeoutMs: number;
  /** Caps on connections held before their head is read. */
  pending: PendingLimits;
  /** Peers exempt from the per-address pending cap (proxies carry many clients). */
  isTrusted: (address: string) => boolean;
  /** Told of every refusal the primary sends, and of every head that missed its deadline. */
  onRefused: (code: ErrorCode) => void;
  onHeadTimeout: () => void;
}

const MAX_HEAD = 16 * 1024;
/** An over-cap connection's time to show a health probe's request (probes send it at once). */
const RESERVE_MS = 1000;
/** Over-cap connections held for health probes, at most. */
export const HEALTH_RESERVE = 32;
/** A refused connection is closed this long after its answer, unless the client closes first. */
const LINGER_MS = 500;

const BUSY: Refusal = {
  code: "E_SERVER_BUSY",
  message: "too many connections waiting, retry later",
};
const ADDRESS_BUSY: Refusal = {
  code: "E_TOO_MANY_CONNECTIONS",
  message: "too many unfinished requests from this address",
};

/**
 * The primary's connection router. Reads the request head of each new TCP connection (to its
 * end, within a total deadline from accept, so neither the request line nor the headers can
 * trickle in forever), stops reading, and hands the socket with the bytes read to a worker: the
 * session's own worker when the URL has a sid, else the next worker round-robin
 * (least-connection sends bursts to one worker). Workers answer with `Connection: close`
 * outside WebSocket, so one TCP connection carries one session's request and keep-alive can
 * never cross workers.
 */
export class StickyBalancer {
  private next = 0;
  /** Sockets written to a worker's channel but not yet delivered (the worker may be stuck). */
  private readonly inFlight = new Map<Worker, Set<net.Socket>>();
  private readonly pending: PendingConnections;
  /** How to refuse each connection held in the health reserve, when it must make room. */
  private readonly evictors = new WeakMap<net.Socket, () => void>();
  /** Hand-offs waiting for each worker beyond the few written to its channel. */
  readonly handoffs = new HandoffQueues(
    (worker) =>
      new HandoffQueue(
        (socket, data) => this.handOff(worker, socket, data),
        (socket) => {
          this.opts.onRefused(BUSY.code);
          refuseRaw(socket, BUSY);
        },
      ),
  );

  constructor(private readonly opts: StickyBalancerOptions) {
    this.pending = new PendingConnections(opts.pending);
  }

  /** Connections whose request head is still being read. */
  get pendingCount(): number {
    return this.pending.size;
  }

  handle(socket: net.Socket): void {
    const address = plainIp(socket.remoteAddress) ?? "unknown";
    const { cls, done } = this.pending.admit(
      socket,
      addressKey(address),
      this.opts.isTrusted(address),
      (oldest) => this.evictors.get(oldest)?.(),
    );
    const reserve = cls.kind === "reserve";
    const chunks: Buffer[] = [];
    let size = 0;
    /** The last bytes seen, so that a `\r\n\r\n` split across chunks is found. */
    let tail: Buffer = Buffer.alloc(0);
    let settled = false;
    const settle = () => {
      settled = true;
      clearTimeout(deadline);
      done();
      socket.off("data", onData);
      socket.off("close", settle);
    };
    const refusal = cls.kind === "reserve" && cls.over === "address" ? ADDRESS_BUSY : BUSY;
    const refuseNow = () => {
      if (settled) return;
      settle();
      this.opts.onRefused(refusal.code);
      refuseRaw(socket, refusal);
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      const window = tail.length > 0 ? Buffer.concat([tail, chunk]) : chunk;
      const complete = window.indexOf("\r\n\r\n") !== -1;
      tail = window.subarray(Math.max(0, window.length - 3));
      if (reserve) {
        // Only health probes are served over the cap: anything else is refused as soon as its
        // request line shows it.
        const head = Buffer.concat(chunks, size);
        const eol = head.indexOf("\r\n");
        if (eol === -1 && size < MAX_HEAD) return;
        if (!this.opts.localPaths.has(pathOf(head.toString("latin1", 0, Math.max(0, eol))))) {
          refuseNow();
          return;
        }
        if (!complete && size < MAX_HEAD) return;
        settle();
        this.route(socket, head, head.toString("latin1", 0, eol));
        return;
      }
      if (!complete && size < MAX_HEAD) return;
      settle();
      const head = Buffer.concat(chunks, size);
      const eol = head.indexOf("\r\n");
      this.route(socket, head, eol === -1 ? "" : head.toString("latin1", 0, eol));
    };
    const deadline = setTimeout(
      () => {
        if (settled) return;
        if (reserve) {
          refuseNow();
          return;
        }
        settle();
        this.opts.onHeadTimeout();
        socket.destroy();
      },
      reserve ? Math.min(RESERVE_MS, this.opts.requestTimeoutMs) : this.opts.requestTimeoutMs,
    );
    if (reserve) this.evictors.set(socket, refuseNow);
    socket.on("data", onData);
    socket.on("error", () => socket.destroy());
    socket.once("close", settle);
  }

  private route(socket: net.Socket, head: Buffer, requestLine: string): void {
    if (this.opts.localPaths.has(pathOf(requestLine))) {
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
    this.handoffs.of(worker).push(socket, data);
  }

  /** The worker took a socket (its `wws:accepted`): the next waiting one may go. */
  accepted(worker: Worker): void {
    this.handoffs.of(worker).accepted();
  }

  private handOff(worker: Worker, socket: net.Socket, data: Buffer): void {
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
    this.handoffs.drop(worker);
  }

  private pick(): Worker | undefined {
    const workers = this.opts.routable();
    if (workers.length === 0) return undefined;
    this.next = (this.next + 1) % workers.length;
    return workers[this.next];
  }
}

function pathOf(requestLine: string): string {
  return requestLine.split(" ")[1]?.split("?")[0] ?? "";
}

/** Answers a connection whose head was not (fully) read, then closes it. */
function refuseRaw(socket: net.Socket, refusal: Refusal): void {
  // Whatever else the client sends is read and dropped: closing with unread bytes would reset
  // the connection, and the client might never see the answer.
  socket.resume();
  socket.end(rawRefusal(refusal));
  setTimeout(() => socket.destroy(), LINGER_MS).unref();
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
