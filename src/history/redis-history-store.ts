import { allGroups, groupPrefix, slotGroup } from "../backend/slot-groups.js";
import type { Envelope } from "../chat/protocol.js";
import {
  type AppendRequest,
  type AppendResult,
  CID_TTL_MS,
  type Delivery,
  type HistoryOptions,
  type HistoryRange,
  type HistoryStore,
} from "./history-store.js";
import * as scripts from "./redis-history-scripts.js";

/** The part of a node-redis client the store uses. */
export interface HistoryRedisClient {
  sendCommand(args: readonly string[]): Promise<unknown>;
  /** Runs the command on the node holding `key`'s slot (a cluster client; see redis-clients.ts). */
  sendCommandFor?(key: string, args: readonly string[]): Promise<unknown>;
}

export interface RedisHistoryStoreOptions extends HistoryOptions {
  /**
   * A connected node-redis client, used and never closed by the store. Give it
   * `disableOfflineQueue`: an append must fail while Redis is away, not wait and run later.
   */
  client: HistoryRedisClient;
  /** Namespace of every key and channel (`<prefix>:history:…`). @default "weigot-ws" */
  prefix?: string;
  /**
   * Redis Cluster: rooms spread over this many slot groups, `<prefix>{<group>}:history:…` (see
   * slot-groups.ts), each with its own channel. 0: the key names of one Redis. @default 0
   */
  slotGroups?: number;
}

const lenKey = (s: string) => `${s.length}:${s}`;

/**
 * History shared by every node through Redis (Streams, `XADD … MAXLEN ~`): see
 * redis-history-scripts.ts for the layout. Appends are published by their script on
 * {@link RedisHistoryStore.channel}; subscribe to it and pass what arrives to {@link parseDelivery}.
 */
export class RedisHistoryStore implements HistoryStore {
  /** The channels the append script publishes on (one per slot group). */
  readonly channels: string[];
  private readonly prefix: string;
  private readonly groups: number;
  private closed = false;

  constructor(private readonly opts: RedisHistoryStoreOptions) {
    this.prefix = opts.prefix ?? "weigot-ws";
    this.groups = opts.slotGroups ?? 0;
    this.channels = allGroups(this.groups).map((g) => `${this.base(g)}:messages`);
  }

  /** The first channel: without slot groups, the only one. */
  get channel(): string {
    return this.channels[0];
  }

  async append(req: AppendRequest): Promise<AppendResult> {
    const users = req.inboxes ?? [];
    const reply = (await this.eval(this.groupOf(req.room), scripts.APPEND, [
      req.room,
      JSON.stringify(req.envelope),
      String(this.opts.size),
      String(this.opts.ttlSeconds),
      req.dedupe?.userId ?? "",
      req.dedupe?.cid ?? "",
      String(users.length),
      ...users,
      String(CID_TTL_MS),
    ])) as [string, number];
    return { envelope: JSON.parse(reply[0]) as Envelope, duplicate: reply[1] === 1 };
  }

  range(room: string, after: number | undefined, limit: number): Promise<HistoryRange> {
    return this.read(room, "seq", "log", lenKey(room), after, limit);
  }

  inbox(
    room: string,
    userId: string,
    after: number | undefined,
    limit: number,
  ): Promise<HistoryRange> {
    return this.read(room, "pseq", "inbox", `${lenKey(room)}:${lenKey(userId)}`, after, limit);
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private async read(
    room: string,
    counter: string,
    log: string,
    key: string,
    after: number | undefined,
    limit: number,
  ): Promise<HistoryRange> {
    const reply = (await this.eval(this.groupOf(room), scripts.RANGE, [
      counter,
      log,
      key,
      after === undefined ? "" : String(Math.max(0, Math.floor(after))),
      String(limit),
    ])) as [number, number, ...string[]];
    const [last, first, ...entries] = reply;
    return { last, first, messages: entries.map((e) => JSON.parse(e) as Envelope) };
  }

  /** `<prefix>:history`, or with slot groups `<prefix>{<group>}:history`: the scripts' B. */
  private base(group: number | undefined): string {
    return `${groupPrefix(this.prefix, group)}:history`;
  }

  private groupOf(room: string): number | undefined {
    return this.groups > 0 ? slotGroup(room, this.groups) : undefined;
  }

  /** Runs a script on the group's keys (on a cluster: the node holding the group's slot). */
  private eval(group: number | undefined, script: string, args: string[]): Promise<unknown> {
    const base = this.base(group);
    return this.send(base, ["EVAL", script, "0", base, ...args]);
  }

  private send(key: string, args: string[]): Promise<unknown> {
    if (this.closed) return Promise.reject(new Error("RedisHistoryStore is closed"));
    const { client } = this.opts;
    return client.sendCommandFor ? client.sendCommandFor(key, args) : client.sendCommand(args);
  }
}

/** A message published on the store's channel, or undefined when it is not one. */
export function parseDelivery(message: string): Delivery | undefined {
  try {
    const d = JSON.parse(message) as Delivery;
    return typeof d.room === "string" && typeof d.envelope === "object" ? d : undefined;
  } catch {
    return undefined;
  }
}
