/**
 * One suite for every HistoryStore (in-memory, and Redis against a real redis-server): numbering,
 * order of deliveries, ranges, private inboxes, client message ids, expiry of idle rooms.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import { createClient } from "redis";
import type { Envelope } from "../src/chat/protocol.js";
import type { Delivery, HistoryStore } from "../src/history/history-store.js";
import { MemoryHistoryStore } from "../src/history/memory-history-store.js";
import { parseDelivery, RedisHistoryStore } from "../src/history/redis-history-store.js";
import { type RedisServer, startRedisServer } from "./support/redis-server.js";
import { waitUntil } from "./support/service.js";

interface Harness {
  /** Another handle on the same history (another node, for Redis). */
  store(): HistoryStore;
  /** Every delivery so far, in the order the store made them. */
  deliveries: Delivery[];
  close(): Promise<void>;
}
type MakeHarness = (opts: { size: number; ttlSeconds: number }) => Promise<Harness>;

const msg = (text: string): Envelope => ({
  action: 300,
  data: { type: "text", content: { message: text } },
  endTime: "2026-12-01 00:00:00",
  sendTime: "2026-12-01 00:00:00",
  id: `id-${text}`,
  ts: 1,
});
const texts = (list: Envelope[]) => list.map((e) => e.data.content.message);

