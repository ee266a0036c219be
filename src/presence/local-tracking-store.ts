import { ChatError } from "../chat/chat-error.js";
import type { UserInfo } from "../chat/protocol.js";
import { withTimeout } from "../util/deferred.js";
import {
  type JoinResult,
  type LeaveResult,
  type PresenceConnection,
  type PresenceSnapshot,
  type PresenceStore,
  type RoomCounts,
  toUserInfo,
} from "./presence-store.js";
import type { RedisPresenceStore } from "./redis-presence-store.js";

/** How long a presence read or join may wait for Redis before the client gets E_INTERNAL. */
const PRESENCE_TIMEOUT_MS = 3000;

/**
 * The Redis store, plus this process's own list of live connections kept in step with it (the
 * heartbeat rewrites Redis from that list after an outage, a FLUSH or a restart of Redis).
 */
export class LocalTrackingStore implements PresenceStore {
  readonly local = new Map<string, PresenceConnection>();
  /** Connections whose leave Redis lost or refused: their 203 waits until presence is rebuilt. */
  readonly lostLeaves: { user: UserInfo; at: number }[] = [];

  constructor(readonly inner: RedisPresenceStore) {}

  join(conn: PresenceConnection): Promise<JoinResult> {
    this.local.set(conn.fd, conn);
    // The join stays queued if Redis is down; the leave that follows the refusal is queued after it.
    return failFast(this.inner.join(conn));
  }
  async leave(fd: string): Promise<LeaveResult> {
    const conn = this.local.get(fd);
    this.local.delete(fd);
    try {
      const result = await this.inner.leave(fd);
      if (!result.user && conn) this.lostLeaves.push({ user: toUserInfo(conn), at: Date.now() });
      return result;
    } catch (err) {
      // The heartbeat's count check will drop the entry from Redis by a resync.
      if (conn) this.lostLeaves.push({ user: toUserInfo(conn), at: Date.now() });
      throw err;
    }
  }
  list(room: string, limit?: number, offset?: number): Promise<UserInfo[]> {
    return failFast(this.inner.list(room, limit, offset));
  }
  count(room: string): Promise<number> {
    return failFast(this.inner.count(room));
  }
  snapshot(room: string, limit?: number): Promise<PresenceSnapshot> {
    return failFast(this.inner.snapshot(room, limit));
  }
  find(room: string, userIdOrFd: string): Promise<UserInfo | undefined> {
    return failFast(this.inner.find(room, userIdOrFd));
  }
  removeOwner(owner: string): Promise<UserInfo[]> {
    return this.inner.removeOwner(owner);
  }
  roomCounts(): Promise<RoomCounts[]> {
    return failFast(this.inner.roomCounts());
  }
  roomConnections(room: string): Promise<PresenceConnection[]> {
    return failFast(this.inner.roomConnections(room));
  }
  stats(): Promise<{ connections: number; users: number }> {
    return failFast(this.inner.stats());
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

function failFast<T>(promise: Promise<T>): Promise<T> {
  return withTimeout(promise, PRESENCE_TIMEOUT_MS, "presence (redis)").catch((err: unknown) => {
    throw new ChatError(
      "E_INTERNAL",
      `presence is unavailable: ${err instanceof Error ? err.message : String(err)}`,
    );
  });
}
