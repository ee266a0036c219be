/**
 * A whole node dies (SIGKILL of its process group: the primary and every worker, so nothing of
 * it runs a disconnect handler or cleans up). The other node's clients must see its users go
 * offline by themselves: once the dead node's liveness keys expire (--node-timeout) and a reaper
 * round runs, exactly one 203 per user reaches every observer, whichever worker it is on.
 * A node restarted with the same --node-id cleans its own stale entries at once instead.
 *
 * Clients connect to each node directly (nginx is tested in multi-node.test.ts).
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import type { Envelope, UserInfo } from "../src/chat/protocol.js";
import { type ChatClient, ClientPool } from "./support/chat-client.js";
import { type NodeHandle, processAlive, startNode } from "./support/cluster-nodes.js";
import { type RedisServer, startRedisServer } from "./support/redis-server.js";
import { waitUntil } from "./support/service.js";

/** --node-timeout of the nodes: a dead node's liveness keys expire within this. */
const NODE_TIMEOUT_S = 3;
/** The reaper runs every nodeTimeout / 3 s (at least 1 s). */
const REAPER_INTERVAL_S = Math.max(1, NODE_TIMEOUT_S / 3);
/** Slack for a loaded 2-core machine: Redis, 2 nodes and the test share it. */
const MARGIN_S = 2.5;
const OFFLINE_BOUND_MS = (NODE_TIMEOUT_S + REAPER_INTERVAL_S + MARGIN_S) * 1000;
const WAIT_MS = 8000;

const isText = (text: string) => (e: Envelope) =>
  e.action === 300 && e.data.content.message === text;
const about = (action: number, userId: string) => (e: Envelope) =>
  e.action === action && e.data.content.userInfo?.userId === userId;

async function listIds(c: ChatClient): Promise<string[]> {
  const reply = await c.request("onlineList");
  assert.equal(reply.action, 201);
  return (reply.data.content.userList ?? []).map((u: UserInfo) => u.userId).sort();
}

let redis: RedisServer;
/** The surviving node; its two workers hold the observers. */
let survivor: NodeHandle;
const extraNodes: NodeHandle[] = [];

before(async () => {
  redis = await startRedisServer();
  survivor = await startNode({
    redisUrl: redis.url,
    nodeId: "survivor",
    nodeTimeout: NODE_TIMEOUT_S,
  });
});

after(async () => {
  await Promise.all(extraNodes.map((n) => n.stop()));
  await survivor?.stop();
  await redis?.stop();
});

