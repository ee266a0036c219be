/**
 * What a careful chat app does with the delivery contract (README "Nothing lost"), as a test
 * client that also checks it:
 *
 * - reconnects by itself with a short back-off, and its handshake `auth` is a function, so every
 *   (re)connect sends `since` / `sincePrivate` = the highest seq / pseq it holds;
 * - records every room message (300, 101) by `seq` and every private one by `pseq`, and notes
 *   each contract breach as it happens: a number received twice, a gap, a replayed message after
 *   a live one of the same connection, a room message without a seq;
 * - sends through {@link ResilientClient.send}: a `cid` per message, retried with the same cid
 *   until a stored ack comes (after E_UNAVAILABLE, an ack timeout, across reconnects), every
 *   attempt's outcome counted and every acked envelope kept.
 */
import { randomUUID } from "node:crypto";
import { io, type Socket } from "socket.io-client";
import type { Envelope } from "../../src/chat/protocol.js";
import type { ClientOptions } from "./chat-client.js";

export interface Identity {
  userId: string;
  username: string;
  room: string;
}

/** A contract breach seen by one client. */
export interface Breach {
  kind: "duplicate" | "gap" | "replay-after-live" | "unnumbered" | "lost-history";
  stream: "room" | "private";
  detail: string;
}

export interface SendStats {
  /** Messages given to send(). */
  sent: number;
  /** Messages with a stored ack. */
  acked: number;
  /** Attempts answered E_UNAVAILABLE. */
  unavailable: number;
  /** Attempts without an answer in time (cut, reload, or the server died). */
  timeouts: number;
  /** Attempts refused with another code (each code counted). */
  otherErrors: Record<string, number>;
  /** Private messages refused for good: their recipient was offline (E_NO_RECIPIENT). */
  noRecipient: number;
  /** Messages still unacked at their deadline. */
  givenUp: number;
}

interface Numbered {
  /** What this stream received since its numbers last started again, by number. */
  byNumber: Map<number, Envelope>;
  /** The highest number held. */
  top: number;
}

const ACK_TIMEOUT_MS = 2000;
const RETRY_PAUSE_MS = 150;

export class ResilientClient {
  readonly socket: Socket;
  readonly room: Numbered = { byNumber: new Map(), top: 0 };
  readonly private: Numbered = { byNumber: new Map(), top: 0 };
  readonly breaches: Breach[] = [];
  /** 100 envelopes received (drain notices, `recovered: false`, errors). */
  readonly notices: Envelope[] = [];
  /** Every room and private message received (once per number), by text. */
  readonly texts = new Map<string, Envelope[]>();
  /** Acked envelopes of this client's messages, by text. */
  readonly acked = new Map<string, Envelope>();
  /** Texts refused at least once with E_UNAVAILABLE. */
  readonly refusedOnce = new Set<string>();
  readonly stats: SendStats = {
    sent: 0,
    acked: 0,
    unavailable: 0,
    timeouts: 0,
    otherErrors: {},
    noRecipient: 0,
    givenUp: 0,
  };
  connects = 0;
  disconnects = 0;
  /** Whether the current connection has received a live (not replayed) message yet. */
  private liveSeen = false;
  /** Set after the first 201: from then on `since` is sent even when nothing is held (0). */
  private joined = false;
  private closed = false;

  constructor(
    url: string,
    readonly identity: Identity,
    opts: ClientOptions = {},
  ) {
    this.socket = io(url, {
      forceNew: true,
      reconnection: true,
      reconnectionDelay: 100,
      reconnectionDelayMax: 500,
      randomizationFactor: 0.3,
      timeout: 5000,
      ...opts,
      // Called on every (re)connect: the resume point is read then, not when the client was made.
      auth: (cb) => cb(this.resume()),
    });
    this.socket.on("connect", () => {
      this.connects++;
      this.liveSeen = false;
    });
    this.socket.on("disconnect", () => {
      this.disconnects++;
    });
    this.socket.on("message", (e: Envelope) => this.onEnvelope(e));
  }

  /** The handshake's auth: the identity, and where to resume once the room was joined. */
  resume(): Record<string, unknown> {
    const auth: Record<string, unknown> = { ...this.identity };
    if (this.joined) {
      auth.since = this.room.top;
      auth.sincePrivate = this.private.top;
    }
    return auth;
  }

  /** The worker holding the connection now, from the Engine.IO session id (`<worker>.<rand>`). */
  get worker(): number {
    const id = (this.socket.io.engine as unknown as { id?: string } | undefined)?.id ?? "";
    return id === "" ? Number.NaN : Number(id.split(".")[0]);
  }

  get connected(): boolean {
    return this.socket.connected;
  }

