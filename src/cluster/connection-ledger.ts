import { RateLimiterMemory, RateLimiterRes } from "rate-limiter-flexible";
import type { ErrorCode } from "../chat/protocol.js";
import type { Rate } from "../config/config.js";
import type { Refusal } from "../http/refusal.js";
import { handshakes } from "../metrics/metrics.js";
import type { AdmitKind } from "./ipc-messages.js";

/** The ledger key of an app's own connection cap (no userId holds a control character). */
export const APP_SLOT = (app: string): string => `\u0001app:${app}`;

export interface LedgerLimits {
  /** Node-wide live sessions (0 = no limit). */
  maxConnections: number;
  /** Live sessions per client address key (0 = no limit). */
  maxConnectionsPerAddress: number;
  /** Live connections per userId (0 = no limit). */
  maxConnectionsPerUser: number;
  /** New sessions per client address key; undefined = no limit. */
  connectRate?: Rate;
}

interface Entry {
  worker: number;
  kind: AdmitKind;
  key: string;
}

/**
 * The node's exact count of live Engine.IO sessions (per address) and of connected users, kept
 * in the primary: the primary spreads new sessions over the workers, so no worker sees enough to
 * count alone. A worker reserves before a session exists and releases when it ends; the entries
 * of a worker that dies are dropped at its exit, so a reservation cannot outlive its worker.
 * Every refusal of the node (the primary's own included) is counted here for `status`.
 */
export class ConnectionLedger {
  private nextToken = 1;
  private readonly entries = new Map<number, Entry>();
  private readonly byWorker = new Map<number, Set<number>>();
  private readonly perAddress = new Map<string, number>();
  private readonly perUser = new Map<string, number>();
  private sessions = 0;
  private readonly rate?: RateLimiterMemory;
  readonly refusals: Partial<Record<ErrorCode, number>> = {};

  constructor(private readonly limits: LedgerLimits) {
    if (limits.connectRate) {
      this.rate = new RateLimiterMemory({
        points: limits.connectRate.points,
        duration: limits.connectRate.seconds,
      });
    }
  }

  /** Live sessions on the node, as reserved. */
  get size(): number {
    return this.sessions;
  }

  /**
   * Reserves a slot for `worker`; resolves with its token, or the refusal (counted). A "user"
   * slot's `limit` (an app's own) replaces --max-connections-per-user; an app's own connection cap
   * is a "user" slot under APP_SLOT(app).
   */
  async reserve(
    worker: number,
    kind: AdmitKind,
    key: string,
    limit?: number,
  ): Promise<number | Refusal> {
    const refusal =
      kind === "session"
        ? await this.checkSession(key)
        : this.checkUser(key, limit ?? this.limits.maxConnectionsPerUser);
    if (refusal) {
      this.count(refusal.code);
      return refusal;
    }
    const token = this.nextToken++;
    this.entries.set(token, { worker, kind, key });
    let mine = this.byWorker.get(worker);
    if (!mine) {
      mine = new Set();
      this.byWorker.set(worker, mine);
    }
    mine.add(token);
    if (kind === "session") {
      this.sessions++;
      bump(this.perAddress, key, 1);
    } else {
      bump(this.perUser, key, 1);
    }
    return token;
  }

  /** Ends a reservation; unknown or already released tokens are ignored. */
  release(token: number): void {
    const entry = this.entries.get(token);
    if (!entry) return;
    this.entries.delete(token);
    this.byWorker.get(entry.worker)?.delete(token);
    if (entry.kind === "session") {
      this.sessions--;
      bump(this.perAddress, entry.key, -1);
    } else {
      bump(this.perUser, entry.key, -1);
    }
  }

  /** A worker is gone: its sessions and users are gone with it. */
  dropWorker(worker: number): void {
    for (const token of [...(this.byWorker.get(worker) ?? [])]) this.release(token);
    this.byWorker.delete(worker);
  }

  count(code: ErrorCode): void {
    this.refusals[code] = (this.refusals[code] ?? 0) + 1;
    handshakes.inc({ result: code });
  }

  private async checkSession(address: string): Promise<Refusal | undefined> {
    if (this.rate) {
      try {
        await this.rate.consume(address);
      } catch (res) {
        const retryAfterMs = res instanceof RateLimiterRes ? res.msBeforeNext : 1000;
        return {
          code: "E_RATE_LIMITED",
          message: "too many new connections from this address, retry later",
          retryAfterMs,
        };
      }
    }
    const { maxConnections, maxConnectionsPerAddress } = this.limits;
    if (
      maxConnectionsPerAddress > 0 &&
      (this.perAddress.get(address) ?? 0) >= maxConnectionsPerAddress
    ) {
      return {
        code: "E_TOO_MANY_CONNECTIONS",
        message: `at most ${maxConnectionsPerAddress} connections from one address`,
      };
    }
    if (maxConnections > 0 && this.sessions >= maxConnections) {
      return { code: "E_SERVER_BUSY", message: "the server is full, retry later" };
    }
    return undefined;
  }

  private checkUser(key: string, max: number): Refusal | undefined {
    if (max > 0 && (this.perUser.get(key) ?? 0) >= max) {
      return {
        code: "E_TOO_MANY_CONNECTIONS",
        message: key.startsWith(APP_SLOT(""))
          ? `this app has at most ${max} connections on this node`
          : `at most ${max} simultaneous connections per user`,
      };
    }
    return undefined;
  }
}

function bump(map: Map<string, number>, key: string, by: number): void {
  const n = (map.get(key) ?? 0) + by;
  if (n <= 0) map.delete(key);
  else map.set(key, n);
}
