import type { IncomingMessage } from "node:http";

/** What socket.io reads of a connection's request after it opened (its `buildHandshake`). */
export interface SlimRequest {
  headers: IncomingMessage["headers"];
  url?: string;
  _query?: Record<string, string>;
  connection: { encrypted: boolean };
}

interface Engine {
  use(fn: (req: IncomingMessage, res: unknown, next: (err?: unknown) => void) => void): unknown;
  on(event: "connection", fn: (conn: { request?: IncomingMessage | SlimRequest }) => void): unknown;
}

/**
 * Engine.IO keeps the HTTP request that opened a connection for the connection's whole life
 * (`conn.request`, and an upgrade's WebSocketResponse holds it too), ~1 KB each: the
 * IncomingMessage with its stream state and raw headers. socket.io's memory-usage guide drops it
 * once the connection is open; here it is swapped for the few fields socket.io still reads when a
 * namespace is joined later (`socket.handshake` of a second namespace: headers, url, query,
 * secure), so the handshake a socket sees is unchanged. Install after every other `connection`
 * listener of the engine that reads the request.
 */
export function slimHandshakeRequests(engine: Engine): void {
  // An upgrade's response object, kept by its TCP socket's close listener, points at the request.
  const responses = new WeakMap<IncomingMessage, { req?: unknown }>();
  engine.use((req, res, next) => {
    if (req.headers.upgrade !== undefined && typeof res === "object" && res !== null) {
      responses.set(req, res as { req?: unknown });
    }
    next();
  });
  engine.on("connection", (conn) => {
    const req = conn.request as (IncomingMessage & { _query?: Record<string, string> }) | undefined;
    if (req === undefined || !("socket" in req)) return;
    const slim: SlimRequest = {
      headers: req.headers,
      url: req.url,
      _query: req._query,
      connection: { encrypted: (req.socket as { encrypted?: boolean }).encrypted === true },
    };
    conn.request = slim;
    const res = responses.get(req);
    if (res) res.req = slim;
  });
}
