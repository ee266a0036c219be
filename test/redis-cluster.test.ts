/**
 * Redis Cluster (Redis ≥ 7): 3 masters with a replica each (real processes, `redis-cli --cluster
 * create`), two nodes of 2 workers started with --redis-cluster:
 *
 * - the presence store suite (presenceSuite) on cluster clients, two handles as two nodes;
 * - the whole chat suite across the two nodes;
 * - rooms' keys on all three shards (the slot groups spread over them);
 * - a master SIGKILLed under traffic, its replica promoted: chat, presence and history work again
 *   within FAILOVER_BOUND_MS (measured and reported), nothing acked lost, no ghost;
 * - webhooks: the groups' queues sent once each by the lease holder, and by the other node after
 *   the holder dies.
 */
import assert from "node:assert/strict";
import { after, afterEach, describe, it } from "node:test";
import { createRedisClient, type RedisHandle } from "../src/backend/redis-clients.js";
import { CLUSTER_SLOT_GROUPS, slotGroup } from "../src/backend/slot-groups.js";
import type { Envelope, UserInfo } from "../src/chat/protocol.js";
import { parseConfig } from "../src/config/config.js";
import type { PresenceEvent, PresenceStore } from "../src/presence/presence-store.js";
import { RedisPresenceStore } from "../src/presence/redis-presence-store.js";
import { type ChatClient, ClientPool } from "./support/chat-client.js";
import { chatSuite } from "./support/chat-suite.js";
import { type NodeHandle, startNode } from "./support/cluster-nodes.js";
import { settle, startTraffic, verdict } from "./support/nothing-lost.js";
import { presenceSuite } from "./support/presence-suite.js";
import { type RedisClusterSetup, startRedisCluster } from "./support/redis-cluster.js";
import { redisCommand } from "./support/redis-sentinel.js";
import { ResilientClient, waitFor } from "./support/resilient-client.js";
import { SCRIPTED_RATES, waitUntil } from "./support/service.js";
import { WebhookReceiver } from "./support/webhook-receiver.js";

/** From SIGKILL of a master to chat across nodes in a room of its slots (measured: diagnostic). */
const FAILOVER_BOUND_MS = 20_000;
const WAIT_MS = 8000;

let started: Promise<{ redis: RedisClusterSetup; nodes: NodeHandle[] }> | undefined;
/** The cluster and nodes "a" and "b", started once for the whole file. */
function deployment() {
  started ??= (async () => {
    const redis = await startRedisCluster({ masters: 3, replicas: 1 });
    const nodes = await Promise.all(
      ["a", "b"].map((nodeId) =>
        startNode({
          redisUrl: "redis://127.0.0.1:1",
          nodeId,
          // Longer than a failover: liveness keys must not lapse meanwhile.
          nodeTimeout: 10,
          args: [...SCRIPTED_RATES, "--history-size", "2000", "--redis-cluster", redis.seeds],
        }),
      ),
    );
    return { redis, nodes };
  })();
  return started;
}
after(async () => {
  const d = await started?.catch(() => undefined);
  if (!d) return;
  await Promise.all(d.nodes.map((n) => n.stop()));
  await d.redis.stop();
});

const clusterConfig = (seeds: string) => parseConfig({ adapter: "redis", redisCluster: seeds });

// The store suite on the cluster: each store has a client of its own (a node of its own).
{
  let tests = 0;
  const prefixes = new WeakMap<PresenceStore, string>();
  const clients: RedisHandle[] = [];
  const connected = async () => {
    const { redis } = await deployment();
    const client = createRedisClient(clusterConfig(redis.seeds));
    client.on("error", () => {});
    clients.push(client);
    await client.connect();
    return client;
  };
  after(async () => {
    await Promise.allSettled(clients.map((c) => c.close()));
  });
  presenceSuite(
    "RedisPresenceStore on a Redis Cluster (slot groups)",
    async (shareWith) => {
      const prefix = (shareWith && prefixes.get(shareWith)) ?? `cluster-suite-${++tests}`;
      const store = new RedisPresenceStore({
        client: await connected(),
        prefix,
        nodeId: "test",
        slotGroups: CLUSTER_SLOT_GROUPS,
      });
      prefixes.set(store, prefix);
      return store;
    },
    async (store, listener) => {
      const sub = await connected();
      await sub.subscribe((store as RedisPresenceStore).channels, (message) => {
        const event = JSON.parse(message) as PresenceEvent | { relist: 1 };
        if (!("relist" in event)) listener(event);
      });
      return async () => {
        await sub.close();
      };
    },
  );
}

