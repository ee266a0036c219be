/**
 * Two nodes (each a primary + 2 workers, `--adapter redis`) on one Redis, behind the real nginx
 * with deploy/nginx.conf. nginx hashes the client address to pick a node, so every client
 * connects from a 127.0.0.x source address that nginx sends to the node it should land on; client
 * i of the chat suite goes to node i % 2, so any two consecutive clients sit on different nodes.
 *
 * - the whole chat suite (test/support/chat-suite.ts) across the nodes, both transports on both;
 * - two tabs of one user on different nodes;
 * - `--redis-prefix`: a second deployment on the same Redis sees nothing of the first.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import type { Envelope, UserInfo } from "../src/chat/protocol.js";
import { type ChatClient, type ClientOptions, ClientPool } from "./support/chat-client.js";
import { chatSuite } from "./support/chat-suite.js";
import {
  addressesPerNode,
  fromAddress,
  type NodeHandle,
  startNode,
} from "./support/cluster-nodes.js";
import { type NginxHandle, startNginx } from "./support/nginx.js";
import { type RedisServer, startRedisServer } from "./support/redis-server.js";
import { SCRIPTED_RATES, waitUntil } from "./support/service.js";

const WAIT_MS = 8000;

interface Deployment {
  redis: RedisServer;
  nodes: NodeHandle[];
  nginx: NginxHandle;
  /** nodes[n] is reached through nginx from addresses[n]. */
  addresses: string[];
}

let started: Promise<Deployment> | undefined;
/** Redis, nodes "a" and "b", nginx in front of them; started once for the whole file. */
function deployment(): Promise<Deployment> {
  started ??= (async () => {
    const redis = await startRedisServer();
    const nodes = await Promise.all(
      ["a", "b"].map((nodeId) => startNode({ redisUrl: redis.url, nodeId, args: SCRIPTED_RATES })),
    );
    const nginx = await startNginx({ upstreams: nodes.map((n) => n.port) });
    const byPort = await addressesPerNode(
      nginx,
      nodes.map((n) => n.port),
    );
    const addresses = nodes.map((n) => byPort.get(n.port) as string);
    return { redis, nodes, nginx, addresses };
  })();
  return started;
}

after(async () => {
  if (!started) return;
  const d = await started.catch(() => undefined);
  if (!d) return;
  await d.nginx.stop();
  await Promise.all(d.nodes.map((n) => n.stop()));
  await d.redis.stop();
});

const isText = (text: string) => (e: Envelope) =>
  e.action === 300 && e.data.content.message === text;
const about = (action: number, userId: string) => (e: Envelope) =>
  e.action === action && e.data.content.userInfo?.userId === userId;

async function listOf(client: ChatClient): Promise<UserInfo[]> {
  const reply = await client.request("onlineList");
  assert.equal(reply.action, 201);
  return reply.data.content.userList ?? [];
}

/** Connections per node according to `status --json` of each. */
async function connectionsPerNode(d: Deployment): Promise<number[]> {
  return Promise.all(d.nodes.map(async (n) => (await n.status()).connections));
}

describe("clients spread over two nodes behind nginx", { timeout: 60_000 }, () => {
  const pool = new ClientPool();
  let d: Deployment;
  before(async () => {
    d = await deployment();
  });
  afterEach(() => pool.closeAll());

  it("a client lands on the node its source address hashes to, over websocket, polling and an upgrade", async () => {
    await waitUntil(
      async () => (await connectionsPerNode(d)).every((n) => n === 0),
      "no connections yet",
    );
    const kinds: [string, ClientOptions][] = [
      ["websocket", { transports: ["websocket"] }],
      ["polling", { transports: ["polling"] }],
      ["websocket", {}], // polling first, then the upgrade
    ];
    const expected = [0, 0];
    for (const [n, address] of d.addresses.entries()) {
      for (const [i, [transport, opts]] of kinds.entries()) {
        if (n === 1 && i === 2) continue; // 3 clients on a, 2 on b: the counts tell them apart
        const c = await pool.connect(
          d.nginx.url,
          { username: `spread-${n}-${i}`, room: "spread" },
          fromAddress(address, opts),
        );
        await waitUntil(() => c.transport === transport, `${transport} on client ${n}/${i}`);
        expected[n]++;
      }
    }
    await waitUntil(async () => {
      const counts = await connectionsPerNode(d);
      return counts.every((c, n) => c === expected[n]) && counts;
    }, `connections per node to be ${expected}`);
    // Both nodes answer the room's list the same way: 5 users.
    assert.equal((await listOf(pool.clients[0])).length, 5);
    assert.equal((await listOf(pool.clients[4])).length, 5);
  });
});

