import { type RateLimiterAbstract, RateLimiterMemory } from "rate-limiter-flexible";
import { IpcRpc } from "../cluster/ipc-rpc.js";
import { consume, type LimiterSpec, type Verdict } from "./limiter-spec.js";

/** Points to take from one shared limit for one key. */
export interface Charge {
  spec: LimiterSpec;
  key: string;
  points: number;
}

/**
 * Limits whose counts every worker (and, in Redis mode, every node) shares. Several charges go
 * in one call, so that a chat message's per-user limits (count and bytes) cost one round trip.
 */
export interface SharedLimits {
  /** One verdict per charge, in order. */
  consume(charges: Charge[]): Promise<Verdict[]>;
}

/** Limiters made on first use, one per spec (key prefix), by `make`. */
export class LimiterSet implements SharedLimits {
  private readonly limiters = new Map<string, RateLimiterAbstract>();

  constructor(private readonly make: (spec: LimiterSpec) => RateLimiterAbstract) {}

  consume(charges: Charge[]): Promise<Verdict[]> {
    return Promise.all(charges.map((c) => consume(this.limiter(c.spec), c.key, c.points)));
  }

  private limiter(spec: LimiterSpec): RateLimiterAbstract {
    const id = `${spec.keyPrefix}\n${spec.points}\n${spec.duration}`;
    let limiter = this.limiters.get(id);
    if (!limiter) {
      limiter = this.make(spec);
      this.limiters.set(id, limiter);
    }
    return limiter;
  }
}

/** The service name of the primary's limits on the IPC channel (cluster mode). */
export const LIMITS_SERVICE = "limits";
export const LIMITS_METHODS: ReadonlySet<string> = new Set(["consume"]);

/** Cluster mode, primary side: counts in the primary's memory, for every worker. */
export const primaryLimits = (): LimiterSet =>
  new LimiterSet((spec) => new RateLimiterMemory(spec));

/** Cluster mode, worker side: every call is one IPC round trip to the primary's counts. */
export class IpcSharedLimits implements SharedLimits {
  private readonly rpc = new IpcRpc(LIMITS_SERVICE);

  async consume(charges: Charge[]): Promise<Verdict[]> {
    try {
      return await this.rpc.call<Verdict[]>("consume", [charges]);
    } catch {
      // The primary is going away: let the message through rather than refuse everyone.
      return charges.map(() => ({ ok: true }));
    }
  }
}
