/**
 * One suite for every PresenceStore: the memory store and the Redis store (presence-store.test.ts),
 * and the Redis store on a Redis Cluster (redis-cluster.test.ts).
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import type { UserInfo } from "../../src/chat/protocol.js";
import type {
  PresenceConnection,
  PresenceEvent,
  PresenceStore,
} from "../../src/presence/presence-store.js";
import { seededRandom } from "./seeded-random.js";

/**
 * Makes a store for one test. Without `shareWith`: a fresh, empty store. With it: another handle
 * on the same data, as a second node would have one (the memory store returns the same instance).
 */
export type MakeStore = (shareWith?: PresenceStore) => Promise<PresenceStore>;
/** Starts receiving a store's events (as every worker does); resolves with a stop function. */
export type Subscribe = (
  store: PresenceStore,
  listener: (event: PresenceEvent) => void,
) => Promise<() => Promise<void>>;

export const ROOM = "lobby";

export function conn(
  fd: string,
  userId: string,
  options: { room?: string; owner?: string; admin?: boolean } = {},
): PresenceConnection {
  const c: PresenceConnection = {
    fd,
    userId,
    username: `name of ${userId}`,
    room: options.room ?? ROOM,
    owner: options.owner ?? "n1/1",
  };
  if (options.admin !== undefined) c.admin = options.admin;
  return c;
}

/** What list()/find() should answer for a connection. */
export function info(c: PresenceConnection): UserInfo {
  const user: UserInfo = { fd: c.fd, userId: c.userId, username: c.username, room: c.room };
  if (c.admin) user.admin = true;
  return user;
}

const byFd = (a: UserInfo, b: UserInfo) => `${a.room}/${a.fd}`.localeCompare(`${b.room}/${b.fd}`);
const sorted = (users: UserInfo[]) => [...users].sort(byFd);

