import { type RateLimiterAbstract, RateLimiterMemory } from "rate-limiter-flexible";
import type { Socket } from "socket.io";
import { errorEnvelope } from "../chat/envelope.js";
import { BAD_FRAME_EVENT } from "../chat/guarded-parser.js";
import type { ErrorCode } from "../chat/protocol.js";
import type { Config } from "../config/config.js";
import { disconnects, errors, rateLimited } from "../metrics/metrics.js";
import { consume, type LimiterSpec, specOf } from "./limiter-spec.js";
import type { SharedLimits } from "./shared-limits.js";

/** What an incoming event is, for the limits: each kind has its own. */
type Kind = "message" | "state" | "query";

type Classified = { kind: Kind | "free"; bytes: number };

/** Seconds over which refusals are counted towards a disconnect. */
const REFUSAL_WINDOW_S = 10;

/** One limit as applied: its limiter, what it counts, and how a refusal names it. */
interface Limit {
  /** Per connection: counted in this worker. */
  limiter?: RateLimiterAbstract;
  /** Per user: counted where every worker (and node) sees it. */
  spec: LimiterSpec;
  /** Counts bytes (the message's length) instead of events. */
  bytes: boolean;
  /** Keyed by userId (shared) rather than by connection. */
  perUser: boolean;
  label: string;
}

type Verdict = { ok: true } | { ok: false; retryAfterMs: number; limit: Limit };

export interface FloodGuardOptions {
  config: Config;
  /** The app whose connections it guards (metrics label). @default "default" */
  app?: string;
  /** Counts shared by every worker and node (per-user limits). */
  shared: SharedLimits;
  /** Logs a connection dropped for abuse. */
  onDisconnect?: (socket: Socket, why: string) => void;
}

/** A connection's checks still running, and whether it is on its way out. */
interface ConnState {
  inFlight: number;
  expel?: () => void;
}

const NOUN: Record<Kind, string> = {
  message: "chat messages",
  state: "state messages",
  query: "requests",
};

/**
 * Rate limits on everything a connection sends, installed as one Socket.IO middleware so that no
 * handler can forget them: chat messages by count and bytes (per connection, and per user across
 * workers and nodes), `state` messages and `info`/`onlineList`/unknown events per connection.
 * An event over a limit is answered with E_RATE_LIMITED (to its ack, else pushed) and dropped;
 * a connection collecting more than `maxRefusals` refusals in 10 s is told so and disconnected.
 */
export class FloodGuard {
  /** Per kind, split once: the worker's own limits (checked first), then the per-user ones. */
  private readonly local: Record<Kind, Limit[]>;
  private readonly perUser: Record<Kind, Limit[]>;
  private readonly refusals?: RateLimiterMemory;
  private readonly conns = new WeakMap<Socket, ConnState>();
  /** Refusals since start by code, and `disconnects` for abuse (status --json). */
  readonly counts: Record<string, number> = {};

  constructor(private readonly opts: FloodGuardOptions) {
    const c = opts.config;
    const make = (
      key: string,
      value: string,
      how: { bytes?: boolean; perUser?: boolean },
    ): Limit[] => {
      const spec: LimiterSpec | undefined = specOf(key, value);
      if (!spec) return [];
      const bytes = how.bytes === true;
      const perUser = how.perUser === true;
      const unit = bytes ? "bytes" : "";
      return [
        {
          limiter: perUser ? undefined : new RateLimiterMemory(spec),
          spec,
          bytes,
          perUser,
          label: `${spec.points}${unit ? ` ${unit}` : ""} per ${spec.duration} s per ${perUser ? "user" : "connection"}`,
        },
      ];
    };
    // Local limits first: a flood is refused without a round trip to the shared store.
    const limits: Record<Kind, Limit[]> = {
      message: [
        ...make("conn-msg", c.messageRate, {}),
        ...make("conn-msg-bytes", c.messageBytesRate, { bytes: true }),
        ...make("user-msg", c.userMessageRate, { perUser: true }),
        ...make("user-msg-bytes", c.userMessageBytesRate, { bytes: true, perUser: true }),
      ],
      state: make("conn-state", c.stateRate, {}),
      query: make("conn-query", c.queryRate, {}),
    };
    const split = (perUser: boolean) =>
      Object.fromEntries(
        Object.entries(limits).map(([k, l]) => [k, l.filter((x) => x.perUser === perUser)]),
      ) as Record<Kind, Limit[]>;
    this.local = split(false);
    this.perUser = split(true);
    if (c.maxRefusals > 0) {
      this.refusals = new RateLimiterMemory({
        keyPrefix: "refusals",
        points: c.maxRefusals,
        duration: REFUSAL_WINDOW_S,
      });
    }
  }

