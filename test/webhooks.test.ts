/**
 * Webhooks (--webhook-url/--webhook-secret) against a real receiver that checks the signature:
 * presence once per user (never per tab), room occupied/vacated, messages only with
 * --webhook-messages, retries until a failing or closed receiver is back (every id acked exactly
 * once), a hanging receiver does not slow chat, a full queue drops its oldest, and in Redis mode
 * two nodes send every event once between them, also after the sending node dies.
 */
import assert from "node:assert/strict";
import { after, afterEach, describe, it } from "node:test";
import type { WebhookEvent } from "../src/webhooks/webhook-event.js";
import { ClientPool } from "./support/chat-client.js";
import { type NodeHandle, startNode } from "./support/cluster-nodes.js";
import { type RedisServer, startRedisServer } from "./support/redis-server.js";
import {
  logged,
  SCRIPTED_RATES,
  type ServiceHandle,
  startService,
  waitUntil,
} from "./support/service.js";
import { WebhookReceiver } from "./support/webhook-receiver.js";

const SECRET = "hook-secret";
const WAIT_MS = 15_000;

const hookArgs = (r: WebhookReceiver, more: string[] = []) => [
  ...SCRIPTED_RATES,
  "--webhook-url",
  r.url,
  "--webhook-secret",
  SECRET,
  ...more,
];

/** Every event id appears once; returns the ids. */
function assertUniqueIds(events: WebhookEvent[]): void {
  const ids = events.map((e) => e.id);
  assert.equal(new Set(ids).size, ids.length, `duplicate ids in ${JSON.stringify(ids)}`);
}

/** "type user" strings of a room's presence events, in arrival order. */
function presenceTrail(events: WebhookEvent[], room: string): string[] {
  return events
    .filter((e) => e.room === room && e.type !== "message")
    .map((e) => (e.type.startsWith("room.") ? e.type : `${e.type} ${e.user?.userId}`));
}

