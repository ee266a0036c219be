import { createClient } from "redis";
import { allGroups, groupPrefix, slotGroup } from "../backend/slot-groups.js";
import type { UserInfo } from "../chat/protocol.js";
import { type Heartbeat, type HeartbeatOptions, OwnerHeartbeat } from "./owner-heartbeat.js";
import {
  byRoom,
  type JoinResult,
  type LeaveResult,
  type PresenceConnection,
  type PresenceSnapshot,
  type PresenceStore,
  type RoomCounts,
  toUserInfo,
} from "./presence-store.js";
import * as scripts from "./redis-presence-scripts.js";

/** The part of a node-redis client the store uses: any `createClient()` result fits. */
export interface RedisCommandClient {
  sendCommand(args: readonly string[]): Promise<unknown>;
  /** Runs the command on the node holding `key`'s slot (a cluster client; see redis-clients.ts). */
  sendCommandFor?(key: string, args: readonly string[]): Promise<unknown>;
  /** node-redis emits `ready` on every (re)connection: running heartbeats then beat at once. */
  on?(event: "ready", listener: () => void): unknown;
  off?(event: "ready", listener: () => void): unknown;
}

export interface RedisPresenceStoreOptions {
  /**
   * A node-redis client (connected, or connecting), which the store uses but never closes; or a
   * Redis URL, for which the store creates, connects and, on close(), closes its own client.
   * Commands issued while the client is down wait in node-redis's offline queue.
   */
  client: RedisCommandClient | string;
  /** Namespace of every key (`<prefix>:presence:…`), so deployments can share one Redis. @default "weigot-ws" */
  prefix?: string;
  /** This node's id (no "/"): owners are `<nodeId>/<pid>` (see ownerId()). */
  nodeId: string;
  /** Seconds an owner stays alive without a heartbeat; then reapExpired() removes it. @default 15 */
  ownerTtlSeconds?: number;
  /**
   * Redis Cluster: rooms are spread over this many slot groups, each laid out like one Redis under
   * `<prefix>{<group>}:presence:…` (see slot-groups.ts); every node must use the same number.
   * 0: one layout, the key names of one Redis or Sentinel. @default 0
   */
  slotGroups?: number;
  /**
   * Errors of the client the store created from a URL (`error` events, a failed connect). A client
   * you pass in is yours: attach your own `error` listener. @default ignore
   */
  onError?: (err: Error) => void;
}

/** What close() needs of a client the store created. */
interface OwnClient {
  readonly isReady: boolean;
  close(): Promise<void>;
  destroy(): void;
}

/**
 * Presence shared by every node through Redis. Each operation is one Lua script (see
 * redis-presence-scripts.ts for the key layout), so `first`/`last` are exact across processes.
 *
 * Liveness: every process holding sockets is an "owner" (`<nodeId>/<pid>`) with a liveness key
 * that expires after `ownerTtlSeconds` unless refreshed by {@link startHeartbeat}. Some process
 * (any, several may race) calls {@link reapExpired} periodically and announces 203 for the users it
 * returns. Errors from Redis reject the returned promises; nothing throws asynchronously.
 */
export class RedisPresenceStore implements PresenceStore {
  readonly nodeId: string;
  private readonly client: RedisCommandClient;
  private readonly ownClient: OwnClient | undefined;
  private readonly prefix: string;
  private readonly groups: number;
  /** Slot groups: the group of each fd this store joined, for leave(fd). */
  private readonly fdGroups = new Map<string, number>();
  private readonly ttlMs: number;
  private readonly heartbeats = new Set<Heartbeat>();
  private closing: Promise<void> | undefined;

  constructor(options: RedisPresenceStoreOptions) {
    if (!options.nodeId || options.nodeId.includes("/")) {
      throw new TypeError(`invalid nodeId ${JSON.stringify(options.nodeId)}: empty or has "/"`);
    }
    const ttl = options.ownerTtlSeconds ?? 15;
    if (!(ttl > 0)) throw new TypeError(`invalid ownerTtlSeconds ${ttl}: must be > 0`);
    this.nodeId = options.nodeId;
    this.ttlMs = Math.max(1, Math.round(ttl * 1000));
    this.prefix = options.prefix ?? "weigot-ws";
    this.groups = options.slotGroups ?? 0;
    if (typeof options.client === "string") {
      const onError = options.onError ?? (() => {});
      const client = createClient({ url: options.client });
      // Without a listener an `error` event would crash the process.
      client.on("error", onError);
      // Commands sent before the connection is ready wait in the offline queue.
      client.connect().catch(onError);
      this.ownClient = client;
      this.client = client;
    } else {
      this.client = options.client;
    }
  }

