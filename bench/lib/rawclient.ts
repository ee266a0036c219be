/** A single raw Engine.IO/Socket.IO client over `ws`, for the presence trials (timestamps in-process). */
import WebSocket from "ws";
import { nowMicros } from "../loadgen/messages.js";

export class RawClient {
  readonly ws: WebSocket;
  /** µs at which `40{auth}` was sent. */
  connectSentUs = 0;
  /** µs at which `40{sid}` came back. */
  connectedUs = 0;
  private acks = new Map<number, (payload: string, atUs: number) => void>();
  private nextAck = 1;
  closed = false;

  private constructor(
    url: string,
    auth: Record<string, string>,
    localAddress: string,
    onEvent: ((frame: string, atUs: number) => void) | undefined,
    done: (err?: Error) => void,
  ) {
    this.ws = new WebSocket(url, { localAddress, perMessageDeflate: false });
    this.ws.on("message", (data: Buffer) => {
      const at = nowMicros();
      const s = data.toString();
      if (s === "2") this.ws.send("3");
      else if (s[0] === "0") {
        this.connectSentUs = nowMicros();
        this.ws.send(`40${JSON.stringify(auth)}`);
      } else if (s.startsWith("40")) {
        this.connectedUs = at;
        done();
      } else if (s.startsWith("44")) done(new Error(`connect_error ${s.slice(2, 200)}`));
      else if (s.startsWith("42")) onEvent?.(s, at);
      else if (s.startsWith("43")) {
        const m = /^43(\d+)/.exec(s);
        const id = m ? Number(m[1]) : -1;
        const cb = this.acks.get(id);
        if (cb) {
          this.acks.delete(id);
          cb(s.slice(2 + String(id).length), at);
        }
      }
    });
    this.ws.on("error", (err) => done(err));
    this.ws.on("close", () => {
      this.closed = true;
      done(new Error("closed"));
    });
  }

  static connect(
    url: string,
    auth: Record<string, string>,
    localAddress = "127.0.0.1",
    onEvent?: (frame: string, atUs: number) => void,
    timeoutMs = 10_000,
  ): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(
        () => finish(new Error(`connect timeout (${timeoutMs} ms)`)),
        timeoutMs,
      );
      const finish = (err?: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) {
          client.ws.terminate();
          reject(err);
        } else resolve(client);
      };
      const client: RawClient = new RawClient(url, auth, localAddress, onEvent, finish);
    });
  }

  /** Emits an event (with `arg` if given) with an ack; resolves with the ack's raw JSON array text and the time (µs) it took. */
  request(
    event: string,
    timeoutMs = 10_000,
    arg?: unknown,
  ): Promise<{ payload: string; us: number }> {
    const id = this.nextAck++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.acks.delete(id);
        reject(new Error(`no ack for ${event} in ${timeoutMs} ms`));
      }, timeoutMs);
      const sent = nowMicros();
      this.acks.set(id, (payload, at) => {
        clearTimeout(timer);
        resolve({ payload, us: at - sent });
      });
      this.ws.send(`42${id}${JSON.stringify(arg === undefined ? [event] : [event, arg])}`);
    });
  }

  /** A client-side disconnect (`41`, then close); returns the µs at which it was sent. */
  disconnect(): number {
    const at = nowMicros();
    if (this.ws.readyState === WebSocket.OPEN) {
      this.ws.send("41");
      this.ws.close();
    }
    return at;
  }
}
