import type net from "node:net";

export interface PendingLimits {
  /** Connections held before their request head is read (0 = no limit). */
  max: number;
  /** Of those, from one address (trusted proxies exempt). */
  perAddress: number;
  /** Over-cap connections held briefly in case they are health probes. */
  reserve: number;
}

/** Where a new connection stands: counted normally, or in the health-probe reserve. */
export type PendingClass = { kind: "regular" } | { kind: "reserve"; over: "node" | "address" };

/** The part of each address's pending count one address may hold: a tenth of the cap. */
export function perAddressPending(max: number): number {
  return max === 0 ? 0 : Math.max(1, Math.ceil(max / 10));
}

/**
 * Counts the primary's unrouted connections, so that connections which never finish their
 * request head (slowloris) cannot hold every descriptor. Over a cap a connection is not
 * refused blind: it goes to a small reserve where only /healthz and /readyz are served, so
 * health checks keep answering while an attacker holds every regular slot. The reserve is FIFO:
 * when full, its oldest connection is evicted, so to crowd a probe out an attacker must open
 * `reserve` connections within the probe's round trip.
 */
export class PendingConnections {
  private regular = 0;
  private readonly byAddress = new Map<string, number>();
  private readonly reserved = new Set<net.Socket>();

  constructor(private readonly limits: PendingLimits) {}

  get size(): number {
    return this.regular + this.reserved.size;
  }

  /**
   * Classifies a new connection and counts it; `evict` is called with the reserve's oldest
   * connection when it must make room. Call `done` once the connection leaves the pending state.
   */
  admit(
    socket: net.Socket,
    address: string,
    trusted: boolean,
    evict: (oldest: net.Socket) => void,
  ): { cls: PendingClass; done: () => void } {
    const { max, perAddress, reserve } = this.limits;
    const mine = this.byAddress.get(address) ?? 0;
    const overNode = max > 0 && this.regular >= max;
    const overAddress = !trusted && perAddress > 0 && mine >= perAddress;
    if (!overNode && !overAddress) {
      this.regular++;
      this.byAddress.set(address, mine + 1);
      let counted = true;
      return {
        cls: { kind: "regular" },
        done: () => {
          if (!counted) return;
          counted = false;
          this.regular--;
          const n = (this.byAddress.get(address) ?? 1) - 1;
          if (n <= 0) this.byAddress.delete(address);
          else this.byAddress.set(address, n);
        },
      };
    }
    if (this.reserved.size >= Math.max(1, reserve)) {
      const oldest = this.reserved.values().next().value as net.Socket;
      this.reserved.delete(oldest);
      evict(oldest);
    }
    this.reserved.add(socket);
    return {
      cls: { kind: "reserve", over: overNode ? "node" : "address" },
      done: () => {
        this.reserved.delete(socket);
      },
    };
  }
}