  /** The channels the scripts publish presence events on (one per slot group). */
  get channels(): string[] {
    return allGroups(this.groups).map((g) => `${this.base(g)}:events`);
  }

  /** The owner name of a process of this node. @param pid @default process.pid */
  ownerId(pid: number = process.pid): string {
    return `${this.nodeId}/${pid}`;
  }

  async join(conn: PresenceConnection): Promise<JoinResult> {
    const info = JSON.stringify(toUserInfo(conn));
    const args = [conn.fd, conn.owner, conn.room, conn.userId, info, String(this.ttlMs)];
    const group = this.groupOf(conn.room);
    if (group !== undefined) this.fdGroups.set(conn.fd, group);
    return { first: (await this.eval(group, scripts.JOIN, args)) === 1 };
  }

  async leave(fd: string): Promise<LeaveResult> {
    const known = this.fdGroups.get(fd);
    this.fdGroups.delete(fd);
    // Slot groups and an fd this store did not join: it is in one group at most.
    const groups = known === undefined ? allGroups(this.groups) : [known];
    const replies = (await Promise.all(groups.map((g) => this.eval(g, scripts.LEAVE, [fd])))) as (
      | [string, number]
      | null
    )[];
    const reply = replies.find((r) => r);
    if (!reply) return { last: false };
    return { user: JSON.parse(reply[0]) as UserInfo, last: reply[1] === 1 };
  }

  async list(room: string, limit?: number, offset = 0): Promise<UserInfo[]> {
    // One native command: the scripts keep this sorted set of list entries up to date.
    if (limit !== undefined && limit <= 0) return [];
    const start = Math.max(0, offset);
    const stop = limit === undefined ? "-1" : String(start + limit - 1);
    const key = `${this.base(this.groupOf(room))}:list:${room}`;
    const infos = (await this.send(key, ["ZRANGE", key, String(start), stop])) as string[];
    return JSON.parse(`[${infos.join(",")}]`) as UserInfo[];
  }

  async snapshot(room: string, limit?: number): Promise<PresenceSnapshot> {
    const stop = limit === undefined ? "-1" : String(Math.max(0, limit) - 1);
    if (limit !== undefined && limit <= 0) {
      // ZRANGE 0 -1 would be everything: read the version and count with an empty page instead.
      const { total, version } = await this.snapshot(room, 1);
      return { userList: [], total, version };
    }
    const group = this.groupOf(room);
    const [version, total, infos] = (await this.eval(group, scripts.SNAPSHOT, [room, stop])) as [
      string,
      number,
      string[],
    ];
    return {
      userList: JSON.parse(`[${infos.join(",")}]`) as UserInfo[],
      total,
      version: Number(version),
    };
  }

  /**
   * Announces (203) a user whose leave Redis lost or refused, if they are not online in the room
   * now: through the event stream, with a version, like every other change. Resolves true if sent.
   */
  async announceGone(user: UserInfo): Promise<boolean> {
    const args = [user.room, user.userId, JSON.stringify(user)];
    return (await this.eval(this.groupOf(user.room), scripts.ANNOUNCE_GONE, args)) === 1;
  }

  async count(room: string): Promise<number> {
    const key = `${this.base(this.groupOf(room))}:list:${room}`;
    return (await this.send(key, ["ZCARD", key])) as number;
  }

  async find(room: string, userIdOrFd: string): Promise<UserInfo | undefined> {
    const group = this.groupOf(room);
    const info = (await this.eval(group, scripts.FIND, [room, userIdOrFd])) as string | null;
    return info ? (JSON.parse(info) as UserInfo) : undefined;
  }

  async removeOwner(owner: string): Promise<UserInfo[]> {
    return this.evalUsersEverywhere(scripts.REMOVE_OWNER, [owner, "0"]);
  }

