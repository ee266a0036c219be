import type { UserInfo } from "../chat/protocol.js";
import type { PrimaryToWorker, WorkerToPrimary } from "../cluster/ipc-messages.js";
import { isOurs } from "../cluster/ipc-messages.js";
import type {
  JoinResult,
  LeaveResult,
  PresenceConnection,
  PresenceSnapshot,
  PresenceStore,
  RoomCounts,
} from "./presence-store.js";

type Pending = { resolve: (value: unknown) => void; reject: (err: Error) => void };

/**
 * A worker's view of the node's presence store, which lives in the primary
 * (see `servePresence`). Calls travel over the cluster IPC channel, in order.
 */
export class IpcPresenceStore implements PresenceStore {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly onMessage = (msg: unknown) => {
    if (!isOurs<PrimaryToWorker>(msg) || msg.type !== "wws:presence-reply") return;
    const call = this.pending.get(msg.id);
    if (!call) return;
    this.pending.delete(msg.id);
    if (msg.error !== undefined) call.reject(new Error(msg.error));
    else call.resolve(msg.result);
  };

  constructor(private readonly channel: NodeJS.Process = process) {
    channel.on("message", this.onMessage);
  }

  private call<T>(method: string, args: unknown[]): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (!this.channel.connected || !this.channel.send) {
        reject(new Error("the primary is gone"));
        return;
      }
      const id = this.nextId++;
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      const msg: WorkerToPrimary = { type: "wws:presence-call", id, method, args };
      this.channel.send(msg);
    });
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
    this.channel.off("message", this.onMessage);
    for (const call of this.pending.values()) call.reject(new Error("presence store closed"));
    this.pending.clear();
  }
}

const METHODS = new Set([
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

/** Primary side: answers a worker's presence calls from the node's store. */
export function servePresence(
  store: PresenceStore,
  msg: Extract<WorkerToPrimary, { type: "wws:presence-call" }>,
  reply: (msg: PrimaryToWorker) => void,
): void {
  if (!METHODS.has(msg.method)) {
    reply({ type: "wws:presence-reply", id: msg.id, error: `unknown method ${msg.method}` });
    return;
  }
  const fn = (store as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[
    msg.method
  ];
  fn.apply(store, msg.args).then(
    (result) => reply({ type: "wws:presence-reply", id: msg.id, result }),
    (err: unknown) => reply({ type: "wws:presence-reply", id: msg.id, error: String(err) }),
  );
}