chatSuite("chat protocol across 2 nodes on a 3-master Redis Cluster", async () => {
  const { nodes } = await deployment();
  return {
    urls: nodes.map((n) => n.url),
    clientOptions: (i) => (i % 3 === 0 ? { transports: ["websocket"] } : {}),
    stop: async () => {},
  };
});

const isText = (text: string) => (e: Envelope) =>
  e.action === 300 && e.data.content.message === text;

async function listIds(c: ChatClient): Promise<string[]> {
  const reply = await c.request("onlineList");
  assert.equal(reply.action, 201, JSON.stringify(reply));
  return (reply.data.content.userList ?? []).map((u: UserInfo) => u.userId).sort();
}

/** The slot of a room's keys (its group's hash tag). */
async function slotOf(redis: RedisClusterSetup, room: string): Promise<number> {
  const key = `weigot-ws{${slotGroup(room, CLUSTER_SLOT_GROUPS)}}:history`;
  return (await redisCommand(redis.servers[0].port, ["CLUSTER", "KEYSLOT", key])) as number;
}

describe("Redis Cluster: shards and a master's failure", { timeout: 180_000 }, () => {
  const pool = new ClientPool();
  const resilient: ResilientClient[] = [];
  afterEach(() => {
    pool.closeAll();
    for (const c of resilient.splice(0)) c.close();
  });

  it("the slot groups spread the rooms' keys over all three masters", async () => {
    const { redis } = await deployment();
    const groupSlots = await Promise.all(
      Array.from({ length: CLUSTER_SLOT_GROUPS }, (_, g) =>
        redisCommand(redis.servers[0].port, ["CLUSTER", "KEYSLOT", `x{${g}}`]),
      ),
    );
    const masters = new Set(
      await Promise.all(groupSlots.map((s) => redis.masterPortOf(s as number))),
    );
    assert.equal(masters.size, 3, "every master holds some groups");
    // Rooms used by the chat suite left keys (history, presence counters) on every master.
    for (const port of masters) {
      const keys = (await redisCommand(port, ["DBSIZE"])) as number;
      assert.ok(keys > 0, `master ${port} holds keys (${keys})`);
    }
  });

  it("a master dies, its replica takes over: chat, presence, history resume; nothing lost, no ghost", async (t) => {
    const { redis, nodes } = await deployment();
    const room = "cluster-failover";
    const watchRoom = "cluster-failover-watch";
    const slot = await slotOf(redis, room);
    const senders: ResilientClient[] = [];
    for (const node of nodes) {
      for (let i = 0; i < 4; i++) {
        const name = `${node.nodeId}${i < 2 ? "s" : "r"}${i}`;
        const c = new ResilientClient(node.url, { userId: name, username: name, room });
        resilient.push(c);
        await c.ready();
        if (i < 2) senders.push(c);
      }
    }
    const watchA = await pool.connect(nodes[0].url, { username: "watch-a", room: watchRoom });
    const watchB = await pool.connect(nodes[1].url, { username: "watch-b", room: watchRoom });
    const leaver = await pool.connect(nodes[1].url, { username: "leaver", room: watchRoom });
    await waitUntil(async () => (await listIds(watchA)).length === 3, "3 listed", WAIT_MS);
    const noRecipient = () => senders.reduce((n, s) => n + s.stats.noRecipient, 0);
    const traffic = startTraffic(senders, { privateEvery: 5, privateTo: "br2" });
    const target = traffic.started() + 20;
    await waitFor(() => traffic.started() >= target, "20 messages before the kill", 20_000);

    // The master of the traffic room's slot; the watch room may live on another shard.
    const oldPort = await redis.masterPortOf(slot);
    const killedAt = Date.now();
    await redis.server(oldPort).kill();
    leaver.close();
    await redis.waitForPromotion(slot, oldPort);
    const promotedMs = Date.now() - killedAt;

    // Chat in the failed shard's room works again across nodes.
    let probes = 0;
    const probeA = resilient[0];
    const from = resilient[4].texts.size;
    await waitUntil(
      () => {
        void probeA.send(`${probeA.identity.userId}#probe${probes++}`);
        return resilient[4].texts.size > from + 2;
      },
      "messages from node a to reach node b in the failed shard's room",
      FAILOVER_BOUND_MS,
      300,
    );
    const chatMs = Date.now() - killedAt;
    for (const c of [watchA, watchB]) {
      await waitUntil(
        async () => JSON.stringify(await listIds(c)) === JSON.stringify(["watch-a", "watch-b"]),
        `the list at ${c.fd} without the leaver`,
        FAILOVER_BOUND_MS,
      );
    }
    const presenceMs = Date.now() - killedAt;
    assert.deepEqual(
      watchA.all((e) => e.action === 203 && e.data.content.userInfo?.userId === "watch-b"),
      [],
      "who stayed was never announced offline",
    );

    const resumed = traffic.started() + 20;
    await waitFor(() => traffic.started() >= resumed, "20 messages after the failover", 30_000);
    await traffic.stop();
    await settle(resilient, senders, 20_000);
    const v = verdict(resilient, senders);
    t.diagnostic(
      `SIGKILL → replica promoted ${promotedMs} ms, chat across nodes ${chatMs} ms, presence right ${presenceMs} ms`,
    );
    t.diagnostic(`traffic: ${JSON.stringify(v.counts)}`);
    for (const p of v.problems.slice(0, 40)) t.diagnostic(p);
    assert.ok(v.counts.ackedRoom > 0, "some messages were acked");
    assert.equal(v.counts.givenUp, 0, "every message was acked in the end");
    assert.deepEqual(v.problems, [], `${v.problems.length} contract breaches`);
    assert.equal(noRecipient(), 0, "no private message refused for an online recipient");
    assert.ok(chatMs < FAILOVER_BOUND_MS, `chat back within ${FAILOVER_BOUND_MS} ms`);

    // History from the promoted replica: a newcomer is replayed what was acked.
    const late = await pool.connect(nodes[0].url, { username: "late", room });
    const acked = new Map(
      senders.flatMap((s) => [...s.acked.values()]).map((e) => [e.data.content.message, e.seq]),
    );
    await late.until(() => late.all((e) => e.action === 300).length >= 20, "20 replayed");
    for (const e of late.all((m) => m.action === 300)) {
      assert.equal(e.seq, acked.get(e.data.content.message), "replayed as acked");
    }
    const text = `after the failover ${Date.now()}`;
    assert.equal((await watchB.say(text)).action, 300);
    await watchA.waitFor(isText(text), "a live message across nodes", WAIT_MS);
    await waitUntil(
      async () => (await Promise.all(nodes.map((n) => n.readyz()))).every((s) => s === 200),
      "both nodes ready",
      WAIT_MS,
    );
  });
});