  /**
   * Removes every owner of a node, e.g. at the start of a node that restarts with the same nodeId
   * (its old workers died without cleaning up, and a new worker may even reuse an old pid).
   * Call it before this node's workers join anything: it removes their owners too.
   * @param nodeId @default this.nodeId
   * @returns the users that went offline (one entry per user and room).
   */
  async removeNode(nodeId: string = this.nodeId): Promise<UserInfo[]> {
    return this.evalUsersEverywhere(scripts.REMOVE_NODE, [nodeId]);
  }

  /** The owners of a node that Redis holds (live or not). @param nodeId @default this.nodeId */
  async owners(nodeId: string = this.nodeId): Promise<string[]> {
    const all = await Promise.all(
      allGroups(this.groups).map((g) => {
        const key = `${this.base(g)}:owners`;
        return this.send(key, ["SMEMBERS", key]) as Promise<string[]>;
      }),
    );
    return [...new Set(all.flat())].filter((owner) => owner.startsWith(`${nodeId}/`));
  }

  /**
   * Removes the owners whose liveness key expired (their process died or stalled for a whole TTL).
   * Safe to call from many processes at once: each offline user is returned to exactly one caller,
   * which announces 203. An owner that heartbeats before its turn is spared.
   */
  async reapExpired(): Promise<UserInfo[]> {
    // Slot groups: each group has its own owners and liveness keys, reaped on their own.
    const results = (
      await Promise.allSettled(
        allGroups(this.groups).map(async (g) => {
          const owners = (await this.eval(g, scripts.EXPIRED_OWNERS, [])) as string[];
          return Promise.allSettled(
            owners.map((owner) => this.evalUsers(g, scripts.REMOVE_OWNER, [owner, "1"])),
          );
        }),
      )
    ).flatMap((r) =>
      r.status === "fulfilled" ? r.value : [r as PromiseSettledResult<UserInfo[]>],
    );
    // Users already removed must reach the caller (nobody else will announce them); an owner whose
    // removal failed is still expired and is retried by the next call.
    const offline = results.flatMap((r) => (r.status === "fulfilled" ? r.value : []));
    const failed = results.find((r) => r.status === "rejected");
    if (failed && offline.length === 0) throw failed.reason;
    return offline;
  }

  /**
   * Refreshes the owner's liveness key for another ownerTtlSeconds. Resolves false when Redis had
   * lost the owner (liveness key gone: first beat, expiry, FLUSH, Redis restart) or, when
   * `expectedConnections` is given, holds a different number of its connections: then call
   * {@link resync}. {@link startHeartbeat} does all this on an interval.
   */
  async heartbeat(
    owner: string,
    expectedConnections?: number,
    connections?: PresenceConnection[],
  ): Promise<boolean> {
    const ttl = String(this.ttlMs);
    if (this.groups === 0) {
      const expected = expectedConnections === undefined ? "" : String(expectedConnections);
      return (await this.eval(undefined, scripts.HEARTBEAT, [owner, ttl, expected])) === 1;
    }
    // Slot groups: every group is beaten (and checked, given the connections) on its own.
    const counts = new Map<number, number>();
    for (const c of connections ?? []) {
      const g = this.groupOf(c.room) as number;
      counts.set(g, (counts.get(g) ?? 0) + 1);
    }
    const replies = await Promise.all(
      allGroups(this.groups).map((g) =>
        this.eval(g, scripts.HEARTBEAT, [
          owner,
          ttl,
          connections ? String(counts.get(g as number) ?? 0) : "",
        ]),
      ),
    );
    return replies.every((r) => r === 1);
  }

  /**
   * Makes the owner's entries exactly `conns` (oldest first) and refreshes its liveness: after a
   * Redis outage, FLUSH or restart, or after this owner was reaped while alive. Entries still
   * present keep their place in lists. Announces nothing: it returns no first/last.
   * The command is sent synchronously, so `conns` must be a snapshot taken just before the call.
   */
  async resync(owner: string, conns: PresenceConnection[]): Promise<void> {
    const argsOf = new Map<number | undefined, string[]>();
    for (const g of allGroups(this.groups)) argsOf.set(g, [owner, String(this.ttlMs)]);
    for (const conn of conns) {
      const group = this.groupOf(conn.room);
      if (group !== undefined) this.fdGroups.set(conn.fd, group);
      argsOf.get(group)?.push(conn.fd, conn.room, conn.userId, JSON.stringify(toUserInfo(conn)));
    }
    await Promise.all([...argsOf].map(([g, args]) => this.eval(g, scripts.RESYNC, args)));
  }

