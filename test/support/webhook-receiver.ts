/**
 * A real webhook receiver (node:http on a free port) that checks every batch's signature with the
 * secret and records what it got. `mode` says how it answers: "ok" (204), "fail" (500) or "hang"
 * (never answers); close() and reopen() take it down and bring it back on the same port.
 */
import http from "node:http";
import type net from "node:net";
import type { WebhookEvent } from "../../src/webhooks/webhook-event.js";
import { verifySignature } from "../../src/webhooks/webhook-signature.js";

export interface ReceivedBatch {
  events: WebhookEvent[];
  /** The body's `app`: whose events these are. */
  app?: string;
  /** Whether this POST was answered 2xx. */
  acked: boolean;
  signatureOk: boolean;
  timestamp: string | undefined;
}

export class WebhookReceiver {
  mode: "ok" | "fail" | "hang" = "ok";
  readonly batches: ReceivedBatch[] = [];
  private server?: http.Server;
  private readonly sockets = new Set<net.Socket>();
  port = 0;

  constructor(readonly secret: string) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}/hooks`;
  }

  /** Events of the batches answered 2xx, in arrival order. */
  get acked(): WebhookEvent[] {
    return this.batches.filter((b) => b.acked).flatMap((b) => b.events);
  }

  /** Failed (non-2xx) POSTs so far. */
  get failures(): number {
    return this.batches.filter((b) => !b.acked).length;
  }

  async open(port = this.port): Promise<void> {
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const raw = Buffer.concat(chunks);
        const signatureOk = verifySignature(
          raw,
          this.secret,
          req.headers["x-weigot-signature"] as string | undefined,
        );
        let events: WebhookEvent[] = [];
        let app: string | undefined;
        try {
          const body = JSON.parse(raw.toString()) as { events: WebhookEvent[]; app?: string };
          events = body.events;
          app = body.app;
        } catch {
          events = [];
        }
        const mode = this.mode;
        const acked = mode === "ok" && signatureOk;
        this.batches.push({
          events,
          app,
          acked,
          signatureOk,
          timestamp: req.headers["x-weigot-timestamp"] as string | undefined,
        });
        if (mode === "hang") return;
        res.writeHead(acked ? 204 : mode === "ok" ? 401 : 500).end();
      });
    });
    server.on("connection", (s) => {
      this.sockets.add(s);
      s.on("close", () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
    this.port = (server.address() as net.AddressInfo).port;
    this.server = server;
  }

  /** Stops listening and cuts every connection (the port then refuses). */
  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
