import type { IncomingMessage, ServerResponse } from "node:http";
import type net from "node:net";
import type { Server, Socket } from "socket.io";
import { LedgerClient, type Reservation } from "../cluster/ledger-client.js";
import type { Config } from "../config/config.js";
import { addressKey, ClientAddresses } from "./client-address.js";
import { type Refusal, rawRefusal, refusalBody, refusalHeaders, statusOf } from "./refusal.js";

type Engine = Server["engine"];
/** What a per-user reservation needs of a socket.io socket. */
export interface UserSocket {
  data: { user?: { userId: string } };
  once(event: "disconnect", listener: () => void): unknown;
  conn: { readyState: string; once(event: "close", listener: () => void): unknown };
}
type EngineRequest = IncomingMessage & { _query?: Record<string, string> };

/** Lingering time of a refused upgrade's socket before it is destroyed. */
const LINGER_MS = 500;

/** `--allowed-origins`: `*` anywhere in the list means any origin. */
export function parseOrigins(list: string): Set<string> | "*" {
  const entries = list
    .split(",")
    .map((o) => o.trim())
    .filter((o) => o !== "");
  if (entries.length === 0 || entries.includes("*")) return "*";
  return new Set(entries.map(normalOrigin));
}

function normalOrigin(origin: string): string {
  try {
    const url = new URL(origin);
    return url.origin === "null" ? origin.toLowerCase() : url.origin;
  } catch {
    return origin.trim().toLowerCase().replace(/\/$/, "");
  }
}

/** socket.io's `cors` option: `*` for any origin, else echo only the listed ones. */
export function corsFor(list: string): { origin: string | string[] } {
  const origins = parseOrigins(list);
  return { origin: origins === "*" ? "*" : [...origins] };
}

const NO_SLOT: Reservation = { ok: true, release: () => {} };

/**
 * Admission of new Engine.IO sessions in a worker (requests without `sid`; a session's later
 * requests cost nothing): the page's Origin, then one round trip to the primary's ledger for
 * the client address's connect rate and the node-wide and per-address session caps. A granted
 * slot is released when the engine session closes, or, if no session came of the request
 * (handshake refused or aborted), when its connection closes.
 */
export class Admission {
  private readonly origins: Set<string> | "*";
  private readonly addresses: ClientAddresses;
  private readonly sessionLimits: boolean;
  private readonly userLimit: boolean;
  /**
   * Slots granted to requests whose session does not exist yet, with the listener that releases
   * them should the connection close first (removed once claimed: it holds the request).
   */
  private readonly unclaimed = new WeakMap<
    IncomingMessage,
    { release: () => void; onClose: () => void }
  >();

  /** Connections admitted uncounted because the primary's ledger did not answer in time. */
  get ledgerTimeouts(): number {
    return this.ledger.timeouts;
  }

  constructor(
    config: Config,
    private readonly ledger = new LedgerClient(),
  ) {
    this.origins = parseOrigins(config.allowedOrigins);
    this.addresses = new ClientAddresses(config.trustedProxies);
    this.sessionLimits =
      config.maxConnections > 0 ||
      config.maxConnectionsPerAddress > 0 ||
      config.connectRate.trim() !== "0";
    this.userLimit = config.maxConnectionsPerUser > 0;
  }

  /** Installs the middleware and the release hooks on the engine. */
  attach(engine: Engine): void {
    engine.use((req: EngineRequest, res: ServerResponse, next: (err?: unknown) => void) =>
      this.admit(req, res, next),
    );
    engine.on("connection", (conn: { request: IncomingMessage; once: Socket["once"] }) => {
      const slot = this.unclaimed.get(conn.request);
      if (!slot) return;
      this.unclaimed.delete(conn.request);
      // That listener closes over the request: left on the TCP socket, it would keep the whole
      // IncomingMessage alive for as long as the connection lives.
      conn.request.socket.off("close", slot.onClose);
      conn.once("close", slot.release);
    });
    engine.on("connection_error", (err: { req: IncomingMessage }) =>
      this.releaseUnclaimed(err.req),
    );
  }

