import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { FrameReader, FrameWriter } from "./link-frames.js";

/** Environment through which a worker learns where its link is and how to prove it is ours. */
export const LINK_PATH_ENV = "WEIGOT_WS_LINK_PATH";
export const LINK_TOKEN_ENV = "WEIGOT_WS_LINK_TOKEN";

/** The worker's first message on its link. */
export interface LinkHello {
  type: "wws:link";
  workerId: number;
  token: string;
}

/** Longest Unix socket path (sun_path is 108 bytes on Linux, 104 on macOS). */
const MAX_SOCKET_PATH = 100;

/**
 * The primary's side of one Unix-socket link per worker, beside the cluster IPC channel, for the
 * RPC calls and replies, presence events and chat deliveries. Node queues every message to a
 * worker behind a socket hand-off that worker has not acknowledged yet (and replays the whole
 * queue on each acknowledgement): on the cluster channel, presence replies and the connection
 * ledger's answers waited behind hand-offs under a connect burst. Here they never do, and what
 * a tick produces for a worker goes as one frame.
 */
export class WorkerLinks {
  private server?: net.Server;
  private socketPath = "";
  private readonly token = randomBytes(16).toString("hex");
  private readonly writers = new Map<number, { socket: net.Socket; writer: FrameWriter }>();

  constructor(private readonly onMessage: (workerId: number, msg: unknown) => void) {}

  /** Listens beside `pidFile` (or in the temp directory when that path is too long). */
  async listen(pidFile: string): Promise<void> {
    const beside = `${pidFile}.link`;
    this.socketPath =
      Buffer.byteLength(beside) <= MAX_SOCKET_PATH
        ? beside
        : path.join(os.tmpdir(), `weigot-ws-${process.pid}.link`);
    rmSync(this.socketPath, { force: true });
    const server = net.createServer((socket) => this.accept(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      // Owner only, and the hello must carry the token: no other local user can call the stores.
      const mask = process.umask(0o077);
      server.listen(this.socketPath, () => resolve());
      process.umask(mask);
    });
  }

  /** What a forked worker needs to connect. */
  env(): Record<string, string> {
    return this.server ? { [LINK_PATH_ENV]: this.socketPath, [LINK_TOKEN_ENV]: this.token } : {};
  }

  /** Queues `msg` on the worker's link; false when it has none (the caller uses the channel). */
  send(workerId: number, msg: unknown): boolean {
    const link = this.writers.get(workerId);
    if (!link || link.socket.destroyed) return false;
    link.writer.send(msg);
    return true;
  }

  drop(workerId: number): void {
    this.writers.get(workerId)?.socket.destroy();
    this.writers.delete(workerId);
  }

  close(): void {
    for (const { socket } of this.writers.values()) socket.destroy();
    this.writers.clear();
    this.server?.close();
    if (this.socketPath) rmSync(this.socketPath, { force: true });
  }

  private accept(socket: net.Socket): void {
    let workerId: number | undefined;
    socket.on("error", () => socket.destroy());
    const reader = new FrameReader((messages) => {
      for (const msg of messages) {
        if (workerId !== undefined) {
          this.onMessage(workerId, msg);
          continue;
        }
        const hello = msg as Partial<LinkHello>;
        if (hello?.type !== "wws:link" || hello.token !== this.token) {
          socket.destroy();
          return;
        }
        workerId = Number(hello.workerId);
        const id = workerId;
        this.writers.get(id)?.socket.destroy();
        const writer = new FrameWriter((frame) => socket.write(frame));
        this.writers.set(id, { socket, writer });
        socket.once("close", () => {
          if (this.writers.get(id)?.socket === socket) this.writers.delete(id);
        });
      }
    });
    socket.on("data", (chunk: Buffer) => reader.push(chunk));
  }
}
