import type { UserInfo } from "../chat/protocol.js";
import type {
  JoinResult,
  LeaveResult,
  PresenceConnection,
  PresenceSnapshot,
  PresenceStore,
  RoomCounts,
} from "../presence/presence-store.js";
import { DEFAULT_APP, scopeRoom, unscopeRoom } from "./app-scope.js";

/**
 * One app's view of the service's presence store: its rooms are the store's `<app>/<room>`
 * (app-scope.ts), and what it reads back carries its plain room names. Every app, the default
 * one included, sees only its own rooms. `removeOwner` and `stats` stay the service's: a dead
 * process's entries go whatever their app.
 */
export class ScopedPresenceStore implements PresenceStore {
  constructor(
    private readonly inner: PresenceStore,
    private readonly app: string,
  ) {}

  private scope(room: string): string {
    return scopeRoom(this.app, room);
  }

  /** A user the store gave back, with the plain room name. */
  private plain<T extends UserInfo>(user: T): T {
    if (this.app === DEFAULT_APP) return user;
    return { ...user, room: unscopeRoom(user.room).room };
  }

  private mine(room: string): boolean {
    return unscopeRoom(room).app === this.app;
  }

  join(conn: PresenceConnection): Promise<JoinResult> {
    return this.inner.join(
      this.app === DEFAULT_APP ? conn : { ...conn, room: this.scope(conn.room) },
    );
  }

  async leave(fd: string): Promise<LeaveResult> {
    const result = await this.inner.leave(fd);
    return result.user ? { ...result, user: this.plain(result.user) } : result;
  }

  async list(room: string, limit?: number, offset?: number): Promise<UserInfo[]> {
    return (await this.inner.list(this.scope(room), limit, offset)).map((u) => this.plain(u));
  }

  count(room: string): Promise<number> {
    return this.inner.count(this.scope(room));
  }

  async snapshot(room: string, limit?: number): Promise<PresenceSnapshot> {
    const snap = await this.inner.snapshot(this.scope(room), limit);
    return { ...snap, userList: snap.userList.map((u) => this.plain(u)) };
  }

  async find(room: string, userIdOrFd: string): Promise<UserInfo | undefined> {
    const found = await this.inner.find(this.scope(room), userIdOrFd);
    return found && this.plain(found);
  }

  async removeOwner(owner: string): Promise<UserInfo[]> {
    return (await this.inner.removeOwner(owner))
      .filter((u) => this.mine(u.room))
      .map((u) => this.plain(u));
  }

  async roomCounts(): Promise<RoomCounts[]> {
    return (await this.inner.roomCounts())
      .filter((c) => this.mine(c.room))
      .map((c) => ({ ...c, room: unscopeRoom(c.room).room }));
  }

  async roomConnections(room: string): Promise<PresenceConnection[]> {
    return (await this.inner.roomConnections(this.scope(room))).map((c) => this.plain(c));
  }

  stats(): Promise<{ connections: number; users: number }> {
    return this.inner.stats();
  }

  /** The service's store is closed by its backend, not by an app. */
  async close(): Promise<void> {}
}