function historySuite(name: string, make: MakeHarness): void {
  describe(`HistoryStore: ${name}`, () => {
    let h: Harness;
    let store: HistoryStore;
    const delivered = (n: number) =>
      waitUntil(() => h.deliveries.length >= n, `${n} deliveries`, 5000);
    beforeEach(async () => {
      h = await make({ size: 5, ttlSeconds: 3600 });
      store = h.store();
    });
    afterEach(() => h.close());

    it("numbers a room's messages from 1 and delivers them in that order", async () => {
      const acks = [];
      for (const t of ["a", "b", "c"])
        acks.push(await store.append({ room: "r", envelope: msg(t) }));
      assert.deepEqual(
        acks.map((a) => [a.envelope.seq, a.duplicate]),
        [
          [1, false],
          [2, false],
          [3, false],
        ],
      );
      assert.equal(acks[0].envelope.data.content.message, "a");
      await delivered(3);
      assert.deepEqual(
        h.deliveries.map((d) => [d.room, d.user, d.envelope.seq, d.envelope.data.content.message]),
        [
          ["r", undefined, 1, "a"],
          ["r", undefined, 2, "b"],
          ["r", undefined, 3, "c"],
        ],
      );
      // Another room counts on its own.
      assert.equal((await store.append({ room: "other", envelope: msg("x") })).envelope.seq, 1);
    });

    it("reads after a seq, or the last n, and says what it holds", async () => {
      for (const t of ["a", "b", "c", "d"]) await store.append({ room: "r", envelope: msg(t) });
      const after1 = await store.range("r", 1, 10);
      assert.deepEqual(texts(after1.messages), ["b", "c", "d"]);
      assert.deepEqual([after1.first, after1.last], [1, 4]);
      assert.deepEqual(
        (await store.range("r", 1, 2)).messages.map((e) => e.seq),
        [2, 3],
      );
      assert.deepEqual(texts((await store.range("r", undefined, 2)).messages), ["c", "d"]);
      assert.deepEqual((await store.range("r", 4, 10)).messages, []);
      assert.deepEqual(await store.range("empty", undefined, 10), {
        messages: [],
        first: 0,
        last: 0,
      });
      assert.deepEqual((await store.range("r", undefined, 0)).messages, []);
    });

    it("keeps the last `size` messages; the numbers go on", async () => {
      for (let i = 1; i <= 8; i++) await store.append({ room: "r", envelope: msg(`m${i}`) });
      const all = await store.range("r", 0, 100);
      assert.ok(all.messages.length >= 5, "at least size kept");
      assert.equal(all.last, 8);
      assert.equal(all.messages[all.messages.length - 1].seq, 8);
      assert.equal(all.first, all.messages[0].seq, "first is the oldest held");
      assert.ok(all.first > 1, "the oldest were dropped");
      // Contiguous, in order.
      for (const [i, e] of all.messages.entries()) assert.equal(e.seq, all.first + i);
    });

    it("gives each user of a private message its own pseq, and the sender's view to the ack", async () => {
      const first = await store.append({
        room: "r",
        envelope: msg("p1"),
        inboxes: ["bob", "alice"],
      });
      assert.equal(first.envelope.pseq, 1);
      assert.equal(first.envelope.seq, undefined, "private messages have no room seq");
      await store.append({ room: "r", envelope: msg("p2"), inboxes: ["bob", "carol"] });
      await delivered(4);
      assert.deepEqual(
        h.deliveries.map((d) => [d.user, d.envelope.pseq, d.envelope.data.content.message]),
        [
          ["bob", 1, "p1"],
          ["alice", 1, "p1"],
          ["bob", 2, "p2"],
          ["carol", 1, "p2"],
        ],
      );
      const bob = await store.inbox("r", "bob", 0, 10);
      assert.deepEqual(texts(bob.messages), ["p1", "p2"]);
      assert.deepEqual([bob.first, bob.last], [1, 2]);
      assert.deepEqual(texts((await store.inbox("r", "bob", 1, 10)).messages), ["p2"]);
      assert.deepEqual(texts((await store.inbox("r", "alice", undefined, 10)).messages), ["p1"]);
      // The room's own sequence is untouched.
      assert.equal((await store.range("r", undefined, 10)).last, 0);
      // Messages to oneself are kept once.
      await store.append({ room: "r", envelope: msg("self"), inboxes: ["dave", "dave"] });
      assert.equal((await store.inbox("r", "dave", 0, 10)).messages.length, 1);
    });

    it("answers a repeated client message id with the first envelope, storing nothing", async () => {
      const dedupe = { userId: "alice", cid: "c-1" };
      const once = await store.append({ room: "r", envelope: msg("hello"), dedupe });
      const again = await store.append({ room: "r", envelope: msg("hello again"), dedupe });
      assert.equal(again.duplicate, true);
      assert.deepEqual(again.envelope, once.envelope);
      assert.equal((await store.range("r", 0, 10)).last, 1);
      // The same cid from another user, or in another room, is another message.
      const other = await store.append({
        room: "r",
        envelope: msg("bob's"),
        dedupe: { userId: "bob", cid: "c-1" },
      });
      assert.equal(other.duplicate, false);
      assert.equal(other.envelope.seq, 2);
      const elsewhere = await store.append({ room: "r2", envelope: msg("x"), dedupe });
      assert.equal(elsewhere.duplicate, false);
      // Private messages too: the sender's copy comes back.
      const p = { userId: "alice", cid: "p-1" };
      const sent = await store.append({
        room: "r",
        envelope: msg("psst"),
        inboxes: ["bob", "alice"],
        dedupe: p,
      });
      const resent = await store.append({
        room: "r",
        envelope: msg("psst"),
        inboxes: ["bob", "alice"],
        dedupe: p,
      });
      assert.equal(resent.duplicate, true);
      assert.deepEqual(resent.envelope, sent.envelope);
      assert.equal((await store.inbox("r", "bob", 0, 10)).messages.length, 1);
      await delivered(5);
      await new Promise((r) => setImmediate(r));
      assert.equal(h.deliveries.length, 5, "duplicates are not delivered");
    });

    it("keeps rooms and users with look-alike names apart", async () => {
      await store.append({ room: "a:b", envelope: msg("1") });
      await store.append({ room: "a", envelope: msg("2") });
      await store.append({ room: "a", envelope: msg("3"), inboxes: ["b:c"] });
      await store.append({ room: "a:b", envelope: msg("4"), inboxes: ["c"] });
      assert.deepEqual(texts((await store.range("a:b", 0, 10)).messages), ["1"]);
      assert.deepEqual(texts((await store.range("a", 0, 10)).messages), ["2"]);
      assert.deepEqual(texts((await store.inbox("a", "b:c", 0, 10)).messages), ["3"]);
      assert.deepEqual(texts((await store.inbox("a:b", "c", 0, 10)).messages), ["4"]);
    });

    it("numbers appends racing from two handles exactly once each, delivered in number order", async () => {
      const other = h.store();
      await Promise.all(
        Array.from({ length: 40 }, (_, i) =>
          (i % 2 ? other : store).append({ room: "race", envelope: msg(`m${i}`) }),
        ),
      );
      await delivered(40);
      assert.deepEqual(
        h.deliveries.map((d) => d.envelope.seq),
        Array.from({ length: 40 }, (_, i) => i + 1),
      );
    });
  });

  describe(`HistoryStore: ${name}, idle rooms`, () => {
    it("forgets a room idle for the TTL (its numbers start again)", async () => {
      const h = await make({ size: 5, ttlSeconds: 1 });
      try {
        const store = h.store();
        await store.append({ room: "idle", envelope: msg("old") });
        await waitUntil(
          async () => (await store.range("idle", 0, 10)).last === 0,
          "the idle room to expire",
          5000,
          100,
        );
        assert.equal((await store.append({ room: "idle", envelope: msg("new") })).envelope.seq, 1);
      } finally {
        await h.close();
      }
    });
  });
}

