import type { IncomingMessage, ServerResponse } from "node:http";
import type net from "node:net";
import type { Server, Socket } from "socket.io";
import { scopeUser } from "../apps/app-scope.js";
import { APP_SLOT } from "../cluster/connection-ledger.js";
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

/** Whether a request's Origin header may connect (no header: not a browser page, allowed). */
export function originAllowed(origins: Set<string> | "*", origin: string | undefined): boolean {
  return origin === undefined || origins === "*" || origins.has(normalOrigin(origin));
}

/** An app's connection caps on this node (0 = none), read at each handshake (reloads). */
export interface UserLimits {
  app: string;
  perApp: number;
  perUser: number;
}

/**
 * Admission of new Engine.IO sessions in a worker (requests without `sid`; a session's later
 * requests cost nothing): the page's Origin, then one round trip to the primary's ledger for
 * the client address's connect rate and the node-wide and per-address session caps. A granted
 * slot is released when the engine session closes, or, if no session came of the request
 * (handshake refused or aborted), when its connection closes.
 */
export class Admission {
  private origins: Set<string> | "*";
  private readonly addresses: ClientAddresses;
  private readonly sessionLimits: boolean;
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
   * Reserves the app's and the user's slots for `socket` (see limitUsers) and releases them when
   * the socket disconnects (or its connection closes, should the handshake never complete).
   * Resolves with the refusal (E_TOO_MANY_CONNECTIONS) to pass to `next` as connect_error data,
   * or undefined. Call it last in the middleware: a refusal decided after it must call the
   * socket's disconnect.
   */
  async admitUser(
    socket: UserSocket,
    userKey: string,
    limits: UserLimits,
  ): Promise<Refusal | undefined> {
    const slots: Reservation[] = [];
    const releaseAll = () => {
      for (const s of slots) if (s.ok) s.release();
    };
    if (limits.perApp > 0) {
      const slot = await this.ledger.reserve("user", APP_SLOT(limits.app), limits.perApp);
      if (!slot.ok) return slot.refusal;
      slots.push(slot);
    }
    if (limits.perUser > 0) {
      const slot = await this.ledger.reserve("user", userKey, limits.perUser);
      if (!slot.ok) {
        releaseAll();
        return slot.refusal;
      }
      slots.push(slot);
    }
    if (slots.length === 0) return undefined;
    if (socket.conn.readyState === "closed") {
      releaseAll();
      return undefined;
    }
    socket.once("disconnect", releaseAll);
    socket.conn.once("close", releaseAll);
    return undefined;
  }

  /**
   * Adds an app's connection caps as socket.io middleware: its own cap on the node, then the
   * per-user cap (keyed by app and userId). Install it after the ChatServer (whose own middleware
   * authenticates and sets `socket.data.user`): it runs last, so a slot is taken only by a
   * handshake that nothing else refuses. The refusal reaches the client as connect_error with
   * `data: { code: "E_TOO_MANY_CONNECTIONS", message }`.
   */
  limitUsers(
    nsp: { use(fn: (socket: Socket, next: (err?: Error) => void) => void): unknown },
    limits: () => UserLimits,
  ): void {
    nsp.use((socket, next) => {
      const userId = (socket as unknown as UserSocket).data.user?.userId;
      const now = limits();
      if (userId === undefined || (now.perApp <= 0 && now.perUser <= 0)) {
        next();
        return;
      }
      this.admitUser(socket as unknown as UserSocket, scopeUser(now.app, userId), now).then(
        (refusal) => {
          if (!refusal) {
            next();
            return;
          }
          next(Object.assign(new Error(refusal.message), { data: refusal }));
        },
      );
    });
  }

  /**
   * The origins pages may connect from, as the union of every app's (an app's own are checked
   * again at its namespace, see originAllowed): set at start and by every apps reload.
   */
  setOrigins(lists: string[]): void {
    const parsed = lists.map(parseOrigins);
    this.origins = parsed.includes("*")
      ? "*"
      : new Set(parsed.flatMap((p) => [...(p as Set<string>)]));
  }

  /** socket.io's `cors` option, following setOrigins. */
  get cors(): {
    origin: (origin: string | undefined, cb: (err: null, ok: boolean) => void) => void;
  } {
    return { origin: (origin, cb) => cb(null, originAllowed(this.origins, origin)) };
  }

  private admit(req: EngineRequest, res: ServerResponse, next: (err?: unknown) => void): void {
    if (req._query?.sid) {
      next();
      return;
    }
    if (!originAllowed(this.origins, req.headers.origin)) {
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
