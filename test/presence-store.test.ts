/**
 * The presence store suite (test/support/presence-suite.ts) run against the memory store and the
 * Redis store, plus the Redis store's own features (liveness, reaping, resync, prefixes).
 * Needs /usr/bin/redis-server: a private server is started for this file.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import { createClient } from "redis";
import type { UserInfo } from "../src/chat/protocol.js";
import { MemoryPresenceStore } from "../src/presence/memory-presence-store.js";
import type {
  PresenceConnection,
  PresenceEvent,
  PresenceStore,
} from "../src/presence/presence-store.js";
import {
  RedisPresenceStore,
  type RedisPresenceStoreOptions,
} from "../src/presence/redis-presence-store.js";
import { conn, info, presenceSuite, ROOM, until } from "./support/presence-suite.js";
import { type RedisServer, startRedisServer } from "./support/redis-server.js";

/** Receives a Redis store's events as a worker does: a subscription to its channel. */
async function subscribeEvents(
  url: string,
  prefix: string,
  listener: (event: PresenceEvent) => void,
  raw?: (message: string) => void,
): Promise<() => Promise<void>> {
  const sub = createClient({ url });
  sub.on("error", () => {});
  await sub.connect();
  await sub.subscribe(`${prefix}:presence:events`, (message) => {
    raw?.(message);
    const event = JSON.parse(message) as PresenceEvent | { relist: 1 };
    if (!("relist" in event)) listener(event);
  });
  return () => sub.close();
}

let redis: RedisServer;
before(async () => {
  redis = await startRedisServer();
});
after(async () => {
  await redis?.stop();
});

{
  const listeners = new WeakMap<PresenceStore, Set<(event: PresenceEvent) => void>>();
  presenceSuite(
    "MemoryPresenceStore",
    async (shareWith) => {
      if (shareWith) return shareWith;
      const mine = new Set<(event: PresenceEvent) => void>();
      const store = new MemoryPresenceStore((event) => {
        for (const l of mine) l(event);
      });
      listeners.set(store, mine);
      return store;
    },
    async (store, listener) => {
      listeners.get(store)?.add(listener);
      return async () => {
        listeners.get(store)?.delete(listener);
      };
    },
  );
}

// Every Redis store gets its own client (a node of its own); each test its own key prefix.
{
  let tests = 0;
  const prefixes = new WeakMap<PresenceStore, string>();
  presenceSuite(
    "RedisPresenceStore",
    async (shareWith) => {
      const prefix = (shareWith && prefixes.get(shareWith)) ?? `suite-${++tests}`;
      const store = new RedisPresenceStore({ client: redis.url, prefix, nodeId: "test" });
      prefixes.set(store, prefix);
      return store;
    },
    (store, listener) => subscribeEvents(redis.url, `${prefixes.get(store)}`, listener),
  );
}