function shuffle<T>(items: T[], rand: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Polls `probe` until it returns something other than undefined; fails after the deadline. */
export async function until<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  ms = 5_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export function presenceSuite(name: string, makeStore: MakeStore, subscribe: Subscribe): void {
  describe(`PresenceStore: ${name}`, () => {
    const open: PresenceStore[] = [];
    const stops: (() => Promise<void>)[] = [];
    /** Collects the store's events from now on. */
    const record = async (s: PresenceStore) => {
      const events: PresenceEvent[] = [];
      stops.push(await subscribe(s, (e) => events.push(e)));
      return events;
    };
    /** Waits until `n` events were received (the Redis store's come asynchronously). */
    const received = (events: PresenceEvent[], n: number) =>
      until(`${n} presence events`, async () => (events.length >= n ? events : undefined));
    let store: PresenceStore;
    const make: MakeStore = async (shareWith) => {
      const s = await makeStore(shareWith);
      open.push(s);
      return s;
    };

    beforeEach(async () => {
      store = await make();
    });
    afterEach(async () => {
      await Promise.all(stops.splice(0).map((stop) => stop()));
      await Promise.all(open.splice(0).map((s) => s.close()));
    });

    it("announces each change with the room's version, one more per change", async () => {
      const events = await record(store);
      const [a1, a2, b1] = [conn("a1", "u1"), conn("a2", "u1"), conn("b1", "u2")];
      for (const c of [a1, a2, b1]) await store.join(c);
      await store.leave("a1");
      await store.leave("a2");
      await received(events, 3);
      assert.deepEqual(
        events.map((e) => [e.action, e.user.userId, e.count]),
        [
          [202, "u1", 1],
          [202, "u2", 2],
          [203, "u1", 1],
        ],
      );
      const v = events[0].version;
      assert.ok(Number.isSafeInteger(v) && v > 0, `version ${v}`);
      assert.deepEqual(
        events.map((e) => e.version),
        [v, v + 1, v + 2],
      );
      assert.deepEqual(await store.snapshot(ROOM), {
        userList: [info(b1)],
        total: 1,
        version: v + 2,
      });
    });

    it("snapshot() cuts the list to `limit` but counts every user; an empty room has none", async () => {
      const cs = [conn("a1", "u1"), conn("b1", "u2"), conn("c1", "u3")];
      for (const c of cs) await store.join(c);
      const all = await store.snapshot(ROOM);
      assert.deepEqual(all.userList, cs.map(info));
      assert.equal(all.total, 3);
      const cut = await store.snapshot(ROOM, 2);
      assert.deepEqual(cut, { userList: cs.slice(0, 2).map(info), total: 3, version: all.version });
      assert.deepEqual((await store.snapshot(ROOM, 0)).userList, []);
      assert.equal((await store.snapshot(ROOM, 0)).total, 3);
      assert.deepEqual(await store.snapshot("empty room"), { userList: [], total: 0, version: 0 });
    });

    it("keeps versions per room; a room that empties and fills again starts above them", async () => {
      const events = await record(store);
      await store.join(conn("x1", "u1", { room: "r1" }));
      await store.join(conn("y1", "u2", { room: "r2" }));
      await store.join(conn("y2", "u3", { room: "r2" }));
      await store.leave("x1");
      await store.join(conn("x2", "u1", { room: "r1" }));
      await received(events, 5);
      const r1 = events.filter((e) => e.user.room === "r1").map((e) => e.version);
      const r2 = events.filter((e) => e.user.room === "r2").map((e) => e.version);
      assert.equal(r2[1], r2[0] + 1, "r2 counts its own changes only");
      assert.equal(r1[1], r1[0] + 1);
      assert.ok(r1[2] > r1[1], `refilled r1 starts above its old versions: ${r1}`);
      assert.equal((await store.snapshot("r1")).version, r1[2]);
    });

    it("a snapshot plus the events after its version is the truth, under concurrent churn on two nodes", async (t) => {
      const seed = Date.now();
      t.diagnostic(`seed ${seed}`);
      const rand = seededRandom(seed);
      const other = await make(store);
      const events = await record(store);
      const nodes = [store, other];
      const live = new Set<string>();
      const snapshots: Promise<Awaited<ReturnType<PresenceStore["snapshot"]>>>[] = [];
      const ops: Promise<unknown>[] = [];
      for (let i = 0; i < 400; i++) {
        const node = nodes[Math.floor(rand() * 2)];
        const fd = `f${Math.floor(rand() * 60)}`;
        if (live.has(fd)) {
          live.delete(fd);
          ops.push(node.leave(fd));
        } else {
          live.add(fd);
          // 20 users with up to 3 tabs each.
          ops.push(node.join(conn(fd, `u${Number(fd.slice(1)) % 20}`)));
        }
        if (i % 10 === 0) snapshots.push(nodes[Math.floor(rand() * 2)].snapshot(ROOM));
      }
      await Promise.all(ops);
      const truth = (await store.list(ROOM)).map((u) => u.userId).sort();
      const final = await store.snapshot(ROOM);
      const announced = events.length;
      await until("every event", async () =>
        events.length >= announced && events.at(-1)?.version === final.version ? true : undefined,
      );
      for (const snap of await Promise.all(snapshots)) {
        const view = new Set(snap.userList.map((u) => u.userId));
        for (const e of events) {
          if (e.version <= snap.version) continue;
          if (e.action === 202) view.add(e.user.userId);
          else view.delete(e.user.userId);
        }
        assert.deepEqual([...view].sort(), truth, `from the snapshot at version ${snap.version}`);
      }
    });

    it("join is first once per user and room; leave is last once", async () => {
      const a1 = conn("a1", "u1");
      const a2 = conn("a2", "u1");
      assert.deepEqual(await store.join(a1), { first: true });
      assert.deepEqual(await store.join(a2), { first: false });
      assert.deepEqual(await store.list(ROOM), [info(a1)]);
      assert.deepEqual(await store.leave("a1"), { user: info(a1), last: false });
      assert.deepEqual(await store.list(ROOM), [info(a2)]);
      assert.deepEqual(await store.leave("a2"), { user: info(a2), last: true });
      assert.deepEqual(await store.list(ROOM), []);
      assert.deepEqual(await store.leave("a2"), { last: false });
      assert.deepEqual(await store.stats(), { connections: 0, users: 0 });
    });

    it("joining a known fd again changes nothing", async () => {
      assert.equal((await store.join(conn("a1", "u1"))).first, true);
      assert.equal((await store.join(conn("a1", "u1"))).first, false);
      assert.deepEqual(await store.stats(), { connections: 1, users: 1 });
      assert.equal((await store.leave("a1")).last, true);
    });

    it("lists one entry per user, oldest user first, showing their oldest connection", async () => {
      const [a1, b1, a2, c1, b2] = [
        conn("a1", "u1"),
        conn("b1", "u2"),
        conn("a2", "u1"),
        conn("c1", "u3"),
        conn("b2", "u2"),
      ];
      for (const c of [a1, b1, a2, c1]) await store.join(c);
      assert.deepEqual(await store.list(ROOM), [info(a1), info(b1), info(c1)]);
      // u1 keeps its place; its entry now shows its next-oldest connection.
      await store.leave("a1");
      assert.deepEqual(await store.list(ROOM), [info(a2), info(b1), info(c1)]);
      // u2 goes offline and comes back: now the newest user.
      await store.leave("b1");
      await store.join(b2);
      assert.deepEqual(await store.list(ROOM), [info(a2), info(c1), info(b2)]);
      assert.deepEqual(await store.list("empty room"), []);
    });

    it("counts a room's users and lists at most `limit` of them, oldest first", async () => {
      const [a1, a2, b1, c1] = [
        conn("a1", "u1"),
        conn("a2", "u1"),
        conn("b1", "u2"),
        conn("c1", "u3"),
      ];
      for (const c of [a1, a2, b1, c1]) await store.join(c);
      assert.equal(await store.count(ROOM), 3);
      assert.deepEqual(await store.list(ROOM, 2), [info(a1), info(b1)]);
      assert.deepEqual(await store.list(ROOM, 10), [info(a1), info(b1), info(c1)]);
      assert.deepEqual(await store.list(ROOM, 0), []);
      // Pages: `offset` users skipped, in the same order.
      assert.deepEqual(await store.list(ROOM, 2, 1), [info(b1), info(c1)]);
      assert.deepEqual(await store.list(ROOM, 1, 2), [info(c1)]);
      assert.deepEqual(await store.list(ROOM, 5, 3), []);
      assert.deepEqual(await store.list(ROOM, undefined, 1), [info(b1), info(c1)]);
      await store.leave("b1");
      assert.equal(await store.count(ROOM), 2);
      assert.equal(await store.count("empty room"), 0);
    });

    it("finds a user by userId or by the fd of any of their connections", async () => {
      const [a1, a2, b1] = [conn("a1", "u1"), conn("a2", "u1"), conn("b1", "u2")];
      for (const c of [a1, a2, b1]) await store.join(c);
      assert.deepEqual(await store.find(ROOM, "u1"), info(a1));
      assert.deepEqual(await store.find(ROOM, "a2"), info(a1));
      assert.deepEqual(await store.find(ROOM, "b1"), info(b1));
      assert.equal(await store.find(ROOM, "nobody"), undefined);
      assert.equal(await store.find("elsewhere", "u1"), undefined);
      assert.equal(await store.find("elsewhere", "a1"), undefined);
      await store.leave("a1");
      assert.deepEqual(await store.find(ROOM, "u1"), info(a2));
      assert.equal(await store.find(ROOM, "a1"), undefined);
    });

    it("keeps rooms apart", async () => {
      const x1 = conn("x1", "u1", { room: "r1" });
      const x2 = conn("x2", "u1", { room: "r2" });
      const y2 = conn("y2", "u2", { room: "r2" });
      assert.equal((await store.join(x1)).first, true);
      assert.equal((await store.join(x2)).first, true);
      assert.equal((await store.join(y2)).first, true);
      assert.deepEqual(await store.list("r1"), [info(x1)]);
      assert.deepEqual(await store.list("r2"), [info(x2), info(y2)]);
      assert.deepEqual(await store.stats(), { connections: 3, users: 3 });
      assert.equal((await store.leave("x1")).last, true);
      assert.equal(await store.find("r1", "u1"), undefined);
      assert.deepEqual(await store.find("r2", "u1"), info(x2));
    });

    it("keeps usernames with any characters and the admin flag, and never exposes the owner", async () => {
      const admin = conn("f:1", "id:with:colons", { admin: true, room: "a:b" });
      const plain = conn("f\n2", "ünï😀", { admin: false, room: "a" });
      await store.join(admin);
      await store.join(plain);
      assert.deepEqual(await store.list("a:b"), [info(admin)]);
      assert.deepEqual(await store.list("a"), [info(plain)]);
      const [listed] = await store.list("a");
      assert.equal("owner" in listed, false);
      assert.equal("admin" in listed, false);
      assert.equal((await store.list("a:b"))[0].admin, true);
    });

    it("removeOwner returns the users left without a connection, and only them", async () => {
      const o1 = "n1/1";
      const o2 = "n2/1";
      const a1 = conn("a1", "u1", { owner: o1 });
      const a3 = conn("a3", "u1", { owner: o1, room: "r2" });
      const b1 = conn("b1", "u2", { owner: o1 });
      const b2 = conn("b2", "u2", { owner: o2 });
      const c1 = conn("c1", "u3", { owner: o2 });
      for (const c of [a1, a3, b1, b2, c1]) await store.join(c);
      assert.deepEqual(sorted(await store.removeOwner(o1)), sorted([info(a1), info(a3)]));
      assert.deepEqual(await store.list(ROOM), [info(b2), info(c1)]);
      assert.deepEqual(await store.list("r2"), []);
      assert.deepEqual(await store.removeOwner(o1), []);
      assert.deepEqual(await store.removeOwner("never/seen"), []);
      assert.deepEqual(await store.stats(), { connections: 2, users: 2 });
    });

    it("two tabs joining or leaving at the same moment on two nodes: one first, one last", async () => {
      const other = await make(store);
      for (let cycle = 0; cycle < 50; cycle++) {
        const joins = await Promise.all([
          store.join(conn(`a${cycle}`, "u1", { owner: "n1/1" })),
          other.join(conn(`b${cycle}`, "u1", { owner: "n2/1" })),
        ]);
        assert.equal(joins.filter((r) => r.first).length, 1, `cycle ${cycle}: one first`);
        assert.equal((await other.list(ROOM)).length, 1);
        const leaves = await Promise.all([other.leave(`a${cycle}`), store.leave(`b${cycle}`)]);
        assert.equal(leaves.filter((r) => r.last).length, 1, `cycle ${cycle}: one last`);
        assert.deepEqual(await store.list(ROOM), []);
      }
    });

    it("200 parallel joins then leaves of one user, random order, two nodes", async (t) => {
      const seed = Date.now();
      t.diagnostic(`seed ${seed}`);
      const rand = seededRandom(seed);
      const nodes = [store, await make(store)];
      const pick = () => nodes[Math.floor(rand() * nodes.length)];
      const fds = Array.from({ length: 200 }, (_, i) => `t${i}`);
      for (let cycle = 0; cycle < 5; cycle++) {
        const joins = await Promise.all(
          shuffle(fds, rand).map((fd, i) =>
            pick().join(conn(`${fd}.${cycle}`, "u1", { owner: `n${i % 2}/1` })),
          ),
        );
        assert.equal(joins.filter((r) => r.first).length, 1, `cycle ${cycle}: one first`);
        const listed = await pick().list(ROOM);
        assert.equal(listed.length, 1);
        assert.equal(listed[0].userId, "u1");
        assert.deepEqual(await pick().stats(), { connections: 200, users: 1 });
        const leaves = await Promise.all(
          shuffle(fds, rand).map((fd) => pick().leave(`${fd}.${cycle}`)),
        );
        assert.equal(leaves.filter((r) => r.last).length, 1, `cycle ${cycle}: one last`);
        assert.ok(leaves.every((r) => r.user?.userId === "u1"));
        assert.deepEqual(await pick().list(ROOM), []);
        assert.deepEqual(await pick().stats(), { connections: 0, users: 0 });
      }
    });

    it("interleaved join→leave of 200 tabs of one user: as many firsts as lasts", async (t) => {
      const seed = Date.now();
      t.diagnostic(`seed ${seed}`);
      const rand = seededRandom(seed);
      const nodes = [store, await make(store)];
      const pick = () => nodes[Math.floor(rand() * nodes.length)];
      let firsts = 0;
      let lasts = 0;
      await Promise.all(
        Array.from({ length: 200 }, async (_, i) => {
          for (let n = Math.floor(rand() * 4); n > 0; n--) await tick();
          if ((await pick().join(conn(`t${i}`, "u1"))).first) firsts++;
          for (let n = Math.floor(rand() * 4); n > 0; n--) await tick();
          if ((await pick().leave(`t${i}`)).last) lasts++;
        }),
      );
      assert.ok(firsts >= 1);
      assert.equal(lasts, firsts);
      assert.deepEqual(await store.list(ROOM), []);
      assert.deepEqual(await store.stats(), { connections: 0, users: 0 });
    });

    it("racing removeOwner callers get disjoint results that add up", async () => {
      const racers = [store, await make(store), await make(store), await make(store)];
      const onlyO1: UserInfo[] = [];
      const joins: Promise<unknown>[] = [];
      for (let i = 0; i < 300; i++) {
        const c = conn(`a${i}`, `u${i}`, { owner: "n1/1" });
        joins.push(store.join(c));
        // Every third user also has a tab on another node: not offline.
        if (i % 3 === 0) joins.push(store.join(conn(`b${i}`, `u${i}`, { owner: "n2/1" })));
        else onlyO1.push(info(c));
      }
      await Promise.all(joins);
      const results = await Promise.all(racers.map((s) => s.removeOwner("n1/1")));
      const all = results.flat();
      assert.equal(all.length, onlyO1.length, "each offline user returned exactly once");
      assert.deepEqual(sorted(all), sorted(onlyO1));
      assert.equal((await store.list(ROOM)).length, 100);
    });

    it("lists a room of 10,000 users correctly and quickly", async (t) => {
      const expected: UserInfo[] = [];
      for (let batch = 0; batch < 10; batch++) {
        const joins: Promise<unknown>[] = [];
        for (let i = batch * 1000; i < (batch + 1) * 1000; i++) {
          const c = conn(`f${i}`, `user-${i}`);
          expected.push(info(c));
          joins.push(store.join(c));
          if (i % 10 === 0) joins.push(store.join(conn(`g${i}`, `user-${i}`)));
        }
        await Promise.all(joins);
      }
      const started = performance.now();
      const listed = await store.list(ROOM);
      const ms = performance.now() - started;
      t.diagnostic(`list of 10,000 users: ${ms.toFixed(1)} ms`);
      assert.deepEqual(listed, expected);
      // Generous bound: catches a round trip per user, not a slow machine.
      assert.ok(ms < 1_000, `list took ${ms} ms`);
      assert.deepEqual(await store.stats(), { connections: 11_000, users: 10_000 });
    });

    it("roomCounts() gives each room's users and connections (tabs), by room name", async () => {
      assert.deepEqual(await store.roomCounts(), []);
      const other = await make(store);
      await store.join(conn("a1", "u1", { room: "r:2" }));
      await other.join(conn("a2", "u1", { room: "r:2", owner: "n2/1" }));
      await store.join(conn("b1", "u2", { room: "r:2" }));
      await store.join(conn("c1", "u1", { room: "r1" }));
      await other.join(conn("d1", "ünï😀", { room: "ünï😀" }));
      const expected = [
        { room: "r1", users: 1, connections: 1 },
        { room: "r:2", users: 2, connections: 3 },
        { room: "ünï😀", users: 1, connections: 1 },
      ].sort((a, b) => (a.room < b.room ? -1 : 1));
      assert.deepEqual(await store.roomCounts(), expected);
      assert.deepEqual(await other.roomCounts(), expected);
      await store.leave("a1");
      await store.leave("c1");
      assert.deepEqual(
        await store.roomCounts(),
        expected
          .filter((r) => r.room !== "r1")
          .map((r) => (r.room === "r:2" ? { ...r, connections: 2 } : r)),
      );
    });

    it("roomConnections() lists every tab with its owner, users oldest first, then their tabs", async () => {
      assert.deepEqual(await store.roomConnections(ROOM), []);
      const other = await make(store);
      const a1 = conn("a1", "u1", { owner: "n1/1" });
      const b1 = conn("b1", "u:2", { owner: "n1/1", admin: true });
      const a2 = conn("a2", "u1", { owner: "n2/7" });
      const elsewhere = conn("x1", "u1", { room: "r2" });
      await store.join(a1);
      await other.join(b1);
      await other.join(a2);
      await store.join(elsewhere);
      assert.deepEqual(await store.roomConnections(ROOM), [a1, a2, b1]);
      assert.deepEqual(await other.roomConnections("r2"), [elsewhere]);
      await store.leave("a1");
      // u1's remaining tab keeps u1's place in the list.
      assert.deepEqual(await other.roomConnections(ROOM), [a2, b1]);
      await store.removeOwner("n2/7");
      assert.deepEqual(await store.roomConnections(ROOM), [b1]);
    });

    it("close() is idempotent", async () => {
      await store.close();
      await store.close();
    });
  });
}