  /**
   * Reserves one of the user's --max-connections-per-user slots on this node. For socket.io's
   * `io.use`, once the user is known: see `admitUser` for the usual wiring.
   */
  reserveUser(userId: string): Promise<Reservation> {
    if (!this.userLimit) return Promise.resolve(NO_SLOT);
    return this.ledger.reserve("user", userId);
  }

  /**
   * Reserves the user's slot for `socket` and releases it when the socket disconnects (or its
   * connection closes, should the handshake never complete). Resolves with the refusal
   * (E_TOO_MANY_CONNECTIONS) to pass to `next` as connect_error data, or undefined. Call it
   * last in the middleware: a refusal decided after it must call the socket's disconnect.
   */
  async admitUser(socket: UserSocket, userId: string): Promise<Refusal | undefined> {
    const slot = await this.reserveUser(userId);
    if (!slot.ok) return slot.refusal;
    if (socket.conn.readyState === "closed") {
      slot.release();
      return undefined;
    }
    socket.once("disconnect", slot.release);
    socket.conn.once("close", slot.release);
    return undefined;
  }

  /**
   * Adds the per-user cap as socket.io middleware. Install it after the ChatServer (whose own
   * middleware authenticates and sets `socket.data.user`): it runs last, so a slot is taken only
   * by a handshake that nothing else refuses. The refusal reaches the client as connect_error
   * with `data: { code: "E_TOO_MANY_CONNECTIONS", message }`.
   */
  limitUsers(io: {
    use(fn: (socket: Socket, next: (err?: Error) => void) => void): unknown;
  }): void {
    if (!this.userLimit) return;
    io.use((socket, next) => {
      const userId = (socket as unknown as UserSocket).data.user?.userId;
      if (userId === undefined) {
        next();
        return;
      }
      this.admitUser(socket as unknown as UserSocket, userId).then((refusal) => {
        if (!refusal) {
          next();
          return;
        }
        next(Object.assign(new Error(refusal.message), { data: refusal }));
      });
    });
  }

  private admit(req: EngineRequest, res: ServerResponse, next: (err?: unknown) => void): void {
    if (req._query?.sid) {
      next();
      return;
    }
    const origin = req.headers.origin;
    if (origin !== undefined && this.origins !== "*" && !this.origins.has(normalOrigin(origin))) {
      const refusal: Refusal = {
        code: "E_ORIGIN_FORBIDDEN",
        message: "this page's origin may not connect",
      };
      this.ledger.refused(refusal);
      refuse(req, res, refusal);
      return;
    }
    if (!this.sessionLimits) {
      next();
      return;
    }
    const client = this.addresses.clientOf(
      req.socket.remoteAddress,
      req.headers["x-forwarded-for"],
    );
    this.ledger.reserve("session", addressKey(client)).then((slot) => {
      if (!slot.ok) {
        refuse(req, res, slot.refusal);
        return;
      }
      if (req.socket.destroyed) {
        slot.release();
        return;
      }
      const onClose = () => this.releaseUnclaimed(req);
      this.unclaimed.set(req, { release: slot.release, onClose });
      req.socket.once("close", onClose);
      next();
    });
  }

  private releaseUnclaimed(req: IncomingMessage): void {
    const slot = this.unclaimed.get(req);
    if (!slot) return;
    this.unclaimed.delete(req);
    slot.release();
  }
}

/** Answers a refused handshake: an HTTP response for polling, raw bytes for an upgrade. */
function refuse(req: IncomingMessage, res: ServerResponse, refusal: Refusal): void {
  if (req.headers.upgrade !== undefined) {
    // An upgrade's `res` is Engine.IO's WebSocketResponse: its `socket` is the raw connection.
    const socket = (res as unknown as { socket: net.Socket }).socket;
    if (socket.writable) {
      socket.on("error", () => socket.destroy());
      socket.end(rawRefusal(refusal));
      setTimeout(() => socket.destroy(), LINGER_MS).unref();
    } else {
      socket.destroy();
    }
    return;
  }
  // CORS headers set by the cors middleware before this one stay: the page can read the body.
  res.writeHead(statusOf(refusal.code), refusalHeaders(refusal)).end(refusalBody(refusal));
}
