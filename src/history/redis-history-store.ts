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
}

export interface RedisHistoryStoreOptions extends HistoryOptions {
  /**
   * A connected node-redis client, used and never closed by the store. Give it
   * `disableOfflineQueue`: an append must fail while Redis is away, not wait and run later.
   */
  client: HistoryRedisClient;
  /** Namespace of every key and channel (`<prefix>:history:…`). @default "weigot-ws" */
  prefix?: string;
}

const lenKey = (s: string) => `${s.length}:${s}`;

/**
 * History shared by every node through Redis (Streams, `XADD … MAXLEN ~`): see
 * redis-history-scripts.ts for the layout. Appends are published by their script on
 * {@link RedisHistoryStore.channel}; subscribe to it and pass what arrives to {@link parseDelivery}.
 */
export class RedisHistoryStore implements HistoryStore {
  readonly channel: string;
  private readonly base: string;
  private closed = false;

  constructor(private readonly opts: RedisHistoryStoreOptions) {
    this.base = `${opts.prefix ?? "weigot-ws"}:history`;
    this.channel = `${this.base}:messages`;
  }

  async append(req: AppendRequest): Promise<AppendResult> {
    const users = req.inboxes ?? [];
    const reply = (await this.eval(scripts.APPEND, [
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
    return this.read("seq", "log", lenKey(room), after, limit);
  }

  inbox(
    room: string,
    userId: string,
    after: number | undefined,
    limit: number,
  ): Promise<HistoryRange> {
    return this.read("pseq", "inbox", `${lenKey(room)}:${lenKey(userId)}`, after, limit);
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private async read(
    counter: string,
    log: string,
    key: string,
    after: number | undefined,
    limit: number,
  ): Promise<HistoryRange> {
    const reply = (await this.eval(scripts.RANGE, [
      counter,
      log,
      key,
      after === undefined ? "" : String(Math.max(0, Math.floor(after))),
      String(limit),
    ])) as [number, number, ...string[]];
    const [last, first, ...entries] = reply;
    return { last, first, messages: entries.map((e) => JSON.parse(e) as Envelope) };
  }

  private eval(script: string, args: string[]): Promise<unknown> {
    if (this.closed) return Promise.reject(new Error("RedisHistoryStore is closed"));
    return this.opts.client.sendCommand(["EVAL", script, "0", this.base, ...args]);
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