describe("RedisPresenceStore", () => {
  const stores: RedisPresenceStore[] = [];
  const clients: { isOpen: boolean; close(): Promise<void> }[] = [];
  let tests = 0;
  let prefix: string;

  const makeStore = (options: Partial<RedisPresenceStoreOptions> = {}) => {
    const store = new RedisPresenceStore({ client: redis.url, prefix, nodeId: "n1", ...options });
    stores.push(store);
    return store;
  };
  const makeClient = async () => {
    const client = createClient({ url: redis.url });
    client.on("error", () => {});
    clients.push(client);
    await client.connect();
    return client;
  };

  beforeEach(() => {
    prefix = `redis-${++tests}`;
  });
  afterEach(async () => {
    await Promise.all(stores.splice(0).map((s) => s.close()));
    await Promise.all(clients.splice(0).map((c) => (c.isOpen ? c.close() : undefined)));
  });

  it("reaps an owner whose heartbeat stopped, once across racing reapers, sparing live ones", async () => {
    const reapers = [
      makeStore({ ownerTtlSeconds: 1 }),
      makeStore({ ownerTtlSeconds: 1 }),
      makeStore({ ownerTtlSeconds: 1 }),
    ];
    const [live, dead] = reapers;
    const liveConns = [conn("a1", "u1", { owner: "n1/1" }), conn("c1", "u3", { owner: "n1/1" })];
    live.startHeartbeat("n1/1", { connections: () => liveConns, intervalMs: 100 });
    for (const c of liveConns) await live.join(c);
    // n2/1 joins (which gives it a 1 s liveness key) and never beats.
    const b1 = conn("b1", "u2", { owner: "n2/1" });
    await dead.join(conn("a2", "u1", { owner: "n2/1" }));
    await dead.join(b1);
    assert.deepEqual(await live.reapExpired(), [], "nothing expired yet");

    const reaped: UserInfo[] = [];
    await until("n2/1 to be reaped", async () => {
      const results = await Promise.all(reapers.map((s) => s.reapExpired()));
      reaped.push(...results.flat());
      return reaped.length > 0 ? true : undefined;
    });
    assert.deepEqual(reaped, [info(b1)], "u2 offline, returned once; u1 still has a tab");
    assert.deepEqual((await Promise.all(reapers.map((s) => s.reapExpired()))).flat(), []);
    // More than a TTL went by: the heartbeat kept n1/1 alive.
    assert.deepEqual(await dead.list(ROOM), [info(liveConns[0]), info(liveConns[1])]);
    assert.deepEqual(await dead.stats(), { connections: 2, users: 2 });
  });

  it("heartbeat() reports a lost owner; resync() rewrites its entries", async () => {
    const store = makeStore();
    const admin = await makeClient();
    const owner = "n1/7";
    const conns = [
      conn("a1", "u1", { owner }),
      conn("b1", "u2", { owner }),
      conn("a2", "u1", { owner }),
    ];
    assert.equal(await store.heartbeat(owner), false, "first beat: nothing known yet");
    assert.equal(await store.heartbeat(owner), true);
    for (const c of conns) await store.join(c);
    assert.equal(await store.heartbeat(owner, 3), true);
    assert.equal(await store.heartbeat(owner, 2), false, "count differs");

    await admin.flushAll();
    assert.deepEqual(await store.list(ROOM), []);
    assert.equal(await store.heartbeat(owner, 3), false, "flushed");
    await store.resync(owner, conns);
    assert.deepEqual(await store.list(ROOM), [info(conns[0]), info(conns[1])]);
    assert.deepEqual(await store.stats(), { connections: 3, users: 2 });
    assert.equal(await store.heartbeat(owner, 3), true);

    // Resync drops what the owner no longer has and keeps the rest in place.
    await store.join(conn("c1", "u3", { owner: "n2/1" }));
    await store.resync(owner, [conns[1], conns[2]]);
    assert.deepEqual(await store.list(ROOM), [
      info(conns[2]),
      info(conns[1]),
      info(conn("c1", "u3")),
    ]);
    assert.equal(await store.find(ROOM, "a1"), undefined);
    await store.resync(owner, []);
    assert.deepEqual(await store.list(ROOM), [info(conn("c1", "u3"))]);
    assert.deepEqual(await store.stats(), { connections: 1, users: 1 });
  });

  it("startHeartbeat() restores the owner's entries after a FLUSH and after a Redis restart", async () => {
    const store = makeStore();
    const admin = await makeClient();
    const owner = store.ownerId(1234);
    assert.equal(owner, "n1/1234");
    const live = new Map<string, PresenceConnection>();
    let resyncs = 0;
    store.startHeartbeat(owner, {
      connections: () => [...live.values()],
      intervalMs: 100,
      onResync: () => resyncs++,
    });
    for (const c of [conn("a1", "u1", { owner }), conn("b1", "u2", { owner })]) {
      live.set(c.fd, c);
      await store.join(c);
    }
    const expected = [...live.values()].map(info);
    const restored = () =>
      until("the owner's entries to be rewritten", async () => {
        const listed = await store.list(ROOM);
        return listed.length === expected.length ? listed : undefined;
      });

    await admin.flushAll();
    assert.deepEqual(await restored(), expected);

    const before = resyncs;
    await redis.restart();
    assert.deepEqual(await restored(), expected);
    assert.ok(resyncs > before);
    assert.deepEqual(await store.stats(), { connections: 2, users: 2 });
  });

  it("resync after Redis lost its data puts users back silently and asks for fresh lists", async () => {
    const store = makeStore();
    const admin = await makeClient();
    const owner = "n1/8";
    const conns = [conn("a1", "u1", { owner }), conn("b1", "u2", { owner })];
    await store.resync(owner, []);
    for (const c of conns) await store.join(c);
    const before = (await store.snapshot(ROOM)).version;
    const events: PresenceEvent[] = [];
    const raw: string[] = [];
    const stop = await subscribeEvents(
      redis.url,
      prefix,
      (e) => events.push(e),
      (m) => raw.push(m),
    );
    try {
      await admin.flushAll();
      await store.resync(owner, conns);
      await until("the relist notice", async () => (raw.length > 0 ? true : undefined));
      assert.deepEqual(raw, ['{"relist":1}'], "no 202 for users who never left");
      const after = await store.snapshot(ROOM);
      assert.deepEqual(after.userList, conns.map(info));
      assert.ok(after.version > before, "the version still moves on past the lost one");
      // The next real change is announced as usual, above the rebuilt list's version.
      await store.join(conn("c1", "u3", { owner }));
      await until("the 202", async () => (events.length > 0 ? true : undefined));
      assert.equal(events[0].version, after.version + 1);
    } finally {
      await stop();
    }
  });

  it("resync of an owner reaped while alive announces the users it puts back", async () => {
    const store = makeStore();
    const owner = "n1/9";
    const a1 = conn("a1", "u1", { owner });
    await store.resync(owner, []);
    await store.join(a1);
    const events: PresenceEvent[] = [];
    const stop = await subscribeEvents(redis.url, prefix, (e) => events.push(e));
    try {
      await store.removeOwner(owner);
      await store.resync(owner, [a1]);
      await until("203 then 202", async () => (events.length >= 2 ? true : undefined));
      assert.deepEqual(
        events.map((e) => [e.action, e.user.userId]),
        [
          [203, "u1"],
          [202, "u1"],
        ],
      );
      // The room emptied in between: it starts again above its old versions.
      assert.ok(events[1].version > events[0].version);
    } finally {
      await stop();
    }
  });

  it("announceGone() sends a lost leave's 203 with a version, only if the user is offline", async () => {
    const store = makeStore();
    const events: PresenceEvent[] = [];
    const stop = await subscribeEvents(redis.url, prefix, (e) => events.push(e));
    try {
      const a1 = conn("a1", "u1");
      await store.join(a1);
      assert.equal(await store.announceGone(info(conn("a0", "u1"))), false, "u1 is online");
      await store.join(conn("b1", "u2"));
      await store.leave("b1");
      assert.equal(await store.announceGone(info(conn("b0", "u2"))), true);
      await until("3 events", async () => (events.length >= 3 ? true : undefined));
      assert.deepEqual(
        events.map((e) => [e.action, e.user.userId, e.version - events[0].version]),
        [
          [202, "u1", 0],
          [202, "u2", 1],
          [203, "u2", 2],
        ],
      );
      await until("the lost leave's 203", async () => (events.length >= 4 ? true : undefined));
      assert.deepEqual([events[3].action, events[3].user.fd], [203, "b0"]);
      assert.equal(events[3].version, events[2].version + 1);
    } finally {
      await stop();
    }
  });

  it("removeNode() removes every owner of the node, and only those", async () => {
    const store = makeStore({ nodeId: "n1" });
    const u1 = [conn("a1", "u1", { owner: "n1/1" }), conn("a2", "u1", { owner: "n1/2" })];
    const u2 = [conn("b1", "u2", { owner: "n1/1" }), conn("b2", "u2", { owner: "n2/1" })];
    const u3 = conn("c1", "u3", { owner: "n10/1" });
    const u4 = conn("d1", "u4", { owner: "n1/2" });
    for (const c of [...u1, ...u2, u3, u4]) await store.join(c);
    const other = makeStore({ nodeId: "n2" });
    assert.deepEqual(await other.removeNode("n3"), []);
    const offline = await Promise.all([store.removeNode(), other.removeNode("n1")]);
    // Which of u1's two fds is reported depends on the order owners are removed in: compare users.
    const users = offline.flat().map((u) => `${u.room}/${u.userId}`);
    assert.deepEqual(users.sort(), [`${ROOM}/u1`, `${ROOM}/u4`]);
    assert.deepEqual(await store.list(ROOM), [info(u2[1]), info(u3)]);
  });

  it("prefixes keep deployments sharing one Redis apart", async () => {
    const blue = makeStore({ prefix: `${prefix}-blue` });
    const green = makeStore({ prefix: `${prefix}-green` });
    const a = conn("a1", "u1");
    const b = conn("b1", "u2");
    assert.equal((await blue.join(a)).first, true);
    assert.equal((await green.join(a)).first, true, "same fd, other deployment");
    await green.join(b);
    assert.deepEqual(await blue.list(ROOM), [info(a)]);
    assert.deepEqual(await green.list(ROOM), [info(a), info(b)]);
    assert.deepEqual(await blue.removeNode("n1"), [info(a)]);
    assert.deepEqual(await green.stats(), { connections: 2, users: 2 });
    assert.deepEqual(await blue.stats(), { connections: 0, users: 0 });
  });

  it("queues each announced change once for webhooks while they are enabled, bounded", async () => {
    const client = await makeClient();
    const store = makeStore();
    const queue = `${prefix}:webhooks:queue`;
    await store.join(conn("a0", "u0"));
    assert.equal(await client.lLen(queue), 0, "webhooks off: nothing queued");
    await client.hSet(`${prefix}:webhooks:cfg`, { cap: "3", messages: "0" });
    await store.join(conn("a1", "u1"));
    await store.join(conn("a2", "u1"));
    await store.leave("a1");
    await store.leave("a2");
    const entries = (await client.lRange(queue, 0, -1))
      .reverse()
      .map((e) => JSON.parse(e) as { n: number; t: number; p: PresenceEvent });
    // Two tabs, one user: one 202 and one 203, numbered, stamped with Redis's time.
    assert.deepEqual(
      entries.map((e) => [e.n, e.p.action, e.p.user.userId, e.p.count]),
      [
        [1, 202, "u1", 2],
        [2, 203, "u1", 1],
      ],
    );
    assert.ok(entries.every((e) => Math.abs(e.t - Date.now()) < 60_000));
    // Full: the oldest go, counted.
    for (const id of ["b1", "b2", "b3"]) await store.join(conn(id, id));
    assert.deepEqual(
      (await client.lRange(queue, 0, -1)).map((e) => (JSON.parse(e) as { n: number }).n),
      [5, 4, 3],
    );
    assert.equal(await client.get(`${prefix}:webhooks:dropped`), "2");
  });

  it("uses a client it is given without closing it, and rejects calls once closed", async () => {
    const client = await makeClient();
    const store = makeStore({ client });
    assert.equal((await store.join(conn("a1", "u1"))).first, true);
    await store.close();
    await store.close();
    assert.equal(await client.ping(), "PONG");
    await assert.rejects(store.list(ROOM), /closed/);
    assert.throws(() => store.startHeartbeat("n1/1", { connections: () => [] }), /closed/);
  });

  it("rejects with Redis's error instead of throwing", async () => {
    const client = await makeClient();
    const store = makeStore({ client });
    await client.hSet(`${prefix}:presence:seq`, "not", "a counter");
    await assert.rejects(store.join(conn("a1", "u1")), /WRONGTYPE/);
  });

  it("refuses a nodeId that would make owner names ambiguous", () => {
    assert.throws(() => new RedisPresenceStore({ client: redis.url, nodeId: "a/b" }), /nodeId/);
    assert.throws(() => new RedisPresenceStore({ client: redis.url, nodeId: "" }), /nodeId/);
  });
});