describe("Redis Cluster: webhooks from every slot group", { timeout: 120_000 }, () => {
  const pool = new ClientPool();
  const receiver = new WebhookReceiver("hook-secret");
  let hookNodes: NodeHandle[] = [];
  after(async () => {
    pool.closeAll();
    await Promise.all(hookNodes.map((n) => n.stop()));
    await receiver.close();
  });

  it("every change of rooms on every shard is sent once, and still after the sender dies", async () => {
    const { redis } = await deployment();
    await receiver.open(0);
    hookNodes = await Promise.all(
      ["ha", "hb"].map((nodeId) =>
        startNode({
          redisUrl: "redis://127.0.0.1:1",
          nodeId,
          prefix: "hooks",
          args: [
            ...SCRIPTED_RATES,
            "--redis-cluster",
            redis.seeds,
            "--webhook-url",
            receiver.url,
            "--webhook-secret",
            "hook-secret",
            "--webhook-messages",
          ],
        }),
      ),
    );
    // Rooms in 8 different groups: their queues are on all three shards.
    const rooms: string[] = [];
    const groups = new Set<number>();
    for (let i = 0; rooms.length < 8; i++) {
      const g = slotGroup(`hooks-${i}`, CLUSTER_SLOT_GROUPS);
      if (!groups.has(g)) {
        groups.add(g);
        rooms.push(`hooks-${i}`);
      }
    }
    for (const [i, room] of rooms.entries()) {
      const c = await pool.connect(hookNodes[i % 2].url, { username: `u${i}`, room });
      await c.say(`hello ${room}`);
      c.close();
    }
    const trails = () =>
      rooms.map(
        (room) =>
          `${room} (group ${slotGroup(room, CLUSTER_SLOT_GROUPS)}): ${receiver.acked
            .filter((e) => e.room === room)
            .map((e) => e.type)
            .join(", ")}`,
      );
    await waitUntil(
      () =>
        rooms.every((r) => receiver.acked.some((e) => e.room === r && e.type === "room.vacated")),
      "every room vacated",
      WAIT_MS * 4,
    ).catch((err: Error) => {
      const logs = hookNodes.flatMap((n) => n.logs.slice(-15));
      throw new Error(`${err.message}\n${trails().join("\n")}\n${logs.join("\n")}`);
    });
    const ids = receiver.acked.map((e) => e.id);
    assert.equal(new Set(ids).size, ids.length, "every event id once");
    for (const [i, room] of rooms.entries()) {
      const trail = receiver.acked
        .filter((e) => e.room === room)
        .map((e) => (e.type.startsWith("user.") ? `${e.type} ${e.user?.userId}` : e.type));
      assert.deepEqual(
        trail,
        ["room.occupied", `user.online u${i}`, "message", `user.offline u${i}`, "room.vacated"],
        room,
      );
    }
    assert.ok(receiver.batches.every((b) => b.signatureOk));

    const holder = hookNodes.find((n) =>
      n.logs.some((l) => l.includes("sending the service's webhooks (lease taken)")),
    );
    assert.ok(holder, "one node holds the lease");
    const survivor = holder === hookNodes[0] ? hookNodes[1] : hookNodes[0];
    await holder.kill();
    await pool.connect(survivor.url, { username: "late", room: rooms[3] });
    await waitUntil(
      () => receiver.acked.some((e) => e.type === "user.online" && e.user?.userId === "late"),
      "the survivor sends after the lease expired",
      30_000,
    );
    const later = receiver.acked.map((e) => e.id);
    assert.equal(new Set(later).size, later.length, "every event id once");
  });
});

