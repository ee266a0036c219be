/**
 * The "nothing lost" scenarios' traffic and verdict: senders (ResilientClient) send numbered
 * texts, some of them privately, retrying each until acked; once the disruption is over every
 * client must hold every acked message exactly once, at its acked number, with no gap, and
 * nothing that was never acked.
 */
import type { Envelope } from "../../src/chat/protocol.js";
import { type ResilientClient, waitFor } from "./resilient-client.js";

export interface Traffic {
  /** Stops sending new messages; resolves once every sender's last message is acked or given up. */
  stop(): Promise<void>;
  /** Texts given to send() so far. */
  started(): number;
}

export interface TrafficOptions {
  /** Pause between one sender's messages (each waits for its ack first). @default 100 */
  intervalMs?: number;
  /** Every `privateEvery`-th message of a sender goes privately to `privateTo`. */
  privateEvery?: number;
  privateTo?: string;
}

/** Each sender sends `<userId>#<i>`, one after the other, until stopped. */
export function startTraffic(senders: ResilientClient[], opts: TrafficOptions = {}): Traffic {
  let stopped = false;
  let started = 0;
  const loops = senders.map(async (s) => {
    for (let i = 0; !stopped; i++) {
      started++;
      const priv =
        opts.privateTo !== undefined &&
        opts.privateEvery !== undefined &&
        i % opts.privateEvery === 0;
      await s.send(`${s.identity.userId}#${i}`, priv ? { to: opts.privateTo } : {});
      await new Promise((r) => setTimeout(r, opts.intervalMs ?? 100));
    }
  });
  return {
    started: () => started,
    stop: async () => {
      stopped = true;
      await Promise.all(loops);
    },
  };
}

/** Every acked envelope of the senders, room and private apart. */
function ackedOf(senders: ResilientClient[]): {
  room: Envelope[];
  priv: [ResilientClient, Envelope][];
} {
  const room: Envelope[] = [];
  const priv: [ResilientClient, Envelope][] = [];
  for (const s of senders) {
    for (const e of s.acked.values()) {
      if (e.private) priv.push([s, e]);
      else room.push(e);
    }
  }
  return { room, priv };
}

const holdsAll = (c: ResilientClient, room: Envelope[]) =>
  c.connected && room.every((e) => c.texts.has(textOf(e)));

/** Waits until every client is connected and holds every acked room message. */
export async function settle(
  clients: ResilientClient[],
  senders: ResilientClient[],
  timeoutMs = 20_000,
): Promise<void> {
  const { room } = ackedOf(senders);
  await waitFor(
    () => clients.every((c) => holdsAll(c, room)),
    `every client connected and holding the ${room.length} acked room messages (${clients.filter((c) => holdsAll(c, room)).length}/${clients.length} do)`,
    timeoutMs,
  ).catch(() => {
    // The verdict says what is missing, precisely.
  });
}

export interface Verdict {
  counts: Record<string, number>;
  /** Every breach, one line each (empty when the contract held). */
  problems: string[];
}

/**
 * Checks every client against the senders' acks: each acked room message held by every client
 * at its seq, with the same text; each acked private one held by both its users; no other
 * message held; no duplicate, gap, late replay or unnumbered message seen on the way.
 */
export function verdict(
  clients: ResilientClient[],
  senders: ResilientClient[],
  opts: { numbersRestart?: boolean } = {},
): Verdict {
  const { room, priv } = ackedOf(senders);
  const problems: string[] = [];
  const ackedTexts = new Set([...room, ...priv.map(([, e]) => e)].map(textOf));
  const seqs = new Set<number>();
  for (const e of room) {
    if (typeof e.seq !== "number") problems.push(`ack of "${textOf(e)}" has no seq`);
    // Numbered again from 1 (history lost): two acks may share a seq, in different runs.
    else if (seqs.has(e.seq) && !opts.numbersRestart) problems.push(`seq ${e.seq} acked twice`);
    else seqs.add(e.seq);
  }
  let missing = 0;
  let received = 0;
  for (const c of clients) {
    const who = c.identity.userId;
    for (const b of c.breaches) {
      if (opts.numbersRestart && b.kind === "lost-history" && / from 1 /.test(b.detail)) continue;
      problems.push(`${who}: ${b.kind} (${b.stream}): ${b.detail}`);
    }
    for (const e of room) {
      const held = c.texts.get(textOf(e)) ?? [];
      if (held.length === 0) {
        missing++;
        if (missing <= 20) problems.push(`${who}: acked #${e.seq} "${textOf(e)}" never received`);
      } else if (held.length > 1 || held[0].seq !== e.seq) {
        problems.push(
          `${who}: "${textOf(e)}" acked as #${e.seq}, received as ${held.map((h) => `#${h.seq}`)}`,
        );
      }
    }
    for (const [text, held] of c.texts) {
      received += held.length;
      if (!ackedTexts.has(text)) problems.push(`${who}: received "${text}", never acked`);
    }
  }
  for (const [sender, e] of priv) {
    const to = e.data.content.to ?? "";
    // Every tab of both users holds it once.
    for (const c of clients.filter((x) => x.identity.userId === to || x === sender)) {
      const copies = (c.texts.get(textOf(e)) ?? []).filter((h) => h.private);
      if (copies.length !== 1) {
        problems.push(
          `${c.identity.userId}: private "${textOf(e)}" held ${copies.length} times (pseqs ${copies.map((h) => h.pseq)})`,
        );
      }
    }
  }
  if (missing > 20) problems.push(`… ${missing} (message, client) pairs missing in all`);
  const sum = (k: "sent" | "acked" | "unavailable" | "timeouts" | "givenUp" | "noRecipient") =>
    senders.reduce((n, s) => n + s.stats[k], 0);
  const refusedTexts = senders.reduce((n, s) => n + s.refusedOnce.size, 0);
  const errors: Record<string, number> = {};
  for (const s of senders) {
    for (const [code, n] of Object.entries(s.stats.otherErrors))
      errors[code] = (errors[code] ?? 0) + n;
  }
  return {
    counts: {
      sent: sum("sent"),
      acked: sum("acked"),
      ackedRoom: room.length,
      ackedPrivate: priv.length,
      refusedAttempts: sum("unavailable"),
      refusedMessages: refusedTexts,
      ackTimeouts: sum("timeouts"),
      ...Object.fromEntries(Object.entries(errors).map(([code, n]) => [`attempts ${code}`, n])),
      givenUp: sum("givenUp"),
      noRecipient: sum("noRecipient"),
      clients: clients.length,
      receivedByAll: received,
      missingPairs: missing,
      reconnects: clients.reduce((n, c) => n + Math.max(0, c.connects - 1), 0),
    },
    problems,
  };
}

function textOf(e: Envelope): string {
  return e.data.content.message ?? "";
}
