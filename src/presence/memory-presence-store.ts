import { Action, type UserInfo } from "../chat/protocol.js";
import {
  byRoom,
  type JoinResult,
  type LeaveResult,
  type PresenceConnection,
  type PresenceEvent,
  type PresenceSnapshot,
  type PresenceStore,
  type RoomCounts,
  toUserInfo,
} from "./presence-store.js";

/**
 * The embedded store: one per node, owned by the primary process (workers reach it over IPC).
 * Single-threaded, so every operation is atomic by construction.
 */
export class MemoryPresenceStore implements PresenceStore {
  private readonly conns = new Map<string, PresenceConnection>();
  /** room → userId → the user's fds, in join order. Maps keep insertion order: oldest first. */
  private readonly rooms = new Map<string, Map<string, Set<string>>>();
  private readonly owners = new Map<string, Set<string>>();
  /** room → its presence version; kept while the room has users (bounded by live rooms). */
  private readonly versions = new Map<string, number>();
  /** The highest version ever given: a room that fills again starts above it. */
  private clock = 0;

  /** @param onEvent receives every 202/203 change, synchronously, in order. */
  constructor(private readonly onEvent: (event: PresenceEvent) => void = () => {}) {}

  async join(conn: PresenceConnection): Promise<JoinResult> {
    if (this.conns.has(conn.fd)) return { first: false };
    this.conns.set(conn.fd, { ...conn });
    let users = this.rooms.get(conn.room);
    if (!users) {
      users = new Map();
      this.rooms.set(conn.room, users);
    }
    let fds = users.get(conn.userId);
    const first = !fds;
    if (!fds) {
      fds = new Set();
      users.set(conn.userId, fds);
    }
    fds.add(conn.fd);
    if (first) {
      const version = this.bump(conn.room);
      this.onEvent({ action: Action.Online, user: toUserInfo(conn), count: users.size, version });
    }
    let owned = this.owners.get(conn.owner);
    if (!owned) {
      owned = new Set();
      this.owners.set(conn.owner, owned);
    }
    owned.add(conn.fd);
    return { first };
  }

  async leave(fd: string): Promise<LeaveResult> {
    return this.remove(fd);
  }

  private remove(fd: string): LeaveResult {
    const conn = this.conns.get(fd);
    if (!conn) return { last: false };
    this.conns.delete(fd);
    this.owners.get(conn.owner)?.delete(fd);
    if (this.owners.get(conn.owner)?.size === 0) this.owners.delete(conn.owner);
    const users = this.rooms.get(conn.room);
    const fds = users?.get(conn.userId);
    fds?.delete(fd);
    const last = !fds || fds.size === 0;
    const user = toUserInfo(conn);
    if (last) {
      users?.delete(conn.userId);
      const version = this.bump(conn.room);
      if (users?.size === 0) {
        this.rooms.delete(conn.room);
        this.versions.delete(conn.room);
      }
      this.onEvent({ action: Action.Offline, user, count: users?.size ?? 0, version });
    }
    return { user, last };
  }

  private bump(room: string): number {
    const version = (this.versions.get(room) ?? this.clock) + 1;
    this.versions.set(room, version);
    if (version > this.clock) this.clock = version;
    return version;
  }

  async list(room: string, limit?: number, offset?: number): Promise<UserInfo[]> {
    return this.listNow(room, limit, offset);
  }

  /** Synchronous, so that snapshot() reads list and version in one step. */
  private listNow(room: string, limit = Number.POSITIVE_INFINITY, offset = 0): UserInfo[] {
    const users = this.rooms.get(room);
    if (!users) return [];
    const list: UserInfo[] = [];
    let skip = offset;
    for (const fds of users.values()) {
      if (list.length >= limit) break;
      if (skip > 0) {
        skip--;
        continue;
      }
      const fd = fds.values().next().value;
      const conn = fd === undefined ? undefined : this.conns.get(fd);
      if (conn) list.push(toUserInfo(conn));
    }
    return list;
  }

  async snapshot(room: string, limit?: number): Promise<PresenceSnapshot> {
    return {
      userList: this.listNow(room, limit),
      total: this.rooms.get(room)?.size ?? 0,
      version: this.versions.get(room) ?? 0,
    };
  }

  /** Every live connection, oldest first (what a restarting primary hands to its successor). */
  connections(): PresenceConnection[] {
    return [...this.conns.values()].map((c) => ({ ...c }));
  }

  async count(room: string): Promise<number> {
    return this.rooms.get(room)?.size ?? 0;
  }

  async find(room: string, userIdOrFd: string): Promise<UserInfo | undefined> {
    const fds = this.rooms.get(room)?.get(userIdOrFd);
    if (fds) {
      const fd = fds.values().next().value;
      const conn = fd === undefined ? undefined : this.conns.get(fd);
      return conn && toUserInfo(conn);
    }
    const conn = this.conns.get(userIdOrFd);
    if (conn && conn.room === room) {
      // Answer with the user's oldest connection, as list() does.
      return this.find(room, conn.userId);
    }
    return undefined;
  }

  async removeOwner(owner: string): Promise<UserInfo[]> {
    const owned = this.owners.get(owner);
    if (!owned) return [];
    const offline: UserInfo[] = [];
    for (const fd of [...owned]) {
      const { user, last } = this.remove(fd);
      if (user && last) offline.push(user);
    }
    this.owners.delete(owner);
    return offline;
  }

  async roomCounts(): Promise<RoomCounts[]> {
    const out: RoomCounts[] = [];
    for (const [room, users] of this.rooms) {
      let connections = 0;
      for (const fds of users.values()) connections += fds.size;
      out.push({ room, users: users.size, connections });
    }
    return out.sort(byRoom);
  }

  async roomConnections(room: string): Promise<PresenceConnection[]> {
    const out: PresenceConnection[] = [];
    for (const fds of this.rooms.get(room)?.values() ?? []) {
      for (const fd of fds) {
        const conn = this.conns.get(fd);
        if (conn) out.push({ ...conn });
      }
    }
    return out;
  }

  async stats(): Promise<{ connections: number; users: number }> {
    let users = 0;
    for (const room of this.rooms.values()) users += room.size;
    return { connections: this.conns.size, users };
  }

  async close(): Promise<void> {
    this.conns.clear();
    this.rooms.clear();
    this.owners.clear();
    this.versions.clear();
  }
}