  /**
   * Starts refreshing the owner's liveness every `intervalMs` (first beat at once, sent before
   * anything you call afterwards) and resyncing its connections whenever Redis lost some. Also
   * beats on every `ready` of the client (a reconnection). Stopped by close() or the handle.
   */
  startHeartbeat(owner: string, options: HeartbeatOptions): Heartbeat {
    if (this.closing) throw new Error("RedisPresenceStore is closed");
    const intervalMs = options.intervalMs ?? Math.max(10, Math.floor(this.ttlMs / 3));
    const heartbeat = new OwnerHeartbeat(this, owner, { ...options, intervalMs });
    const onReady = () => void heartbeat.beat();
    this.client.on?.("ready", onReady);
    const handle: Heartbeat = {
      beat: () => heartbeat.beat(),
      stop: () => {
        heartbeat.stop();
        this.client.off?.("ready", onReady);
        this.heartbeats.delete(handle);
      },
    };
    this.heartbeats.add(handle);
    return handle;
  }

  async roomCounts(): Promise<RoomCounts[]> {
    const rows = (
      await Promise.all(allGroups(this.groups).map((g) => this.eval(g, scripts.ROOM_COUNTS, [])))
    ).flat() as [string, number, number][];
    return rows.map(([room, users, connections]) => ({ room, users, connections })).sort(byRoom);
  }

  async roomConnections(room: string): Promise<PresenceConnection[]> {
    const group = this.groupOf(room);
    const rows = (await this.eval(group, scripts.ROOM_CONNECTIONS, [room])) as [string, string][];
    return rows.map(([owner, info]) => ({ ...(JSON.parse(info) as UserInfo), owner }));
  }

  async stats(): Promise<{ connections: number; users: number }> {
    const all = (await Promise.all(
      allGroups(this.groups).map((g) => this.eval(g, scripts.STATS, [])),
    )) as [number, number][];
    return {
      connections: all.reduce((n, [c]) => n + c, 0),
      users: all.reduce((n, [, u]) => n + u, 0),
    };
  }

  /** Stops the heartbeats and closes the client if the store created it. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    for (const heartbeat of [...this.heartbeats]) heartbeat.stop();
    const client = this.ownClient;
    if (!client) return;
    try {
      // close() waits for pending commands, which would never come while Redis is unreachable.
      if (client.isReady) await client.close();
      else client.destroy();
    } catch {
      // Already closed: nothing left to release.
    }
  }

  /** `<prefix>:presence`, or with slot groups `<prefix>{<group>}:presence`: the scripts' B. */
  private base(group: number | undefined): string {
    return `${groupPrefix(this.prefix, group)}:presence`;
  }

  private groupOf(room: string): number | undefined {
    return this.groups > 0 ? slotGroup(room, this.groups) : undefined;
  }

  /**
   * Runs a script on the group's keys (on a cluster: on the node holding the group's slot). Sends
   * synchronously (call order = execution order on the connection).
   */
  private eval(group: number | undefined, script: string, args: string[]): Promise<unknown> {
    const base = this.base(group);
    return this.send(base, ["EVAL", script, "0", base, ...args]);
  }

  private send(key: string, args: string[]): Promise<unknown> {
    if (this.closing) return Promise.reject(new Error("RedisPresenceStore is closed"));
    return this.client.sendCommandFor
      ? this.client.sendCommandFor(key, args)
      : this.client.sendCommand(args);
  }

  private async evalUsers(
    group: number | undefined,
    script: string,
    args: string[],
  ): Promise<UserInfo[]> {
    return JSON.parse((await this.eval(group, script, args)) as string) as UserInfo[];
  }

  /** A script that spans rooms, run in every slot group: the users of all of them. */
  private async evalUsersEverywhere(script: string, args: string[]): Promise<UserInfo[]> {
    const all = await Promise.all(
      allGroups(this.groups).map((g) => this.evalUsers(g, script, args)),
    );
    return all.flat();
  }
}