  /** Resolves once connected with the handshake done (its 201 received). */
  ready(timeoutMs = 10_000): Promise<void> {
    return waitFor(() => this.joined && this.socket.connected, "connected and joined", timeoutMs);
  }

  private onEnvelope(e: Envelope): void {
    if (e.action === 201) this.joined = true;
    if (e.action === 100) {
      this.notices.push(e);
      const c = e.data.content;
      if (c.recovered === false) {
        const stream = c.stream === "private" ? this.private : this.room;
        this.breaches.push({
          kind: "lost-history",
          stream: c.stream ?? "room",
          detail: `recovered: false, from ${c.from} (held up to ${stream.top}): ${c.message}`,
        });
        // What the app does: the stream goes on from `from` (after a gap, or numbered again).
        if (typeof c.from === "number") {
          stream.byNumber = new Map();
          stream.top = c.from - 1;
        }
      }
      return;
    }
    if (e.action !== 300 && e.action !== 101) return;
    const isPrivate = e.private === true;
    const streamName = isPrivate ? "private" : "room";
    const stream = isPrivate ? this.private : this.room;
    const n = isPrivate ? e.pseq : e.seq;
    const text = e.data.content.message ?? "";
    if (typeof n !== "number") {
      this.breaches.push({ kind: "unnumbered", stream: streamName, detail: text });
      return;
    }
    if (e.replay === true && this.liveSeen) {
      this.breaches.push({
        kind: "replay-after-live",
        stream: streamName,
        detail: `replayed #${n} "${text}" after a live message on connection ${this.connects}`,
      });
    }
    if (e.replay !== true) this.liveSeen = true;
    const held = stream.byNumber.get(n);
    if (held) {
      this.breaches.push({
        kind: "duplicate",
        stream: streamName,
        detail: `#${n} "${text}" again (${e.replay ? "replay" : "live"}; held "${held.data.content.message}")`,
      });
      return;
    }
    if (n !== stream.top + 1) {
      this.breaches.push({
        kind: "gap",
        stream: streamName,
        detail: `#${n} "${text}" after #${stream.top} (${e.replay ? "replay" : "live"}, connection ${this.connects})`,
      });
    }
    stream.byNumber.set(n, e);
    if (n > stream.top) stream.top = n;
    const copies = this.texts.get(text);
    if (copies) copies.push(e);
    else this.texts.set(text, [e]);
  }

  /**
   * Sends a text message (to `to` privately when given) with a fresh cid, retrying with the same
   * cid until the ack carries the stored envelope or `deadlineMs` passes. Resolves with the acked
   * envelope, or undefined when it gave up.
   */
  async send(
    text: string,
    opts: { to?: string; deadlineMs?: number } = {},
  ): Promise<Envelope | undefined> {
    this.stats.sent++;
    const cid = randomUUID();
    const payload: Record<string, unknown> = { type: "text", content: { message: text }, cid };
    if (opts.to !== undefined) payload.to = { userId: opts.to };
    const deadline = Date.now() + (opts.deadlineMs ?? 45_000);
    while (!this.closed && Date.now() < deadline) {
      if (!this.socket.connected) {
        await waitFor(
          () => this.socket.connected || this.closed,
          "connection",
          deadline - Date.now(),
        ).catch(() => {});
        continue;
      }
      let reply: Envelope;
      try {
        reply = (await this.socket
          .timeout(ACK_TIMEOUT_MS)
          .emitWithAck("message", payload)) as Envelope;
      } catch {
        // No ack in time: the cut, reload or crash ate the request or its answer. Same cid again.
        this.stats.timeouts++;
        continue;
      }
      if (reply.action === 100) {
        const code = reply.data.content.error?.code ?? "none";
        if (code === "E_UNAVAILABLE") {
          this.stats.unavailable++;
          this.refusedOnce.add(text);
        } else {
          this.stats.otherErrors[code] = (this.stats.otherErrors[code] ?? 0) + 1;
        }
        // The recipient is offline: final (what an app shows as "not delivered"), not retried.
        if (code === "E_NO_RECIPIENT") {
          this.stats.noRecipient++;
          return undefined;
        }
        const wait = reply.data.content.error?.retryAfterMs ?? RETRY_PAUSE_MS;
        await delay(Math.min(wait, 1000));
        continue;
      }
      if (reply.cid !== cid) {
        this.stats.otherErrors.E_WRONG_ACK = (this.stats.otherErrors.E_WRONG_ACK ?? 0) + 1;
        continue;
      }
      this.stats.acked++;
      this.acked.set(text, reply);
      return reply;
    }
    this.stats.givenUp++;
    return undefined;
  }

  close(): void {
    this.closed = true;
    this.socket.disconnect();
  }
}

/** Polls `check` every 20 ms until it is true; rejects after the deadline. */
export async function waitFor(
  check: () => boolean,
  what: string,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await delay(20);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
