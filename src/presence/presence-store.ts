import type { Action, UserInfo } from "../chat/protocol.js";

/**
 * A live connection as the presence store keeps it. `owner` names the process that holds the
 * socket (`<nodeId>/<workerPid>`), so that a dead process's connections can be removed at once.
 */
export interface PresenceConnection extends UserInfo {
  owner: string;
}

/**
 * A change of who is online, published by the store itself in the order the changes happened,
 * so that every worker can deliver it to its own clients in that order.
 */
export interface PresenceEvent {
  action: typeof Action.Online | typeof Action.Offline;
  user: UserInfo;
  /** Users in the room after the change. */
  count: number;
  /**
   * The room's presence version after the change: it grows by one per announced change of the
   * room, and a room that empties and fills again starts above every version it had before.
   * A {@link PresenceSnapshot} of version V reflects exactly the events of version <= V.
   */
  version: number;
}

/** A room's users and its presence version, read atomically (see {@link PresenceStore.snapshot}). */
export interface PresenceSnapshot {
  /** The room's users, as list() gives them, at most `limit` of them. */
  userList: UserInfo[];
  /** How many users the room has. */
  total: number;
  /** The version of the last change announced before this read (0: none known). */
  version: number;
}

/** A room's figures, as {@link PresenceStore.roomCounts} gives them. */
export interface RoomCounts {
  room: string;
  /** Distinct users in the room. */
  users: number;
  /** Their connections (tabs) in the room. */
  connections: number;
}

export interface JoinResult {
  /** True when this is the user's first live connection in the room: announce 202. */
  first: boolean;
}

export interface LeaveResult {
  /** The connection that left; undefined when the fd was unknown (already removed). */
  user?: UserInfo;
  /** True when the user has no connection left in the room: announce 203. */
  last: boolean;
}

/**
 * Who is online, per room, one entry per user however many tabs they have open.
 * Every method is atomic with respect to the others, across every process sharing the store,
 * so that 202 and 203 are announced exactly once per user and room. The store announces them
 * itself, as {@link PresenceEvent}s in the order of the changes (the memory store through its
 * callback, the Redis store by publishing from its scripts); `first`/`last` say what was sent.
 * Implementations: {@link MemoryPresenceStore} (one node, kept in the primary) and
 * RedisPresenceStore (many nodes). One test suite (test/presence-store.test.ts) runs against both.
 */
export interface PresenceStore {
  /** Records a connection. */
  join(conn: PresenceConnection): Promise<JoinResult>;
  /** Removes a connection by its fd. Removing an unknown fd is not an error. */
  leave(fd: string): Promise<LeaveResult>;
  /**
   * The room's users, one entry per user (their oldest live connection), oldest first; at most
   * `limit` of them when given, skipping the first `offset` (paged lists).
   */
  list(room: string, limit?: number, offset?: number): Promise<UserInfo[]>;
  /** How many users the room has. */
  count(room: string): Promise<number>;
  /**
   * The room's users (at most `limit`, oldest first), their number and the room's presence
   * version, in one atomic read: the list reflects exactly the events up to that version.
   */
  snapshot(room: string, limit?: number): Promise<PresenceSnapshot>;
  /** Finds a user of the room by userId or by the fd of any of their connections. */
  find(room: string, userIdOrFd: string): Promise<UserInfo | undefined>;
  /**
   * Removes every connection of a dead owner. Returns the users that went offline because of it
   * (one entry per user and room), each returned once even when several callers race.
   */
  removeOwner(owner: string): Promise<UserInfo[]>;
  /** Every room with users, with its user and connection counts, by room name (admin API). */
  roomCounts(): Promise<RoomCounts[]>;
  /**
   * Every connection of the room with its owner: users oldest first (as list()), each user's
   * connections oldest first (admin API: who holds which tab).
   */
  roomConnections(room: string): Promise<PresenceConnection[]>;
  /** Number of connections and of distinct users (per room) currently recorded. */
  stats(): Promise<{ connections: number; users: number }>;
  /** Releases the store's resources. Idempotent. */
  close(): Promise<void>;
}

/** Strips the store's bookkeeping from a connection before it goes to clients. */
export function toUserInfo(conn: PresenceConnection): UserInfo {
  const user: UserInfo = {
    fd: conn.fd,
    userId: conn.userId,
    username: conn.username,
    room: conn.room,
  };
  if (conn.admin) user.admin = true;
  return user;
}

/** Rooms by name, in code-unit order: roomCounts() answers in this order on every store. */
export const byRoom = (a: RoomCounts, b: RoomCounts): number =>
  a.room < b.room ? -1 : a.room > b.room ? 1 : 0;
