/**
 * Raw Engine.IO v4 sessions, over WebSocket and over HTTP long-polling, for tests that send
 * frames socket.io-client would never produce. Each speaks just enough of the protocol to open a
 * session, answer pings and collect what the server sends (Engine.IO packets as text).
 */
import WebSocket from "ws";

const SEPARATOR = "\x1e";

/** A WebSocket Engine.IO session: `send` any frame, `waitFor` what comes back. */
export class RawWsSession {
  /** Every text frame received, in order (Engine.IO packets: "0{…}", "2", "42[…]", …). */
  readonly texts: string[] = [];
  closed = false;
  private waiters: (() => void)[] = [];

  private constructor(private readonly ws: WebSocket) {
    ws.on("message", (data, isBinary) => {
      if (isBinary) return;
      const text = data.toString();
      // The server pings; an unanswered ping would end the session after pingTimeout.
      if (text === "2") ws.send("3");
      this.texts.push(text);
      this.wake();
    });
    ws.on("close", () => {
      this.closed = true;
      this.wake();
    });
    ws.on("error", () => {
      this.closed = true;
      this.wake();
    });
  }

  /** Opens a session (resolves after the Engine.IO open packet). */
  static async open(baseUrl: string, timeoutMs = 5000): Promise<RawWsSession> {
    const ws = new WebSocket(
      `${baseUrl.replace(/^http/, "ws")}/socket.io/?EIO=4&transport=websocket`,
    );
    const session = new RawWsSession(ws);
    await session.waitFor((t) => t.startsWith("0{"), "Engine.IO open packet", timeoutMs);
    return session;
  }

  /** Joins the main namespace with `auth` and resolves after the chat handshake's 201. */
  async connect(auth: unknown, timeoutMs = 5000): Promise<void> {
    const from = this.texts.length;
    this.send(`40${JSON.stringify(auth)}`);
    await this.waitFor(
      (t) => t.startsWith("42") && t.includes('"action":201'),
      "201 after 40",
      timeoutMs,
      from,
    );
  }

  send(frame: string | Uint8Array): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(frame);
  }

  /** Resolves with the first text frame (from index `from`) matching `pred`. */
  waitFor(
    pred: (text: string) => boolean,
    what: string,
    timeoutMs = 5000,
    from = 0,
  ): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const found = this.texts.slice(from).find(pred);
        if (found !== undefined) {
          clearTimeout(timer);
          resolve(found);
          return true;
        }
        if (this.closed) {
          clearTimeout(timer);
          reject(new Error(`${what}: the connection closed first; got ${this.summary(from)}`));
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`${what}: not seen in ${timeoutMs} ms; got ${this.summary(from)}`));
      }, timeoutMs);
      const waiter = () => {
        if (!check()) this.waiters.push(waiter);
      };
      if (!check()) this.waiters.push(waiter);
    });
  }

  /** Resolves once the server has closed the connection. */
  waitClosed(what: string, timeoutMs = 5000): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${what}: still open`)), timeoutMs);
      const waiter = () => {
        if (!this.closed) {
          this.waiters.push(waiter);
          return;
        }
        clearTimeout(timer);
        resolve();
      };
      waiter();
    });
  }

  close(): void {
    this.ws.terminate();
  }

  private summary(from: number): string {
    return JSON.stringify(this.texts.slice(from).map((t) => t.slice(0, 120)));
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}

/** An HTTP long-polling Engine.IO session: `post` payloads, `until` what comes back. */
export class RawPollingSession {
  /** Every packet received by GET so far, in order. */
  readonly packets: string[] = [];
  /** Set when the server no longer knows the session (400) or refused a request. */
  gone = false;

  private constructor(
    private readonly url: string,
    readonly sid: string,
  ) {}

  static async open(baseUrl: string): Promise<RawPollingSession> {
    const res = await fetch(`${baseUrl}/socket.io/?EIO=4&transport=polling`, {
      signal: AbortSignal.timeout(5000),
    });
    const text = await res.text();
    if (!text.startsWith("0{")) throw new Error(`polling handshake: ${res.status} ${text}`);
    const { sid } = JSON.parse(text.slice(1)) as { sid: string };
    return new RawPollingSession(
      `${baseUrl}/socket.io/?EIO=4&transport=polling&sid=${encodeURIComponent(sid)}`,
      sid,
    );
  }

  /** POSTs packets (joined with the record separator); resolves with the answer. */
  async post(packets: string | string[]): Promise<{ status: number; text: string }> {
    const body = Array.isArray(packets) ? packets.join(SEPARATOR) : packets;
    const res = await fetch(this.url, {
      method: "POST",
      body,
      headers: { "Content-Type": "text/plain;charset=UTF-8" },
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    if (res.status !== 200) this.gone = true;
    return { status: res.status, text };
  }

  /** One GET: what the server had for us (or a ping after pingInterval). */
  async poll(timeoutMs = 5000): Promise<string[]> {
    const res = await fetch(this.url, { signal: AbortSignal.timeout(timeoutMs) });
    const text = await res.text();
    if (res.status !== 200) {
      this.gone = true;
      throw new Error(`poll: ${res.status} ${text}`);
    }
    const got = text.split(SEPARATOR);
    for (const p of got) {
      if (p === "2") await this.post("3");
    }
    this.packets.push(...got);
    return got;
  }

  /** GETs until a packet (from index `from`) matches `pred`, within the deadline. */
  async until(
    pred: (packet: string) => boolean,
    what: string,
    timeoutMs = 5000,
    from = 0,
  ): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.packets.slice(from).find(pred);
      if (found !== undefined) return found;
      const left = deadline - Date.now();
      if (left <= 0) {
        const seen = JSON.stringify(this.packets.slice(from).map((p) => p.slice(0, 120)));
        throw new Error(`${what}: not seen in ${timeoutMs} ms; got ${seen}`);
      }
      await this.poll(left);
    }
  }

  /** Joins the main namespace with `auth` and resolves after the chat handshake's 201. */
  async connect(auth: unknown): Promise<void> {
    const from = this.packets.length;
    await this.post(`40${JSON.stringify(auth)}`);
    await this.until(
      (p) => p.startsWith("42") && p.includes('"action":201'),
      "201 after 40",
      5000,
      from,
    );
  }

  /** Ends the session (a close packet), ignoring a session already gone. */
  async close(): Promise<void> {
    if (this.gone) return;
    await this.post("1").catch(() => undefined);
  }
}
