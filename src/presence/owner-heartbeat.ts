import type { PresenceConnection } from "./presence-store.js";

/** What a heartbeat needs from its store (RedisPresenceStore provides it). */
export interface HeartbeatTarget {
  /** Refreshes the owner's liveness; resolves false when Redis lost some of its entries. */
  heartbeat(
    owner: string,
    expectedConnections?: number,
    connections?: PresenceConnection[],
  ): Promise<boolean>;
  /** Rewrites the owner's entries to exactly these connections. */
  resync(owner: string, conns: PresenceConnection[]): Promise<void>;
}

export interface HeartbeatOptions {
  /**
   * The owner's live connections, oldest first, read synchronously on every beat (their number is
   * checked against Redis) and again when a resync is sent. Keep it in step with the store calls:
   * add a connection when you call join(), drop it when you call leave(), without an `await` in
   * between. Commands run in call order on one client, so the snapshot then matches Redis exactly.
   */
  connections: () => PresenceConnection[];
  /** Time between beats; keep it well under the store's ownerTtlSeconds. @default ownerTtl / 3 */
  intervalMs?: number;
  /** A beat or resync failed (Redis unreachable…). The heartbeat keeps running. @default ignore */
  onError?: (err: unknown) => void;
  /** Redis had lost entries (restart, FLUSH, this owner reaped after a stall) and they were rewritten. */
  onResync?: (connections: number) => void;
}

/** A running heartbeat of one owner. */
export interface Heartbeat {
  /** Beats now (e.g. right after the Redis client reconnected). Resolves true when Redis had kept
   * everything, false after a resync or an error. Never rejects. Concurrent calls share one beat. */
  beat(): Promise<boolean>;
  /** Stops the timer. Does not remove the owner: call removeOwner() for a graceful exit. */
  stop(): void;
}

/**
 * Keeps an owner alive: refreshes its liveness key on an interval and, when Redis lost some of its
 * entries, rewrites them from the process's own list of live connections.
 */
export class OwnerHeartbeat implements Heartbeat {
  private readonly timer: NodeJS.Timeout;
  private running: Promise<boolean> | undefined;
  private stopped = false;

  constructor(
    private readonly target: HeartbeatTarget,
    private readonly owner: string,
    private readonly options: HeartbeatOptions & { intervalMs: number },
  ) {
    this.timer = setInterval(() => void this.beat(), options.intervalMs);
    this.timer.unref();
    // The first beat is sent now, synchronously: it reaches Redis before any join sent afterwards.
    void this.beat();
  }

  beat(): Promise<boolean> {
    if (this.stopped) return Promise.resolve(false);
    this.running ??= this.run().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }

  private async run(): Promise<boolean> {
    try {
      const live = this.options.connections();
      if (await this.target.heartbeat(this.owner, live.length, live)) return true;
      if (this.stopped) return false;
      // A fresh snapshot, taken as the resync is sent: joins/leaves sent meanwhile are in it.
      const conns = this.options.connections();
      await this.target.resync(this.owner, conns);
      this.options.onResync?.(conns.length);
      return false;
    } catch (err) {
      try {
        this.options.onError?.(err);
      } catch {
        // A throwing listener must not become an unhandled rejection of a timer's beat.
      }
      return false;
    }
  }
}