describe("webhooks, cluster mode", { timeout: 120_000 }, () => {
  const pool = new ClientPool();
  let service: ServiceHandle | undefined;
  let receiver: WebhookReceiver | undefined;

  async function setup(more: string[] = []): Promise<[ServiceHandle, WebhookReceiver]> {
    receiver = new WebhookReceiver(SECRET);
    await receiver.open(0);
    service = await startService(hookArgs(receiver, more));
    return [service, receiver];
  }

  afterEach(async () => {
    pool.closeAll();
    await service?.stop();
    await receiver?.close();
    service = undefined;
    receiver = undefined;
  });

  it("announces online/offline once per user (two tabs), occupied and vacated, signed", async () => {
    const [svc, r] = await setup();
    const room = "hooks-presence";
    const tab1 = await pool.connect(svc.url, { username: "alice", room });
    const tab2 = await pool.connect(svc.url, { username: "alice", room });
    const bob = await pool.connect(svc.url, { username: "bob", room });
    await tab1.say("not a webhook without --webhook-messages");
    tab1.close();
    await waitUntil(() => r.acked.some((e) => e.type === "user.online"), "online events", WAIT_MS);
    tab2.close();
    // Two users leaving at once on two workers may be announced either way round: one at a time.
    await waitUntil(() => r.acked.some((e) => e.type === "user.offline"), "alice offline", WAIT_MS);
    bob.close();
    await waitUntil(() => r.acked.some((e) => e.type === "room.vacated"), "room.vacated", WAIT_MS);
    assert.deepEqual(presenceTrail(r.acked, room), [
      "room.occupied",
      "user.online alice",
      "user.online bob",
      "user.offline alice",
      "user.offline bob",
      "room.vacated",
    ]);
    assert.ok(
      r.batches.every((b) => b.signatureOk && b.acked),
      "every batch signed right",
    );
    assert.ok(
      r.batches.every((b) => Number(b.timestamp) > 0),
      "timestamp header",
    );
    assert.equal(r.acked.filter((e) => e.type === "message").length, 0);
    assertUniqueIds(r.acked);
    const online = r.acked.find((e) => e.type === "user.online") as WebhookEvent;
    assert.equal(online.user?.username, "alice");
    assert.equal(online.count, 1);
    assert.ok(Math.abs(online.time - Date.now()) < 60_000, "time is epoch ms");
  });

  it("sends chat messages only with --webhook-messages", async () => {
    const [svc, r] = await setup(["--webhook-messages"]);
    const room = "hooks-messages";
    const alice = await pool.connect(svc.url, { username: "alice", room });
    for (const text of ["one", "two", "three"]) await alice.say(text);
    await waitUntil(
      () => r.acked.filter((e) => e.type === "message").length >= 3,
      "3 message events",
      WAIT_MS,
    );
    const messages = r.acked.filter((e) => e.type === "message");
    assert.deepEqual(
      messages.map((e) => e.envelope?.data.content.message),
      ["one", "two", "three"],
    );
    assert.deepEqual(
      messages.map((e) => e.envelope?.seq),
      [1, 2, 3],
    );
    assert.ok(messages.every((e) => e.room === room && e.user?.userId === "alice"));
    assertUniqueIds(r.acked);
  });

  it("retries a failing receiver (500) and delivers every id once after it recovers", async () => {
    const [svc, r] = await setup(["--webhook-messages"]);
    r.mode = "fail";
    const alice = await pool.connect(svc.url, { username: "alice", room: "hooks-retry" });
    for (const text of ["a", "b", "c"]) await alice.say(text);
    await waitUntil(() => r.failures >= 2, "two failed POSTs", WAIT_MS);
    assert.equal(r.acked.length, 0);
    r.mode = "ok";
    await waitUntil(
      () => r.acked.filter((e) => e.type === "message").length >= 3,
      "the messages after recovery",
      WAIT_MS,
    );
    assertUniqueIds(r.acked);
    assert.deepEqual(
      r.acked.map((e) => e.type),
      ["room.occupied", "user.online", "message", "message", "message"],
    );
    // What failed was sent again with the same ids.
    const ackedIds = new Set(r.acked.map((e) => e.id));
    const failedIds = r.batches.filter((b) => !b.acked).flatMap((b) => b.events.map((e) => e.id));
    assert.ok(failedIds.length > 0 && failedIds.every((id) => ackedIds.has(id)));
    // Logged once the sender has read the 2xx, which may come just after the receiver counted it.
    await waitUntil(
      () => logged(svc.logs, "webhook receiver is back").length > 0,
      "the recovery log line",
      WAIT_MS,
    );
    assert.equal(logged(svc.logs, "webhook receiver is back").length, 1);
  });

  it("keeps events while the receiver is down (closed port) and sends them once it is up", async () => {
    const [svc, r] = await setup();
    await r.close();
    await pool.connect(svc.url, { username: "carol", room: "hooks-down" });
    await waitUntil(
      () => logged(svc.logs, "webhook delivery failed; retrying with back-off").length > 0,
      "the failure logged",
      WAIT_MS,
    );
    await r.open();
    await waitUntil(() => r.acked.length >= 2, "events after the receiver is up", WAIT_MS * 2);
    assert.deepEqual(presenceTrail(r.acked, "hooks-down"), ["room.occupied", "user.online carol"]);
    assertUniqueIds(r.acked);
  });

  it("a hanging receiver does not slow chat", async () => {
    const [svc, r] = await setup(["--webhook-messages"]);
    r.mode = "hang";
    const room = "hooks-hang";
    const alice = await pool.connect(svc.url, { username: "alice", room });
    const bob = await pool.connect(svc.url, { username: "bob", room });
    await waitUntil(() => r.batches.length > 0, "a POST that hangs", WAIT_MS);
    const latencies: number[] = [];
    for (let i = 0; i < 30; i++) {
      const from = bob.mark();
      const t0 = performance.now();
      alice.send({ type: "text", content: { message: `m${i}` } });
      await bob.waitFor((e) => e.data.content.message === `m${i}`, `m${i} at bob`, 2000, from);
      latencies.push(performance.now() - t0);
    }
    const worst = Math.max(...latencies);
    assert.ok(worst < 1000, `worst delivery ${worst.toFixed(0)} ms with a hanging receiver`);
    assert.equal(r.acked.length, 0);
  });

  it("drops the oldest events when the queue is full, counts and logs them once", async () => {
    const [svc, r] = await setup(["--webhook-messages", "--webhook-queue-size", "5"]);
    r.mode = "fail";
    const alice = await pool.connect(svc.url, { username: "alice", room: "hooks-full" });
    for (let i = 1; i <= 10; i++) await alice.say(`m${i}`);
    await waitUntil(
      () => logged(svc.logs, "webhook queue is full: dropping the oldest events").length > 0,
      "the drops logged",
      WAIT_MS,
    );
    r.mode = "ok";
    await waitUntil(() => r.acked.length >= 5, "what was kept", WAIT_MS * 2);
    // 11 changes (alice online, 10 messages) into 5 places: the newest 5 remain.
    assert.deepEqual(
      r.acked.map((e) => e.envelope?.data.content.message),
      ["m6", "m7", "m8", "m9", "m10"],
    );
    await waitUntil(
      () => logged(svc.logs, "webhook events were dropped while the queue was full").length > 0,
      "the burst's total logged",
      WAIT_MS,
    );
    assert.equal(logged(svc.logs, "webhook queue is full: dropping the oldest events").length, 1);
    const [total] = logged(svc.logs, "webhook events were dropped while the queue was full");
    assert.equal(total.dropped, 6);
  });
});

