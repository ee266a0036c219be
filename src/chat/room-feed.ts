import type { Delivery, HistoryRange, HistoryStore } from "../history/history-store.js";
import type { Logger } from "../log/logger.js";
import { delivered, messagesReplayed } from "../metrics/metrics.js";
import type { ChatNamespace, ChatSocket } from "./chat-io.js";
import { envelope } from "./envelope.js";
import type { Envelope } from "./protocol.js";
import { Action } from "./protocol.js";
import { roomKey, userKey } from "./rooms.js";

/** Local room of the sockets whose replay is still running: live messages wait for them. */
const REPLAYING = "replaying";

/** Where a client resumes: the last seq (room) and pseq (private) it saw. */
export interface Resume {
  since?: number;
  sincePrivate?: number;
}

interface Replaying {
  socket: ChatSocket;
  /** Forgets the socket should it go before its replay ran (removed after: one per socket). */
  onGone: () => void;
  room: string;
  userId: string;
  queue: Delivery[];
}

/** One numbered stream a worker follows: a room's messages, or one user's private ones. */
interface Stream {
  last: number;
  /** Set while missing messages are being fetched: what arrives meanwhile waits here. */
  waiting?: Delivery[];
}

const numberOf = (e: Envelope) => e.seq ?? e.pseq ?? 0;

export interface RoomFeedOptions {
  nsp: ChatNamespace;
  history: HistoryStore;
  /** Messages replayed to a new connection that gives no `since` (0 = none). */
  historyOnJoin: number;
  /** Most messages a `since` replay may hold (the history's size). */
  replayLimit: number;
  logger: Logger;
}

/**
 * Hands the store's stream of messages to this worker's sockets. Each stream (a room, or a user's
 * private messages in a room) is followed by its numbers: a message that arrives twice is
 * dropped, and one that arrives after a gap (Redis pub/sub lost some while this node's
 * subscription was down) makes the feed fetch the missing ones first, so that every connected
 * client receives every message, in order, once. A connecting client first gets its replay
 * (`since`, or the room's last messages); live messages that arrive meanwhile wait for it.
 */
export class RoomFeed {
  private readonly streams = new Map<string, Stream>();
  private readonly replaying = new Map<ChatSocket, Replaying>();
  private readonly log: Logger;

  constructor(private readonly opts: RoomFeedOptions) {
    this.log = opts.logger.child({ component: "feed" });
  }

  /** An apps reload changed the app's history settings. */
  reconfigure(next: Pick<RoomFeedOptions, "historyOnJoin" | "replayLimit">): void {
    Object.assign(this.opts, next);
  }

  /**
   * Holds live messages for a socket that just joined its rooms, until {@link replay} has run.
   * Call it in the same tick as the join.
   */
  hold(socket: ChatSocket): void {
    const { room, userId } = socket.data.user;
    socket.join(REPLAYING);
    const onGone = () => this.replaying.delete(socket);
    this.replaying.set(socket, { socket, onGone, room, userId, queue: [] });
    socket.once("disconnect", onGone);
  }

  /** Sends the socket what it missed, then the live messages held meanwhile, then lets it go live. */
  async replay(socket: ChatSocket, resume: Resume): Promise<void> {
    const state = this.replaying.get(socket);
    if (!state) return;
    const { room, userId } = state;
    const { replayLimit } = this.opts;
    let out: Envelope[] = [];
    let roomUpTo = Number.POSITIVE_INFINITY;
    let privateUpTo = Number.POSITIVE_INFINITY;
    try {
      const [r, p] = await Promise.all([
        this.read(room, undefined, resume.since, replayLimit),
        this.read(room, userId, resume.sincePrivate, replayLimit),
      ]);
      for (const [part, stream, asked] of [
        [r, "room", resume.since],
        [p, "private", resume.sincePrivate],
      ] as const) {
        if (!part) continue;
        const lost = asked !== undefined && !part.complete;
        if (lost) {
          socket.emit(
            "message",
            envelope(Action.Server, "state", {
              message: `some ${stream === "room" ? "" : "private "}messages after ${asked} are no longer held; the replay starts at ${part.range.first}`,
              recovered: false,
              from: part.range.first,
              stream,
            }),
          );
        }
      }
      roomUpTo = r ? r.range.last : 0;
      privateUpTo = p ? p.range.last : 0;
      out = interleave(r?.range.messages ?? [], p?.range.messages ?? []);
    } catch (err) {
      this.log.warn("replay failed", { room, err: String(err) });
      socket.emit(
        "message",
        envelope(Action.Server, "state", {
          message: "history is unavailable; messages sent before you connected are not replayed",
          recovered: false,
          error: { code: "E_UNAVAILABLE", message: "history is unavailable" },
        }),
      );
      roomUpTo = 0;
      privateUpTo = 0;
    }
    for (const e of out) socket.emit("message", { ...e, replay: true });
    messagesReplayed.inc(out.length);
    this.replaying.delete(socket);
    socket.off("disconnect", state.onGone);
    socket.leave(REPLAYING);
    for (const d of state.queue) {
      const n = numberOf(d.envelope);
      if (n > (d.user === undefined ? roomUpTo : privateUpTo) || n === 0) {
        socket.emit("message", d.envelope);
      }
    }
    this.track(room, undefined, roomUpTo);
    this.track(room, userId, privateUpTo);
  }

  /** A message from the store's stream. */
  deliver(d: Delivery): void {
    const key = streamKey(d);
    if (!this.hasLocal(d)) {
      this.streams.delete(key);
      return;
    }
    const n = numberOf(d.envelope);
    let stream = this.streams.get(key);
    if (!stream) {
      stream = { last: n - 1 };
      this.streams.set(key, stream);
    }
    if (stream.waiting) {
      stream.waiting.push(d);
      return;
    }
    if (n <= stream.last) return;
    if (n === stream.last + 1) {
      stream.last = n;
      this.emit(d);
      return;
    }
    // A gap: fetch what is missing, deliver it and what arrives meanwhile in order.
    stream.waiting = [d];
    void this.fill(d.room, d.user, stream);
  }