// Client i: node i % 2; transports so that each node gets websocket-only, polling-only and
// upgraded clients: i % 6 = 0 a/websocket, 1 b/polling, 2 a/polling, 3 b/websocket, 4 a/upgrade,
// 5 b/upgrade.
const TRANSPORTS: ClientOptions[] = [
  { transports: ["websocket"] },
  { transports: ["polling"] },
  { transports: ["polling"] },
  { transports: ["websocket"] },
  {},
  {},
];

chatSuite("chat protocol across 2 nodes x 2 workers behind nginx", async () => {
  const d = await deployment();
  return {
    urls: [d.nginx.url],
    clientOptions: (i) => fromAddress(d.addresses[i % 2], TRANSPORTS[i % TRANSPORTS.length]),
    placement: (client, i) => `${d.nodes[i % 2].nodeId}/${client.worker}`,
    // The deployment is shared by the whole file; the file's after() stops it.
    stop: async () => {},
  };
});

describe("two tabs of one user on different nodes", { timeout: 60_000 }, () => {
  const pool = new ClientPool();
  let d: Deployment;
  before(async () => {
    d = await deployment();
  });
  afterEach(() => pool.closeAll());

  /** Connects through nginx to node n (0 = a, 1 = b). */
  const on = (n: number, username: string, room: string, opts: ClientOptions = {}) =>
    pool.connect(d.nginx.url, { username, room }, fromAddress(d.addresses[n], opts));

  it("one list entry, one 202; closing one tab sends no 203, closing the last sends one", async () => {
    const room = "two-tabs";
    // Observers on both workers of both nodes (round-robin: consecutive sessions alternate).
    const observers = [
      await on(0, "obs-a1", room),
      await on(0, "obs-a2", room),
      await on(1, "obs-b1", room),
      await on(1, "obs-b2", room),
    ];
    assert.notEqual(observers[0].worker, observers[1].worker);
    assert.notEqual(observers[2].worker, observers[3].worker);
    const marks = observers.map((c) => c.mark());

    // Both tabs at once, one per node: the store decides atomically which one is "first".
    const [tabA, tabB] = await Promise.all([
      on(0, "bob", room, { transports: ["websocket"] }),
      on(1, "bob", room, { transports: ["polling"] }),
    ]);
    const tabs = [tabA, tabB];
    // Markers from both tabs: each tab's 202 (if any) would travel the path its marker takes.
    tabA.send({ type: "text", content: { message: "tab a here" } });
    tabB.send({ type: "text", content: { message: "tab b here" } });
    for (const [i, c] of observers.entries()) {
      await c.waitFor(isText("tab a here"), "marker of tab a", WAIT_MS, marks[i]);
      await c.waitFor(isText("tab b here"), "marker of tab b", WAIT_MS, marks[i]);
      assert.equal(c.all(about(202, "bob"), marks[i]).length, 1, `observer ${i}: one 202 for bob`);
    }
    for (const t of tabs) {
      assert.deepEqual(
        t.all((e) => e.action === 202 && e.data.content.userInfo?.userId === "bob"),
        [],
        "no 202 about bob to bob's own tabs",
      );
    }
    for (const c of [...observers, ...tabs]) {
      const bobs = (await listOf(c)).filter((u) => u.userId === "bob");
      assert.equal(bobs.length, 1, "one list entry for bob, asked on any node");
      assert.ok([tabA.fd, tabB.fd].includes(bobs[0].fd));
    }

    // Close the listed tab: the entry moves to the other one, nobody is told bob left.
    const listed = (await listOf(observers[0])).find((u) => u.userId === "bob") as UserInfo;
    const [gone, kept] = listed.fd === tabA.fd ? [tabA, tabB] : [tabB, tabA];
    const marks2 = observers.map((c) => c.mark());
    gone.close();
    for (const c of [observers[0], observers[2]]) {
      await waitUntil(
        async () => (await listOf(c)).find((u) => u.userId === "bob")?.fd === kept.fd,
        "bob's entry to name his remaining tab",
      );
    }
    kept.send({ type: "text", content: { message: "still here" } });
    for (const [i, c] of observers.entries()) {
      await c.waitFor(isText("still here"), "marker after the first tab left", WAIT_MS, marks2[i]);
      assert.deepEqual(c.all(about(203, "bob"), marks2[i]), [], `observer ${i}: no 203 yet`);
    }

    // Close the last tab: one 203 at every observer, on both nodes and both workers.
    kept.close();
    for (const [i, c] of observers.entries()) {
      const off = await c.waitFor(about(203, "bob"), "203 for bob", WAIT_MS, marks2[i]);
      assert.equal(off.data.content.userInfo?.room, room);
    }
    // Markers from every observer (so from every worker that could announce) close the window.
    for (const [i, c] of observers.entries()) {
      c.send({ type: "text", content: { message: `after bob ${i}` } });
    }
    for (const [i, c] of observers.entries()) {
      for (let j = 0; j < observers.length; j++) {
        await c.waitFor(isText(`after bob ${j}`), "marker", WAIT_MS, marks2[i]);
      }
      assert.equal(c.all(about(203, "bob"), marks2[i]).length, 1, `observer ${i}: one 203`);
      assert.deepEqual(
        (await listOf(c)).map((u) => u.userId),
        ["obs-a1", "obs-a2", "obs-b1", "obs-b2"],
      );
    }
  });
});