describe("webhooks, Redis mode across 2 nodes", { timeout: 180_000 }, () => {
  const pool = new ClientPool();
  let redis: RedisServer | undefined;
  let nodes: NodeHandle[] = [];
  const receiver = new WebhookReceiver(SECRET);

  after(async () => {
    pool.closeAll();
    await Promise.all(nodes.map((n) => n.stop()));
    await redis?.stop();
    await receiver.close();
  });

  it("every change is sent once by one node, and still after that node dies", async () => {
    await receiver.open(0);
    redis = await startRedisServer();
    const url = redis.url;
    nodes = await Promise.all(
      ["a", "b"].map((nodeId) =>
        startNode({ redisUrl: url, nodeId, args: hookArgs(receiver, ["--webhook-messages"]) }),
      ),
    );
    const [a, b] = nodes;
    const room = "hooks-redis";
    // One user with a tab on each node, one user per node.
    const u1a = await pool.connect(a.url, { username: "u1", room });
    const u1b = await pool.connect(b.url, { username: "u1", room });
    const u2 = await pool.connect(b.url, { username: "u2", room });
    const u3 = await pool.connect(a.url, { username: "u3", room });
    for (let i = 0; i < 5; i++) {
      await u1a.say(`a${i}`);
      await u2.say(`b${i}`);
    }
    for (const c of [u1a, u1b, u2, u3]) c.close();
    await waitUntil(
      () => receiver.acked.some((e) => e.type === "room.vacated"),
      "room.vacated",
      WAIT_MS,
    );
    const events = receiver.acked;
    assertUniqueIds(events);
    assert.ok(receiver.batches.every((x) => x.signatureOk));
    const trail = presenceTrail(events, room);
    for (const user of ["u1", "u2", "u3"]) {
      assert.equal(trail.filter((t) => t === `user.online ${user}`).length, 1, trail.join());
      assert.equal(trail.filter((t) => t === `user.offline ${user}`).length, 1, trail.join());
    }
    assert.equal(trail.filter((t) => t === "room.occupied").length, 1);
    assert.equal(trail.filter((t) => t === "room.vacated").length, 1);
    const texts = events
      .filter((e) => e.type === "message")
      .map((e) => e.envelope?.data.content.message);
    assert.equal(texts.length, 10);
    assert.equal(new Set(texts).size, 10);

    // The sender dies; the other node takes the lease over and sends what follows.
    const sender = [a, b].find(
      (n) => logged(n.logs, "sending the service's webhooks (lease taken)").length > 0,
    );
    assert.ok(sender, "one node holds the lease");
    const survivor = sender === a ? b : a;
    await sender.kill();
    const before = receiver.acked.length;
    await pool.connect(survivor.url, { username: "late", room: "hooks-redis-2" });
    await waitUntil(
      () => receiver.acked.some((e) => e.type === "user.online" && e.user?.userId === "late"),
      "the survivor sends after the lease expired",
      30_000,
    );
    assertUniqueIds(receiver.acked);
    assert.deepEqual(presenceTrail(receiver.acked.slice(before), "hooks-redis-2"), [
      "room.occupied",
      "user.online late",
    ]);
  });
});