historySuite("MemoryHistoryStore", async (opts) => {
  const deliveries: Delivery[] = [];
  // One store in the primary serves every worker: the "other handle" is the same store.
  const store = new MemoryHistoryStore(opts, (d) => deliveries.push(d));
  return { store: () => store, deliveries, close: () => store.close() };
});

let redis: RedisServer;
before(async () => {
  redis = await startRedisServer();
});
after(async () => {
  await redis?.stop();
});
let prefixes = 0;
historySuite("RedisHistoryStore", async (opts) => {
  const prefix = `hist-${++prefixes}`;
  const deliveries: Delivery[] = [];
  const clients: { close(): Promise<void> }[] = [];
  const client = async () => {
    const c = createClient({ url: redis.url, disableOfflineQueue: true });
    c.on("error", () => {});
    await c.connect();
    clients.push(c);
    return c;
  };
  const sub = await client();
  const probe = new RedisHistoryStore({ ...opts, client: sub, prefix });
  await sub.subscribe(probe.channel, (m) => {
    const d = parseDelivery(m);
    if (d) deliveries.push(d);
  });
  const handles = [await client(), await client()];
  let n = 0;
  return {
    store: () => new RedisHistoryStore({ ...opts, client: handles[n++ % 2], prefix }),
    deliveries,
    close: async () => {
      await Promise.all(clients.map((c) => c.close()));
    },
  };
});

describe("RedisHistoryStore: webhook queue", () => {
  it("queues each message once, a private one as its recipient's copy, only with messages on", async () => {
    const client = createClient({ url: redis.url, disableOfflineQueue: true });
    client.on("error", () => {});
    await client.connect();
    const prefix = `hist-hooks-${++prefixes}`;
    const store = new RedisHistoryStore({ client, prefix, size: 5, ttlSeconds: 3600 });
    const queue = `${prefix}:webhooks:queue`;
    const cfg = `${prefix}:webhooks:cfg`;
    try {
      await store.append({ room: "r", envelope: msg("off") });
      await client.hSet(cfg, { cap: "10", messages: "0" });
      await store.append({ room: "r", envelope: msg("presence only") });
      assert.equal(await client.lLen(queue), 0, "nothing without messages on");
      await client.hSet(cfg, { messages: "1" });
      await store.append({ room: "r", envelope: msg("room") });
      await store.append({ room: "r", envelope: msg("private"), inboxes: ["bob", "alice"] });
      const entries = (await client.lRange(queue, 0, -1))
        .reverse()
        .map((e) => JSON.parse(e) as { n: number; m: Delivery });
      assert.deepEqual(
        entries.map((e) => [e.n, e.m.user, e.m.envelope.data.content.message, e.m.envelope.seq]),
        [
          [1, undefined, "room", 3],
          [2, "bob", "private", undefined],
        ],
      );
    } finally {
      await client.close();
    }
  });
});