describe("--redis-prefix keeps two deployments on one Redis apart", { timeout: 60_000 }, () => {
  const pool = new ClientPool();
  let d: Deployment;
  let other: NodeHandle | undefined;
  before(async () => {
    d = await deployment();
  });
  afterEach(() => pool.closeAll());
  after(async () => {
    await other?.stop();
  });

  it("no messages, presence or lists cross; the same node id elsewhere cleans nothing here", async () => {
    const room = "shared-name";
    // Deployment 1 (default prefix): alice on node a, bob on node b, through nginx.
    const alice = await pool.connect(
      d.nginx.url,
      { username: "alice", room },
      fromAddress(d.addresses[0]),
    );
    const bob = await pool.connect(
      d.nginx.url,
      { username: "bob", room },
      fromAddress(d.addresses[1]),
    );
    await alice.waitFor(about(202, "bob"), "202 for bob at alice");
    const mine = [alice, bob];
    const marks1 = mine.map((c) => c.mark());

    // Deployment 2: another prefix, and the same node id as node a (its start cleans "its" stale
    // entries, which must be those under its own prefix only).
    other = await startNode({
      redisUrl: d.redis.url,
      nodeId: "a",
      prefix: "other-deployment",
    });
    const carol = await pool.connect(other.url, { username: "carol", room });
    const alice2 = await pool.connect(other.url, { username: "alice", room });
    const theirs = [carol, alice2];
    assert.notEqual(carol.worker, alice2.worker);
    assert.deepEqual(
      carol.received[1].data.content.userList?.map((u) => u.userId),
      ["carol"],
      "carol's 201 lists only her own deployment",
    );
    await carol.waitFor(about(202, "alice"), "202 for deployment 2's alice at carol");
    const marks2 = theirs.map((c) => c.mark());

    // Each deployment talks; deployment 2 also whispers and fails to reach deployment 1's bob.
    alice.send({ type: "text", content: { message: "hello from 1" } });
    alice.send({ type: "state", content: { message: "typing in 1" } });
    carol.send({ type: "text", content: { message: "hello from 2" } });
    carol.send({ type: "state", content: { message: "typing in 2" } });
    carol.send({ type: "text", content: { message: "psst" }, to: "alice" });
    const cross = await carol.request("message", {
      type: "text",
      content: { message: "hi bob" },
      to: "bob",
    });
    assert.equal(cross.data.content.error?.code, "E_NO_RECIPIENT");
    await alice2.waitFor(isText("psst"), "private within deployment 2", WAIT_MS, marks2[1]);
    // Deployment 2's alice leaves: a 203 in deployment 2 only.
    alice2.close();
    await carol.waitFor(about(203, "alice"), "203 for alice at carol", WAIT_MS, marks2[0]);

    // Markers from every connection of each deployment close the windows.
    bob.send({ type: "text", content: { message: "end of 1" } });
    carol.send({ type: "text", content: { message: "end of 2" } });
    for (const [i, c] of mine.entries()) {
      await c.waitFor(isText("end of 1"), "marker of deployment 1", WAIT_MS, marks1[i]);
      await c.waitFor(isText("hello from 1"), "deployment 1's message", WAIT_MS, marks1[i]);
      const seen = c.received.slice(marks1[i]);
      assert.deepEqual(
        seen.filter(
          (e) => e.data.content.message?.includes("2") || e.data.content.message === "psst",
        ),
        [],
        "deployment 1 saw nothing of deployment 2",
      );
      assert.deepEqual(
        seen.filter((e) => e.action === 202 || e.action === 203),
        [],
        "no presence of deployment 2 (and alice was not cleaned away)",
      );
    }
    await carol.waitFor(isText("end of 2"), "marker of deployment 2", WAIT_MS, marks2[0]);
    assert.deepEqual(
      carol.received.slice(marks2[0]).filter((e) => e.data.content.message?.includes("1") === true),
      [],
      "deployment 2 saw nothing of deployment 1",
    );

    // The lists, asked on every node of each deployment.
    for (const c of mine) {
      assert.deepEqual(
        (await listOf(c)).map((u) => u.userId),
        ["alice", "bob"],
      );
    }
    assert.deepEqual(
      (await listOf(carol)).map((u) => u.userId),
      ["carol"],
    );
  });
});