  /** Installs the limits on a connection whose user is known (after the handshake). */
  attach(socket: Socket, userId: string): void {
    const state: ConnState = { inFlight: 0 };
    this.conns.set(socket, state);
    socket.use((packet, next) => {
      const [event, payload] = packet;
      const ack = packet[packet.length - 1];
      const { kind, bytes } = classify(event, payload);
      if (kind === "free") {
        next();
        return;
      }
      state.inFlight++;
      this.check(kind, socket.id, userId, bytes)
        .then((verdict) => {
          if (verdict.ok) {
            next();
            return;
          }
          const seconds = Math.ceil(verdict.retryAfterMs / 1000);
          rateLimited.inc({ kind, app: this.opts.app ?? "default" });
          this.refuse(
            socket,
            ack,
            "E_RATE_LIMITED",
            `too many ${NOUN[kind]} (limit: ${verdict.limit.label}); retry in ${seconds} s`,
            verdict.retryAfterMs,
          );
        })
        .finally(() => {
          state.inFlight--;
          if (state.inFlight === 0) state.expel?.();
        });
    });
  }

  /**
   * Answers a refused request and counts it; past `maxRefusals` the connection is told and
   * disconnected. Also for refusals made elsewhere (bad frames).
   */
  refuse(
    socket: Socket,
    ack: unknown,
    code: ErrorCode,
    message: string,
    retryAfterMs?: number,
  ): void {
    this.counts[code] = (this.counts[code] ?? 0) + 1;
    errors.inc({ code });
    const reply = errorEnvelope(code, message);
    if (retryAfterMs !== undefined && reply.data.content.error) {
      reply.data.content.error.retryAfterMs = retryAfterMs;
    }
    if (typeof ack === "function") ack(reply);
    else socket.emit("message", reply);
    if (!this.refusals) return;
    this.refusals.consume(socket.id).catch(() => this.expel(socket));
  }

  private expel(socket: Socket): void {
    const state = this.conns.get(socket) ?? { inFlight: 0 };
    if (!socket.connected || state.expel) return;
    const why = `more than ${this.opts.config.maxRefusals} refused requests in ${REFUSAL_WINDOW_S} s`;
    state.expel = () => {
      state.expel = () => {};
      this.counts.disconnects = (this.counts.disconnects ?? 0) + 1;
      disconnects.inc({ code: "E_RATE_LIMITED" });
      socket.emit("message", errorEnvelope("E_RATE_LIMITED", `disconnected: ${why}`));
      this.opts.onDisconnect?.(socket, why);
      // After the events already let through have run: socket.io drops a disconnected socket's.
      setImmediate(() => socket.disconnect(true));
    };
    // Events accepted before this refusal may still wait for the shared store: let them finish.
    if (state.inFlight === 0) state.expel();
  }

  private async check(kind: Kind, fd: string, userId: string, bytes: number): Promise<Verdict> {
    for (const limit of this.local[kind]) {
      if (limit.bytes && bytes === 0) continue;
      const v = await consume(limit.limiter as RateLimiterAbstract, fd, limit.bytes ? bytes : 1);
      if (!v.ok) return { ...v, limit };
    }
    const perUser = this.perUser[kind];
    const shared = bytes > 0 ? perUser : perUser.filter((l) => !l.bytes);
    if (shared.length === 0) return { ok: true };
    // Count and bytes in one call: one round trip to the shared counts per message.
    const verdicts = await this.opts.shared.consume(
      shared.map((l) => ({ spec: l.spec, key: userId, points: l.bytes ? bytes : 1 })),
    );
    const refused = verdicts.findIndex((v) => !v.ok);
    const v = verdicts[refused];
    return v && !v.ok ? { ...v, limit: shared[refused] } : { ok: true };
  }
}

function classify(event: unknown, payload: unknown): Classified {
  // Refused frames count as refusals (guard.refuse), not also as queries.
  if (event === BAD_FRAME_EVENT) return { kind: "free", bytes: 0 };
  if (event !== "message") return { kind: "query", bytes: 0 };
  const p = payload as { type?: unknown; content?: { message?: unknown } } | null;
  if (typeof p === "object" && p !== null && p.type === "state") return { kind: "state", bytes: 0 };
  const text = typeof p === "object" && p !== null ? p.content?.message : undefined;
  return { kind: "message", bytes: typeof text === "string" ? text.length : 0 };
}