describe("a node killed with SIGKILL", { timeout: 90_000 }, () => {
  const pool = new ClientPool();
  afterEach(() => pool.closeAll());

  /** Two clients of the survivor, one on each of its workers (round-robin alternates). */
  async function observersIn(room: string, name: string): Promise<ChatClient[]> {
    const o1 = await pool.connect(survivor.url, { username: `${name}1`, room });
    const o2 = await pool.connect(survivor.url, { username: `${name}2`, room });
    assert.notEqual(o1.worker, o2.worker, "observers on both workers of the surviving node");
    return [o1, o2];
  }

  /**
   * Waits for the dead node's users to leave the lists, then sends a marker from every observer
   * (every worker of the survivor, the only processes that could still announce anything): 203s
   * that were to come would have come before the markers.
   */
  async function settle(observers: ChatClient[], gone: string[], marks: number[]): Promise<void> {
    for (const o of observers) {
      await waitUntil(
        async () => (await listIds(o)).every((id) => !gone.includes(id)),
        `${gone} to leave the list`,
        WAIT_MS,
      );
    }
    const tag = `settled ${Math.random()}`;
    for (const [i, o] of observers.entries())
      o.send({ type: "text", content: { message: `${tag} ${i}` } });
    for (const [i, o] of observers.entries()) {
      for (let j = 0; j < observers.length; j++) {
        await o.waitFor(isText(`${tag} ${j}`), "settle marker", WAIT_MS, marks[i]);
      }
    }
  }

  it("the other node's clients get one 203 per dead user within nodeTimeout + a reaper round, and the lists drop them", async () => {
    const doomed = await startNode({
      redisUrl: redis.url,
      nodeId: "doomed",
      nodeTimeout: NODE_TIMEOUT_S,
    });
    extraNodes.push(doomed);
    const roomA = "failure-a";
    const roomB = "failure-b";
    const obsA = await observersIn(roomA, "obs-a");
    const obsB = await observersIn(roomB, "obs-b");
    const observers = [...obsA, ...obsB];

    // On the doomed node, over both of its workers: single-tab users, a user with a tab on each
    // of its workers, a user who also has a tab on the survivor, users in both rooms.
    const atDoomed = (username: string, room: string, opts = {}) =>
      pool.connect(doomed.url, { username, room }, opts);
    const d1 = await atDoomed("d1", roomA);
    const d2 = await atDoomed("d2", roomA, { transports: ["polling"] });
    const twoTabs1 = await atDoomed("two-tabs", roomA);
    const twoTabs2 = await atDoomed("two-tabs", roomA, { transports: ["websocket"] });
    const d3 = await atDoomed("d3", roomB);
    const d4 = await atDoomed("d4", roomB, { transports: ["websocket"] });
    const alsoHere = await atDoomed("also-here", roomA);
    assert.notEqual(d1.worker, d2.worker);
    assert.notEqual(twoTabs1.worker, twoTabs2.worker);
    assert.notEqual(d3.worker, d4.worker);
    const alsoHereOnSurvivor = await pool.connect(survivor.url, {
      username: "also-here",
      room: roomA,
    });
    const deadIn = new Map([
      [roomA, ["d1", "d2", "two-tabs"]],
      [roomB, ["d3", "d4"]],
    ]);
    for (const o of obsA) {
      assert.deepEqual(await listIds(o), ["also-here", "d1", "d2", "obs-a1", "obs-a2", "two-tabs"]);
    }
    const marks = observers.map((o) => o.mark());
    const alsoHereMark = alsoHereOnSurvivor.mark();
    const doomedClients = [d1, d2, twoTabs1, twoTabs2, d3, d4, alsoHere];

    const pids = await doomed.pids();
    assert.equal(pids.length, 3, "a primary and 2 workers");
    const killedAt = Date.now();
    await doomed.kill();
    for (const p of pids) assert.equal(processAlive(p), false, `pid ${p} is gone`);
    for (const c of doomedClients) await c.waitDisconnect("the dead node's client is cut off");

    // Every observer on both workers gets a 203 for each dead user of its room, in time.
    await Promise.all(
      observers.map(async (o, i) => {
        const room = i < 2 ? roomA : roomB;
        for (const id of deadIn.get(room) ?? []) {
          await o.waitFor(
            about(203, id),
            `203 for ${id} at observer ${i}`,
            OFFLINE_BOUND_MS,
            marks[i],
          );
        }
      }),
    );
    const tookMs = Date.now() - killedAt;
    assert.ok(tookMs <= OFFLINE_BOUND_MS, `203s took ${tookMs} ms`);

    await settle(
      [...obsA, alsoHereOnSurvivor],
      ["d1", "d2", "two-tabs"],
      [...marks.slice(0, 2), alsoHereMark],
    );
    await settle(obsB, ["d3", "d4"], marks.slice(2));
    for (const [i, o] of observers.entries()) {
      const room = i < 2 ? roomA : roomB;
      for (const id of deadIn.get(room) ?? []) {
        const offs = o.all(about(203, id), marks[i]);
        assert.equal(offs.length, 1, `observer ${i}: exactly one 203 for ${id}`);
        assert.equal(offs[0].data.content.userInfo?.room, room);
        assert.equal(offs[0].data.content.userInfo?.username, id);
      }
      // Nobody who is still online was announced offline.
      const wrong = o
        .all((e) => e.action === 203, marks[i])
        .map((e) => e.data.content.userInfo?.userId)
        .filter((id) => !(deadIn.get(room) ?? []).includes(id ?? ""));
      assert.deepEqual(wrong, [], `observer ${i}: no 203 for users still online`);
    }
    // also-here lost a tab, not their presence.
    assert.deepEqual(alsoHereOnSurvivor.all(about(203, "also-here"), alsoHereMark), []);
    for (const o of obsA) {
      assert.deepEqual(await listIds(o), ["also-here", "obs-a1", "obs-a2"]);
    }
    for (const o of obsB) {
      assert.deepEqual(await listIds(o), ["obs-b1", "obs-b2"]);
    }
    // `status` counts the deployment's users (from Redis): the dead node's are gone from it too.
    const status = await survivor.status();
    assert.equal(status.ready, true);
    assert.equal(status.users, 5, "obs-a1, obs-a2, also-here in room a; obs-b1, obs-b2 in room b");
  });

  it("a node restarted with the same --node-id removes its previous run's users at once, well before their TTL", async () => {
    // A long TTL: only the restarted node's own cleanup can explain a prompt 203.
    const ttlS = 60;
    const opts = { redisUrl: redis.url, nodeId: "phoenix", nodeTimeout: ttlS };
    const first = await startNode(opts);
    extraNodes.push(first);
    const room = "restart";
    const observers = await observersIn(room, "obs");
    const p1 = await pool.connect(first.url, { username: "p1", room });
    const p2 = await pool.connect(first.url, { username: "p2", room }, { transports: ["polling"] });
    const p3 = await pool.connect(
      first.url,
      { username: "p3", room },
      { transports: ["websocket"] },
    );
    assert.notEqual(p1.worker, p2.worker);
    assert.equal(p3.worker, p1.worker);
    for (const o of observers) {
      await o.waitFor(about(202, "p3"), "202 for p3");
      assert.deepEqual(await listIds(o), ["obs1", "obs2", "p1", "p2", "p3"]);
    }
    const marks = observers.map((o) => o.mark());

    const killedAt = Date.now();
    await first.kill();
    const again = await startNode(opts);
    extraNodes.push(again);
    for (const [i, o] of observers.entries()) {
      for (const id of ["p1", "p2", "p3"]) {
        await o.waitFor(about(203, id), `203 for ${id} at observer ${i}`, WAIT_MS, marks[i]);
      }
    }
    const tookMs = Date.now() - killedAt;
    assert.ok(tookMs < (ttlS * 1000) / 4, `203s took ${tookMs} ms, the TTL is ${ttlS} s`);

    await settle(observers, ["p1", "p2", "p3"], marks);
    for (const [i, o] of observers.entries()) {
      for (const id of ["p1", "p2", "p3"]) {
        assert.equal(o.all(about(203, id), marks[i]).length, 1, `observer ${i}: one 203 for ${id}`);
      }
      assert.deepEqual(
        o.all(
          (e) => e.action === 203 && !/^p\d$/.test(e.data.content.userInfo?.userId ?? ""),
          marks[i],
        ),
        [],
      );
    }

    // The restarted node serves: a newcomer there sees the room as it is, and is seen.
    const fresh = await pool.connect(again.url, { username: "p1", room });
    assert.deepEqual(
      fresh.received[1].data.content.userList?.map((u) => u.userId),
      ["obs1", "obs2", "p1"],
    );
    for (const [i, o] of observers.entries()) {
      await o.waitFor(about(202, "p1"), "202 for the returning p1", WAIT_MS, marks[i]);
    }
  });
});
