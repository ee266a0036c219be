/**
 * Nothing lost (Redis mode, 2 nodes of 2 workers): Redis stopped for 5 s under traffic. Senders
 * on both nodes retry each message with its cid until acked (E_UNAVAILABLE while Redis is away);
 * receivers on both nodes and both workers of each stay connected the whole time (the outage
 * does not cut clients). Once Redis is back, every client holds every acked message exactly
 * once, at its acked seq, in order, with no gap, and nothing refused and never stored.
 *
 * Two outages: a Redis that keeps its data (AOF, fsync always: a crash loses nothing acked), and
 * one that comes back empty (no persistence: the rooms' numbers start again).
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it, type TestContext } from "node:test";
import { type NodeHandle, startNode } from "./support/cluster-nodes.js";
import { settle, startTraffic, verdict } from "./support/nothing-lost.js";
import { type RedisServer, startRedisServer } from "./support/redis-server.js";
import { ResilientClient, waitFor } from "./support/resilient-client.js";
import { SCRIPTED_RATES } from "./support/service.js";

const OUTAGE_MS = 5000;
/** Per node; the figure is 20 senders in all, 2 cores shared here. */
const SENDERS = 3;
/** Per node: two on each worker. */
const RECEIVERS = 4;
const NODE_ARGS = [...SCRIPTED_RATES, "--history-size", "2000"];

const clients: ResilientClient[] = [];
afterEach(() => {
  for (const c of clients.splice(0)) c.close();
});

interface Room {
  senders: ResilientClient[];
  all: ResilientClient[];
}

/** Senders and receivers on both nodes; receivers on both workers of each node. */
async function openRoom(nodes: NodeHandle[], room: string): Promise<Room> {
  const senders: ResilientClient[] = [];
  const all: ResilientClient[] = [];
  for (const node of nodes) {
    const make = (name: string, i: number) =>
      new ResilientClient(
        node.url,
        { userId: name, username: name, room },
        i % 2 === 0 ? { transports: ["websocket"] } : {},
      );
    // One at a time: the primary hands new connections to its workers in turn.
    for (let i = 0; i < SENDERS + RECEIVERS; i++) {
      const c = make(i < SENDERS ? `${node.nodeId}s${i}` : `${node.nodeId}r${i - SENDERS}`, i);
      clients.push(c);
      all.push(c);
      await c.ready();
      if (i < SENDERS) senders.push(c);
    }
    const workers = new Set(
      all.filter((c) => c.identity.userId.startsWith(node.nodeId)).map((c) => c.worker),
    );
    assert.equal(workers.size, 2, `clients on both workers of node ${node.nodeId}`);
  }
  return { senders, all };
}

function report(t: TestContext, what: string, room: Room, numbersRestart: boolean): void {
  const v = verdict(room.all, room.senders, { numbersRestart });
  t.diagnostic(`${what}: ${JSON.stringify(v.counts)}`);
  for (const p of v.problems.slice(0, 40)) t.diagnostic(p);
  assert.ok(v.counts.ackedRoom > 0, "some messages were acked");
  assert.ok(v.counts.refusedAttempts > 0, "some attempts were refused while Redis was away");
  assert.equal(v.counts.givenUp, 0, "every message was acked in the end");
  assert.deepEqual(v.problems, [], `${v.problems.length} contract breaches`);
}

async function outageUnderTraffic(
  t: TestContext,
  redis: RedisServer,
  nodes: NodeHandle[],
  roomName: string,
  numbersRestart = false,
): Promise<void> {
  const room = await openRoom(nodes, roomName);
  const traffic = startTraffic(room.senders, {
    privateEvery: 5,
    privateTo: `${nodes[1].nodeId}r0`,
  });
  const target = traffic.started() + 30;
  await waitFor(() => traffic.started() >= target, "30 messages before the outage", 20_000);
  const downAt = Date.now();
  await redis.kill();
  // The outage's length is the scenario, not a wait for some state.
  await new Promise((r) => setTimeout(r, Math.max(0, downAt + OUTAGE_MS - Date.now())));
  await redis.restart();
  const resumed = traffic.started() + 30;
  await waitFor(() => traffic.started() >= resumed, "30 messages after the outage", 30_000);
  await traffic.stop();
  await settle(room.all, room.senders, 20_000);
  report(t, `Redis away ${OUTAGE_MS} ms`, room, numbersRestart);
}

describe("nothing lost: Redis stopped for 5 s (it keeps its data)", { timeout: 120_000 }, () => {
  let redis: RedisServer;
  let nodes: NodeHandle[];
  before(async () => {
    redis = await startRedisServer({ args: ["--appendonly", "yes", "--appendfsync", "always"] });
    nodes = await Promise.all(
      ["a", "b"].map((nodeId) => startNode({ redisUrl: redis.url, nodeId, args: NODE_ARGS })),
    );
  });
  after(async () => {
    await Promise.all((nodes ?? []).map((n) => n.stop()));
    await redis?.stop();
  });

  it("every acked message reaches every client on both nodes once, in order", async (t) => {
    await outageUnderTraffic(t, redis, nodes, "redis-aof");
  });
});

describe("nothing lost: Redis stopped for 5 s (it comes back empty)", { timeout: 120_000 }, () => {
  let redis: RedisServer;
  let nodes: NodeHandle[];
  before(async () => {
    redis = await startRedisServer();
    nodes = await Promise.all(
      ["a", "b"].map((nodeId) => startNode({ redisUrl: redis.url, nodeId, args: NODE_ARGS })),
    );
  });
  after(async () => {
    await Promise.all((nodes ?? []).map((n) => n.stop()));
    await redis?.stop();
  });

  it("every acked message reaches every client on both nodes once, in order", async (t) => {
    await outageUnderTraffic(t, redis, nodes, "redis-empty", true);
  });
});
