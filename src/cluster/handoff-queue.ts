import type { Worker } from "node:cluster";
import type net from "node:net";

/** Hand-offs written to a worker and not yet taken: beyond, new ones wait here. */
export const MAX_IN_FLIGHT = 16;
/**
 * A socket that waited this long for its worker is refused (E_SERVER_BUSY) rather than handed
 * over: its client has given up by then (socket.io-client's connect timeout is 20 s), so the
 * worker would only do a dead handshake, and the backlog cannot outgrow 20 s of arrivals. (10 s
 * refused live clients of the `connections` bench on a machine loaded by other suites.)
 */
export const MAX_WAIT_MS = 20_000;

interface Waiting {
  socket: net.Socket;
  data: Buffer;
  at: number;
}

/**
 * One worker's socket hand-offs. Node queues every message to a worker behind an unacknowledged
 * handle and replays that whole queue on each acknowledgement (O(queue) per hand-off, and
 * unbounded); here at most MAX_IN_FLIGHT are written to the channel and the rest wait in a FIFO
 * that costs O(1) per hand-off and refuses what waited longer than MAX_WAIT_MS. The worker says
 * `wws:accepted` for each socket it receives.
 */
export class HandoffQueue {
  private readonly waiting: Waiting[] = [];
  private head = 0;
  private inFlight = 0;

  constructor(
    private readonly send: (socket: net.Socket, data: Buffer) => void,
    private readonly expire: (socket: net.Socket) => void,
    private readonly now: () => number = Date.now,
  ) {}

  /** Sockets waiting (not yet written to the channel). */
  get length(): number {
    return this.waiting.length - this.head;
  }

  push(socket: net.Socket, data: Buffer): void {
    this.waiting.push({ socket, data, at: this.now() });
    this.pump();
  }

  /** The worker took one. */
  accepted(): void {
    if (this.inFlight > 0) this.inFlight--;
    this.pump();
  }

  /** The worker is gone: what still waits is closed (its clients retry). */
  drop(): void {
    for (let i = this.head; i < this.waiting.length; i++) this.waiting[i].socket.destroy();
    this.waiting.length = 0;
    this.head = 0;
  }

  private pump(): void {
    const now = this.now();
    while (this.head < this.waiting.length) {
      const next = this.waiting[this.head];
      const stale = now - next.at > MAX_WAIT_MS;
      if (!stale && this.inFlight >= MAX_IN_FLIGHT) break;
      this.head++;
      if (next.socket.destroyed) continue;
      if (stale) this.expire(next.socket);
      else {
        this.inFlight++;
        this.send(next.socket, next.data);
      }
    }
    if (this.head > 1024 && this.head * 2 > this.waiting.length) {
      this.waiting.splice(0, this.head);
      this.head = 0;
    }
  }
}

/** The queue of each worker, made on first use. */
export class HandoffQueues {
  private readonly queues = new Map<Worker, HandoffQueue>();

  constructor(private readonly make: (worker: Worker) => HandoffQueue) {}

  of(worker: Worker): HandoffQueue {
    let q = this.queues.get(worker);
    if (!q) {
      q = this.make(worker);
      this.queues.set(worker, q);
    }
    return q;
  }

  drop(worker: Worker): void {
    this.queues.get(worker)?.drop();
    this.queues.delete(worker);
  }

  /** Sockets waiting for each worker (diagnostics). */
  lengths(): number[] {
    return [...this.queues.values()].map((q) => q.length);
  }
}