describe("Redis Cluster: a user's rate limit counted across nodes", { timeout: 60_000 }, () => {
  const pool = new ClientPool();
  let rlNodes: NodeHandle[] = [];
  after(async () => {
    pool.closeAll();
    await Promise.all(rlNodes.map((n) => n.stop()));
  });

  it("one budget for one user's tabs on two nodes (in Redis, not per process)", async () => {
    const { redis } = await deployment();
    const limits = ["--message-rate", "100/30s", "--user-message-rate", "6/30s"];
    rlNodes = await Promise.all(
      ["rl-a", "rl-b"].map((nodeId) =>
        startNode({
          redisUrl: "redis://127.0.0.1:1",
          nodeId,
          workers: 1,
          prefix: "rl",
          args: [...limits, "--max-refusals", "0", "--redis-cluster", redis.seeds],
        }),
      ),
    );
    const onA = await pool.connect(rlNodes[0].url, { username: "roamer", room: "x" });
    const onB = await pool.connect(rlNodes[1].url, { username: "roamer", room: "x" });
    const outcomes: (number | string | undefined)[] = [];
    for (let i = 0; i < 10; i++) {
      const c = i % 2 === 0 ? onA : onB;
      const reply = await c.request("message", { type: "text", content: { message: `m${i}` } });
      outcomes.push(reply.action === 100 ? reply.data.content.error?.code : reply.action);
    }
    assert.deepEqual(outcomes, [...Array(6).fill(300), ...Array(4).fill("E_RATE_LIMITED")]);
  });
});
