import { ChatError } from "../chat/chat-error.js";
import { IpcRpc } from "../cluster/ipc-rpc.js";

/** A userId kept out until `until` (epoch ms): its handshakes are refused with E_BANNED. */
export interface Ban {
  userId: string;
  reason: string;
  until: number;
}

/**
 * Bans shared by every worker (cluster mode: kept in the primary, reached over IPC) and every
 * node (Redis mode: a key with a TTL per ban). Expired bans vanish by themselves.
 */
export interface BanStore {
  /** Bans (or re-bans, replacing the old expiry) `userId` for `seconds`. */
  ban(userId: string, seconds: number, reason: string): Promise<Ban>;
  /** Lifts a ban; resolves false when there was none. */
  lift(userId: string): Promise<boolean>;
  /** The user's ban in force, if any. */
  get(userId: string): Promise<Ban | undefined>;
  /** Every ban in force, soonest to expire first. */
  list(): Promise<Ban[]>;
}

/** Most bans a node's memory keeps at once: beyond, new bans are refused (E_SERVER_BUSY). */
export const MAX_BANS = 100_000;

/** One node's bans, in the primary (single-threaded: every call is atomic). */
export class MemoryBanStore implements BanStore {
  private readonly bans = new Map<string, Ban>();

  constructor(private readonly now: () => number = Date.now) {}

  async ban(userId: string, seconds: number, reason: string): Promise<Ban> {
    if (!this.bans.has(userId) && this.bans.size >= MAX_BANS) {
      this.sweep();
      if (this.bans.size >= MAX_BANS) {
        throw new ChatError("E_SERVER_BUSY", `at most ${MAX_BANS} bans at once`);
      }
    }
    const ban = { userId, reason, until: this.now() + seconds * 1000 };
    this.bans.set(userId, ban);
    return { ...ban };
  }

  async lift(userId: string): Promise<boolean> {
    const had = this.live(userId) !== undefined;
    this.bans.delete(userId);
    return had;
  }

  async get(userId: string): Promise<Ban | undefined> {
    const ban = this.live(userId);
    return ban && { ...ban };
  }

  async list(): Promise<Ban[]> {
    this.sweep();
    return [...this.bans.values()].map((b) => ({ ...b })).sort((a, b) => a.until - b.until);
  }

  private live(userId: string): Ban | undefined {
    const ban = this.bans.get(userId);
    if (ban && ban.until <= this.now()) {
      this.bans.delete(userId);
      return undefined;
    }
    return ban;
  }

  private sweep(): void {
    const now = this.now();
    for (const [userId, ban] of this.bans) if (ban.until <= now) this.bans.delete(userId);
  }
}

/** The IPC service name of the primary's ban store, and the methods a worker may call. */
export const BANS_SERVICE = "bans";
export const BAN_METHODS: ReadonlySet<string> = new Set(["ban", "lift", "get", "list"]);

/** A worker's view of the primary's {@link MemoryBanStore}. */
export class IpcBanStore implements BanStore {
  private readonly rpc = new IpcRpc(BANS_SERVICE);

  ban(userId: string, seconds: number, reason: string): Promise<Ban> {
    return this.rpc.call("ban", [userId, seconds, reason]);
  }
  lift(userId: string): Promise<boolean> {
    return this.rpc.call("lift", [userId]);
  }
  get(userId: string): Promise<Ban | undefined> {
    return this.rpc.call("get", [userId]);
  }
  list(): Promise<Ban[]> {
    return this.rpc.call("list", []);
  }
}