  /** After an outage of the stream: every followed stream fetches what it missed. */
  async catchUp(): Promise<void> {
    await Promise.all(
      [...this.streams.entries()].map(([key, stream]) => {
        if (stream.waiting) return Promise.resolve();
        const [room, user] = parseStreamKey(key);
        stream.waiting = [];
        return this.fill(room, user, stream);
      }),
    );
  }

  private async fill(room: string, user: string | undefined, stream: Stream): Promise<void> {
    try {
      const { history, replayLimit } = this.opts;
      const get = (after: number) =>
        user === undefined
          ? history.range(room, after, replayLimit)
          : history.inbox(room, user, after, replayLimit);
      let range = await get(stream.last);
      if (range.last < stream.last) {
        // The numbers started again (Redis came back empty, the room expired): what arrived
        // meanwhile was dropped as already seen. Clients are told, as a reconnecting client
        // whose `since` is beyond the history is, and the stream is followed from its start.
        range = await get(0);
        stream.last = 0;
        this.restarted(room, user, range.first || 1);
      }
      for (const envelope of range.messages) this.step(stream, { room, user, envelope });
    } catch (err) {
      this.log.warn("could not fetch missed messages", { room, err: String(err) });
    }
    const waiting = stream.waiting ?? [];
    stream.waiting = undefined;
    for (const d of waiting.sort((a, b) => numberOf(a.envelope) - numberOf(b.envelope))) {
      // What could not be fetched is skipped: clients see the gap in seq and may reconnect.
      if (numberOf(d.envelope) > stream.last) {
        stream.last = numberOf(d.envelope);
        this.emit(d);
      }
    }
  }

  /** Tells the local clients of a stream that its numbers start again at `from`. */
  private restarted(room: string, user: string | undefined, from: number): void {
    const stream = user === undefined ? "room" : "private";
    const target = user === undefined ? roomKey(room) : userKey(room, user);
    this.opts.nsp.local.to(target).emit(
      "message",
      envelope(Action.Server, "state", {
        message: `the ${stream === "room" ? "room's" : "private"} message numbers started again (history was lost); they go on from ${from}`,
        recovered: false,
        from,
        stream,
      }),
    );
  }

  private step(stream: Stream, d: Delivery): void {
    const n = numberOf(d.envelope);
    if (n <= stream.last) return;
    stream.last = n;
    this.emit(d);
  }

  private track(room: string, user: string | undefined, upTo: number): void {
    const key = streamKey({ room, user });
    const stream = this.streams.get(key);
    if (!stream) this.streams.set(key, { last: upTo });
    else if (!stream.waiting && upTo > stream.last) stream.last = upTo;
  }

  private emit(d: Delivery): void {
    const target = d.user === undefined ? roomKey(d.room) : userKey(d.room, d.user);
    this.opts.nsp.local.to(target).except(REPLAYING).emit("message", d.envelope);
    delivered(this.opts.nsp.adapter.rooms.get(target)?.size ?? 0, d.envelope.ts);
    for (const r of this.replaying.values()) {
      if (r.room === d.room && (d.user === undefined || d.user === r.userId)) r.queue.push(d);
    }
  }

  private hasLocal(d: { room: string; user?: string }): boolean {
    const rooms = this.opts.nsp.adapter.rooms;
    return rooms.has(d.user === undefined ? roomKey(d.room) : userKey(d.room, d.user));
  }

  /**
   * What a connecting client is sent: after `since` when it gave one (everything held), else the
   * last `historyOnJoin`. `complete` is false when messages after `since` were dropped (or the
   * history restarted: the client's `since` is beyond the last number).
   */
  private async read(
    room: string,
    user: string | undefined,
    since: number | undefined,
    limit: number,
  ): Promise<{ range: HistoryRange; complete: boolean } | undefined> {
    const { history, historyOnJoin } = this.opts;
    const get = (after: number | undefined, n: number) =>
      user === undefined ? history.range(room, after, n) : history.inbox(room, user, after, n);
    if (since === undefined) {
      return { range: await get(undefined, historyOnJoin), complete: true };
    }
    let range = await get(since, limit);
    if (range.last < since) {
      // The numbers started again (an idle room expired, Redis lost it): all of it is new.
      range = await get(0, limit);
      return { range, complete: range.last === 0 };
    }
    // first = 0: nothing is held, so nothing after since can be replayed.
    const complete = range.last === since || (range.first > 0 && range.first <= since + 1);
    return { range, complete };
  }
}

/**
 * The room's and the user's private replay in one list, by time, each kept in its own numbered
 * order: `ts` is taken by the sending worker before the store numbers the message, so two
 * workers' messages can be numbered in the opposite order of their `ts` (a sort by `ts` would
 * replay seq 58 before 57).
 */
function interleave(room: Envelope[], own: Envelope[]): Envelope[] {
  const out: Envelope[] = [];
  let i = 0;
  let j = 0;
  while (i < room.length && j < own.length) {
    out.push((own[j].ts ?? 0) < (room[i].ts ?? 0) ? own[j++] : room[i++]);
  }
  return out.concat(room.slice(i), own.slice(j));
}

function streamKey(d: { room: string; user?: string }): string {
  return d.user === undefined ? `r\n${d.room}` : `u\n${d.room}\n${d.user}`;
}

function parseStreamKey(key: string): [string, string | undefined] {
  const [kind, room, user] = key.split("\n");
  return [room, kind === "u" ? user : undefined];
}
