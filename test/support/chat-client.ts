import { io, type ManagerOptions, type Socket, type SocketOptions } from "socket.io-client";
import type { ClientMessage, Envelope } from "../../src/chat/protocol.js";

export type Transport = "websocket" | "polling";
export type ClientOptions = Partial<ManagerOptions & SocketOptions>;

/**
 * A real socket.io-client connection that records every envelope it receives, so tests can
 * wait for what a user would see.
 */
export class ChatClient {
  readonly socket: Socket;
  readonly received: Envelope[] = [];
  /** Reasons of every disconnect so far ("io client disconnect", "transport close", ...). */
  readonly disconnects: string[] = [];
  /** Number of successful connects (reconnects included). */
  connects = 0;
  /** connect_error events so far (refused handshakes, failed reconnect attempts). */
  readonly connectErrors: (Error & { data?: unknown })[] = [];
  private waiters: (() => void)[] = [];
  private lastWorker = Number.NaN;

  constructor(url: string, auth: Record<string, unknown>, opts: ClientOptions = {}) {
    this.socket = io(url, { auth, forceNew: true, reconnection: false, ...opts });
    this.socket.on("message", (env: Envelope) => {
      this.received.push(env);
      this.wake();
    });
    this.socket.on("connect", () => {
      this.connects++;
      this.lastWorker = this.currentWorker();
      this.wake();
    });
    this.socket.on("disconnect", (reason: string) => {
      this.disconnects.push(reason);
      this.wake();
    });
    this.socket.on("connect_error", (err: Error & { data?: unknown }) => {
      this.connectErrors.push(err);
      this.wake();
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /**
   * Connects and resolves after the 201 that completes the handshake (200, then 201); rejects
   * at once when the handshake is refused.
   */
  static async connect(
    url: string,
    auth: Record<string, unknown>,
    opts: ClientOptions = {},
  ): Promise<ChatClient> {
    const client = new ChatClient(url, auth, opts);
    try {
      await client.until(
        () => {
          if (client.received.some((e) => e.action === 201)) return true;
          const refused = client.connectErrors[0];
          if (refused && !opts.reconnection) {
            throw new Error(
              `connect refused: ${refused.message} ${JSON.stringify(refused.data ?? null)}`,
            );
          }
          return false;
        },
        "201 after connect",
        opts.timeout ?? 10_000,
      );
    } catch (err) {
      client.close();
      throw err;
    }
    return client;
  }

  /** The worker holding this connection, read from the Engine.IO session id (`<worker>.<rand>`). */
  get worker(): number {
    const w = this.currentWorker();
    return Number.isNaN(w) ? this.lastWorker : w;
  }

  private currentWorker(): number {
    const id = (this.socket.io.engine as unknown as { id?: string } | undefined)?.id ?? "";
    return id === "" ? Number.NaN : Number(id.split(".")[0]);
  }

  get fd(): string {
    return this.socket.id ?? "";
  }

  get connected(): boolean {
    return this.socket.connected;
  }

  /** The transport in use now ("websocket" or "polling"). */
  get transport(): string {
    return this.socket.io.engine?.transport?.name ?? "";
  }

  /** Index of the next envelope to arrive: pass it as `from` to look only at what comes later. */
  mark(): number {
    return this.received.length;
  }

  /**
   * Resolves once `check` returns true (re-checked on every envelope, connect and disconnect);
   * rejects when `check` throws or after the deadline.
   */
  until(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const run = (): boolean => {
        try {
          if (!check()) return false;
        } catch (err) {
          clearTimeout(timer);
          reject(err);
          return true;
        }
        clearTimeout(timer);
        resolve();
        return true;
      };
      if (run()) return;
      const waiter = () => {
        if (!run()) this.waiters.push(waiter);
      };
      this.waiters.push(waiter);
      timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(
          new Error(
            `${what}: not seen in ${timeoutMs} ms; got actions ${JSON.stringify(this.received.map((e) => e.action))}, disconnects ${JSON.stringify(this.disconnects)}`,
          ),
        );
      }, timeoutMs);
    });
  }

  /** Resolves with the first envelope received (from `from` on) matching `pred`. */
  async waitFor(
    pred: (e: Envelope) => boolean,
    what: string,
    timeoutMs = 5000,
    from = 0,
  ): Promise<Envelope> {
    let found: Envelope | undefined;
    await this.until(
      () => {
        found = this.received.slice(from).find(pred);
        return found !== undefined;
      },
      what,
      timeoutMs,
    );
    return found as Envelope;
  }

  /** Resolves with the reason of the next disconnect (or of the last one, if already down). */
  async waitDisconnect(what = "disconnect", timeoutMs = 5000): Promise<string> {
    const seen = this.disconnects.length;
    await this.until(
      () => this.disconnects.length > seen || (!this.socket.connected && seen > 0),
      what,
      timeoutMs,
    );
    return this.disconnects[this.disconnects.length - 1];
  }

  /** Resolves once connected again (after a reconnect), with a fresh 201 after `from`. */
  async waitReconnected(from: number, what = "reconnect", timeoutMs = 15_000): Promise<void> {
    await this.until(
      () => this.socket.connected && this.received.slice(from).some((e) => e.action === 201),
      what,
      timeoutMs,
    );
  }

  /** Envelopes matching `pred` received so far (from `from` on). */
  all(pred: (e: Envelope) => boolean, from = 0): Envelope[] {
    return this.received.slice(from).filter(pred);
  }

  send(msg: ClientMessage | unknown): void {
    this.socket.emit("message", msg);
  }

  /** Sends a text message and resolves with its 300 as this client receives it. */
  async say(text: string, timeoutMs = 5000): Promise<Envelope> {
    const from = this.mark();
    this.send({ type: "text", content: { message: text } });
    return this.waitFor(
      (e) => e.action === 300 && e.data.content.message === text,
      `own 300 "${text}"`,
      timeoutMs,
      from,
    );
  }

  /** Sends with an ack callback and resolves with the reply envelope. */
  request(event: "message" | "info" | "onlineList", ...args: unknown[]): Promise<Envelope> {
    return this.socket.timeout(5000).emitWithAck(event, ...args) as Promise<Envelope>;
  }

  close(): void {
    this.socket.disconnect();
  }
}

