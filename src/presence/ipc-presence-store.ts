import type { UserInfo } from "../chat/protocol.js";
import { IpcRpc } from "../cluster/ipc-rpc.js";
import type {
  JoinResult,
  LeaveResult,
  PresenceConnection,
  PresenceSnapshot,
  PresenceStore,
  RoomCounts,
} from "./presence-store.js";

/** The service name of the primary's presence store on the IPC channel (served by serveRpc). */
export const PRESENCE_SERVICE = "presence";
export const PRESENCE_METHODS: ReadonlySet<string> = new Set([
  "join",
  "leave",
  "list",
  "count",
  "snapshot",
  "find",
  "removeOwner",
  "roomCounts",
  "roomConnections",
  "stats",
]);

/**
 * A worker's view of the node's presence store, which lives in the primary
 * (served there by serveRpc). Calls travel over the cluster IPC channel, in order.
 */
export class IpcPresenceStore implements PresenceStore {
  private readonly rpc = new IpcRpc(PRESENCE_SERVICE);

  private call<T>(method: string, args: unknown[]): Promise<T> {
    return this.rpc.call<T>(method, args);
  }

  join(conn: PresenceConnection): Promise<JoinResult> {
    return this.call("join", [conn]);
  }
  leave(fd: string): Promise<LeaveResult> {
    return this.call("leave", [fd]);
  }
  list(room: string, limit?: number, offset?: number): Promise<UserInfo[]> {
    // The channel uses "advanced" serialization: undefined arrives as undefined (no limit).
    return this.call("list", [room, limit, offset]);
  }
  count(room: string): Promise<number> {
    return this.call("count", [room]);
  }
  snapshot(room: string, limit?: number): Promise<PresenceSnapshot> {
    return this.call("snapshot", [room, limit]);
  }
  find(room: string, userIdOrFd: string): Promise<UserInfo | undefined> {
    return this.call("find", [room, userIdOrFd]);
  }
  removeOwner(owner: string): Promise<UserInfo[]> {
    return this.call("removeOwner", [owner]);
  }
  roomCounts(): Promise<RoomCounts[]> {
    return this.call("roomCounts", []);
  }
  roomConnections(room: string): Promise<PresenceConnection[]> {
    return this.call("roomConnections", [room]);
  }
  stats(): Promise<{ connections: number; users: number }> {
    return this.call("stats", []);
  }
  async close(): Promise<void> {
    this.rpc.close();
  }
}
