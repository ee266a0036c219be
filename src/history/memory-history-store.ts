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

/** One numbered sequence: a room's messages or a user's private ones in a room. */
interface Log {
  /** The last number given. */
  last: number;
  /** The last `size` messages, oldest first. */
  messages: Envelope[];
  touched: number;
}

const SWEEP_MS = 60_000;

/** What a stopping primary hands to the next start (JSON). */
export interface HistoryDump {
  logs: [string, Log][];
  cids: [string, { envelope: Envelope; at: number }][];
}

/**
 * The node's history in the primary (cluster mode): numbers messages, keeps the last ones per
 * room and per user's private messages, and hands every stored message to `deliver` in order.
 * Idle logs expire after `ttlSeconds`; client message ids after 5 minutes.
 */
export class MemoryHistoryStore implements HistoryStore {
  private readonly logs = new Map<string, Log>();
  private readonly cids = new Map<string, { envelope: Envelope; at: number }>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly opts: HistoryOptions,
    private readonly deliver: (d: Delivery) => void,
    private readonly now: () => number = Date.now,
  ) {
    this.sweeper = setInterval(() => this.sweep(), SWEEP_MS);
    this.sweeper.unref();
  }

  async append(req: AppendRequest): Promise<AppendResult> {
    const cidKey = req.dedupe && `${req.room}\n${req.dedupe.userId}\n${req.dedupe.cid}`;
    const seen = cidKey ? this.cids.get(cidKey) : undefined;
    if (seen && this.now() - seen.at < CID_TTL_MS)
      return { envelope: seen.envelope, duplicate: true };
    let mine: Envelope;
    if (!req.inboxes) {
      const log = this.log(roomLog(req.room));
      mine = { seq: ++log.last, ...req.envelope };
      this.keep(log, mine);
      this.deliver({ room: req.room, envelope: mine });
    } else {
      const users = [...new Set(req.inboxes)];
      mine = req.envelope;
      for (const user of users) {
        const log = this.log(inboxLog(req.room, user));
        const copy: Envelope = { pseq: ++log.last, ...req.envelope };
        this.keep(log, copy);
        this.deliver({ room: req.room, user, envelope: copy });
        // The sender is the last inbox: the ack carries the sender's pseq.
        mine = copy;
      }
    }
    if (cidKey) this.cids.set(cidKey, { envelope: mine, at: this.now() });
    return { envelope: mine, duplicate: false };
  }

  async range(room: string, after: number | undefined, limit: number): Promise<HistoryRange> {
    return this.read(roomLog(room), after, limit);
  }

  async inbox(
    room: string,
    userId: string,
    after: number | undefined,
    limit: number,
  ): Promise<HistoryRange> {
    return this.read(inboxLog(room, userId), after, limit);
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
  }

  /** Everything held, for the next start of the node (see history-file.ts). */
  dump(): HistoryDump {
    const logs: HistoryDump["logs"] = [];
    for (const [key, log] of this.logs) if (!this.expired(log)) logs.push([key, log]);
    const cids: HistoryDump["cids"] = [...this.cids.entries()];
    return { logs, cids };
  }

  /** Takes over what a previous run held (before any append). */
  load(dump: HistoryDump): number {
    let n = 0;
    for (const [key, log] of dump.logs) {
      if (typeof key !== "string" || !Number.isSafeInteger(log?.last)) continue;
      if (!Array.isArray(log.messages) || !Number.isFinite(log.touched)) continue;
      this.logs.set(key, {
        last: log.last,
        messages: this.opts.size === 0 ? [] : log.messages.slice(-this.opts.size),
        touched: log.touched,
      });
      n++;
    }
    for (const [key, seen] of dump.cids) {
      if (typeof key === "string" && Number.isFinite(seen?.at)) this.cids.set(key, seen);
    }
    return n;
  }

  private read(key: string, after: number | undefined, limit: number): HistoryRange {
    const log = this.logs.get(key);
    if (!log || this.expired(log)) return { messages: [], first: 0, last: 0 };
    const all = log.messages;
    const first = all.length === 0 ? 0 : numberOf(all[0]);
    const picked =
      after === undefined
        ? all.slice(Math.max(0, all.length - limit))
        : all.filter((m) => numberOf(m) > after).slice(0, limit);
    return { messages: picked, first, last: log.last };
  }

  private log(key: string): Log {
    let log = this.logs.get(key);
    if (!log || this.expired(log)) {
      log = { last: 0, messages: [], touched: this.now() };
      this.logs.set(key, log);
    }
    log.touched = this.now();
    return log;
  }

  private keep(log: Log, envelope: Envelope): void {
    log.messages.push(envelope);
    if (log.messages.length > this.opts.size) log.messages.shift();
  }

  private expired(log: Log): boolean {
    return this.now() - log.touched > this.opts.ttlSeconds * 1000;
  }

  private sweep(): void {
    for (const [key, log] of this.logs) if (this.expired(log)) this.logs.delete(key);
    const now = this.now();
    for (const [key, seen] of this.cids) if (now - seen.at >= CID_TTL_MS) this.cids.delete(key);
  }
}

const roomLog = (room: string) => `r\n${room}`;
const inboxLog = (room: string, user: string) => `u\n${room}\n${user}`;

function numberOf(e: Envelope): number {
  return e.seq ?? e.pseq ?? 0;
}