/** Connects a refused handshake and resolves with its connect_error data. */
export function connectError(
  url: string,
  auth: Record<string, unknown>,
  opts: ClientOptions = {},
): Promise<{ code: string; message: string }> {
  return new Promise((resolve, reject) => {
    const socket = io(url, {
      auth,
      forceNew: true,
      reconnection: false,
      transports: ["websocket"],
      ...opts,
    });
    socket.on("connect", () => {
      socket.disconnect();
      reject(new Error("handshake was accepted"));
    });
    socket.on("connect_error", (err: Error & { data?: { code: string; message: string } }) => {
      socket.disconnect();
      if (err.data) resolve(err.data);
      else reject(err);
    });
  });
}

/** Every client a test opened, so that afterEach can close them all. */
export class ClientPool {
  readonly clients: ChatClient[] = [];

  async connect(url: string, auth: Record<string, unknown>, opts: ClientOptions = {}) {
    const client = await ChatClient.connect(url, auth, opts);
    this.clients.push(client);
    return client;
  }

  /** Adds a client made elsewhere (e.g. with `new ChatClient`). */
  add(client: ChatClient): ChatClient {
    this.clients.push(client);
    return client;
  }

  closeAll(): void {
    for (const c of this.clients.splice(0)) c.close();
  }
}

const TIME = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/;

/** True when `s` has the protocol's time format `YYYY-MM-DD HH:mm:ss`. */
export function isProtocolTime(s: unknown): boolean {
  return typeof s === "string" && TIME.test(s);
}
