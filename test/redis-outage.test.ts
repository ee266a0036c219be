/**
 * Redis in trouble. Two nodes (2 workers each) share one redis-server, which is killed and, a few
 * seconds later, started again on the same port (empty: the test server keeps no data, like a
 * Redis without persistence). Nothing may crash; each worker keeps serving its own clients; the
 * nodes report themselves not ready, and everything (readiness, cross-node delivery, presence)
 * comes back by itself. And a node that cannot reach Redis at start fails clearly, or waits for
 * it with --redis-wait.
 *
 * With the Redis adapter even the two workers of one node talk through Redis, so during an
 * outage a message reaches the clients of the sender's own worker only ("serving local clients
 * only", as the service logs); the tests assert exactly that.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import path from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import type { Envelope, UserInfo } from "../src/chat/protocol.js";
import { ChatClient, ClientPool } from "./support/chat-client.js";
import { httpGet, type NodeHandle, processAlive, startNode } from "./support/cluster-nodes.js";
import { freePort } from "./support/nginx.js";
import { type RedisServer, startRedisServer } from "./support/redis-server.js";
import { runCliAsync, tempDir, waitUntil } from "./support/service.js";

const WAIT_MS = 8000;
/** How long Redis stays away: longer than --node-timeout (3 s), so liveness keys would lapse. */
const OUTAGE_MS = 3500;
/** Readiness and delivery must be back this soon after Redis is (reconnect back-off ≤ 2 s). */
const RECOVERY_MS = 10_000;

const isText = (text: string) => (e: Envelope) =>
  e.action === 300 && e.data.content.message === text;
const about = (action: number, userId: string) => (e: Envelope) =>
  e.action === action && e.data.content.userInfo?.userId === userId;
const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function listIds(c: ChatClient): Promise<string[]> {
  const reply = await c.request("onlineList");
  assert.equal(reply.action, 201);
  return (reply.data.content.userList ?? []).map((u: UserInfo) => u.userId).sort();
}

/**
 * Who a user's screen shows online: the last 201 pushed to the client (on connect, or any later
 * one), updated by the 202s and 203s received since.
 */
function viewOf(c: ChatClient): string[] {
  let start = -1;
  c.received.forEach((e, i) => {
    if (e.action === 201) start = i;
  });
  const online = new Set((c.received[start]?.data.content.userList ?? []).map((u) => u.userId));
  for (const e of c.received.slice(start + 1)) {
    const id = e.data.content.userInfo?.userId;
    if (id === undefined) continue;
    if (e.action === 202) online.add(id);
    if (e.action === 203) online.delete(id);
  }
  return [...online].sort();
}

describe("Redis goes away for a few seconds and comes back empty", { timeout: 120_000 }, () => {
  let redis: RedisServer;
  let nodes: NodeHandle[];
  const pool = new ClientPool();

  before(async () => {
    redis = await startRedisServer();
    nodes = await Promise.all(
      ["a", "b"].map((nodeId) => startNode({ redisUrl: redis.url, nodeId, nodeTimeout: 3 })),
    );
  });
  afterEach(() => pool.closeAll());
  after(async () => {
    await Promise.all((nodes ?? []).map((n) => n.stop()));
    await redis?.stop();
  });

  async function readiness(): Promise<number[]> {
    return Promise.all(nodes.map((n) => n.readyz()));
  }

  /** Three clients on a node: [0] and [2] on one worker, [1] on the other (round-robin). */
  async function threeOn(n: number, room: string): Promise<ChatClient[]> {
    const name = nodes[n].nodeId;
    const cs = [
      await pool.connect(nodes[n].url, { username: `${name}1`, room }),
      await pool.connect(nodes[n].url, { username: `${name}2`, room }, { transports: ["polling"] }),
      await pool.connect(
        nodes[n].url,
        { username: `${name}3`, room },
        { transports: ["websocket"] },
      ),
    ];
    assert.equal(cs[0].worker, cs[2].worker);
    assert.notEqual(cs[0].worker, cs[1].worker);
    return cs;
  }

  /** Kills Redis, runs `during` while it is away, keeps it away OUTAGE_MS, restarts it. */
  async function outage(during: () => Promise<void>): Promise<void> {
    const downAt = Date.now();
    await redis.kill();
    await during();
    // The outage's length is the scenario, not a wait for some state.
    await delay(Math.max(0, downAt + OUTAGE_MS - Date.now()));
    await redis.restart();
  }

  it("nothing crashes, each worker serves its own clients, /readyz says 503 then 200, delivery and presence recover", async () => {
    const room = "outage";
    const [a1, a2, a3] = await threeOn(0, room);
    const [b1, b2, b3] = await threeOn(1, room);
    const everyone = [a1, a2, a3, b1, b2, b3];
    await waitUntil(async () => (await listIds(a1)).length === 6, "all six listed");
    const before = a1.mark();
    b1.send({ type: "text", content: { message: "before the outage" } });
    await a1.waitFor(isText("before the outage"), "cross-node before the outage", WAIT_MS, before);
    assert.deepEqual(await readiness(), [200, 200]);
    const pidsBefore = await Promise.all(nodes.map((n) => n.pids()));

    let late: ChatClient | undefined;
    await outage(async () => {
      await waitUntil(
        async () => (await readiness()).every((s) => s === 503),
        "/readyz to answer 503 on both nodes",
        WAIT_MS,
      );
      for (const n of nodes) assert.equal((await httpGet(`${n.url}/healthz`)).status, 200);

      // A message that cannot be stored is refused, never half delivered: the sender is told
      // (E_UNAVAILABLE, retry later) and nobody gets it, not even the sender's own worker.
      for (const sender of [a1, b3]) {
        const reply = await sender.request("message", {
          type: "text",
          content: { message: `during the outage from ${sender.fd}` },
        });
        assert.equal(reply.action, 100);
        assert.equal(reply.data.content.error?.code, "E_UNAVAILABLE");
      }
      const info = await a2.request("info");
      assert.equal(info.action, 200);

      // Someone arrives meanwhile; socket.io-client retries by itself.
      late = pool.add(
        new ChatClient(
          nodes[0].url,
          { username: "late", room },
          { reconnection: true, reconnectionDelay: 200, reconnectionDelayMax: 1000 },
        ),
      );
    });
    const upAt = Date.now();

    await waitUntil(
      async () => (await readiness()).every((s) => s === 200),
      "/readyz to answer 200 on both nodes again",
      RECOVERY_MS,
    );
    // Cross-node delivery resumes by itself: probe until one gets through, then both ways.
    let probes = 0;
    const probeFrom = b2.mark();
    await waitUntil(
      () => {
        a1.send({ type: "text", content: { message: `probe ${probes++}` } });
        return (
          b2.all((e) => e.action === 300 && /^probe /.test(e.data.content.message ?? ""), probeFrom)
            .length > 0
        );
      },
      "a message from node a to reach node b",
      RECOVERY_MS,
      250,
    );
    for (const [sender, text] of [
      [a2, "after, from a"],
      [b2, "after, from b"],
    ] as const) {
      const marks = everyone.map((c) => c.mark());
      sender.send({ type: "text", content: { message: text } });
      for (const [i, c] of everyone.entries()) {
        await c.waitFor(isText(text), `"${text}" at client ${i}`, WAIT_MS, marks[i]);
      }
    }

    // Presence is right again, as the lists and as every user's screen show it.
    assert.ok(late);
    const lateClient = late;
    await lateClient.until(
      () => lateClient.connected && lateClient.received.some((e) => e.action === 201),
      "the client that arrived during the outage to be connected",
      RECOVERY_MS,
    );
    const expected = ["a1", "a2", "a3", "b1", "b2", "b3", "late"];
    for (const c of [a1, a2, b1, b2]) {
      await waitUntil(
        async () => JSON.stringify(await listIds(c)) === JSON.stringify(expected),
        `the list at ${c.fd} to be ${expected}`,
        RECOVERY_MS,
      );
    }
    for (const [i, c] of [...everyone, lateClient].entries()) {
      await waitUntil(
        () => JSON.stringify(viewOf(c)) === JSON.stringify(expected),
        `client ${i}'s screen to show ${expected} (shows ${viewOf(c)})`,
        WAIT_MS,
      );
    }
    assert.ok(Date.now() - upAt < RECOVERY_MS + 2 * WAIT_MS);

    for (const c of everyone) {
      assert.deepEqual(
        c.all((e) => /^during the outage/.test(e.data.content.message ?? "")),
        [],
        "a refused message reached nobody",
      );
    }

    // Nothing crashed: the same primaries and workers, all alive, all connections kept.
    const pidsAfter = await Promise.all(nodes.map((n) => n.pids()));
    assert.deepEqual(pidsAfter, pidsBefore);
    for (const pid of pidsAfter.flat()) assert.ok(processAlive(pid), `pid ${pid} alive`);
    for (const c of everyone) {
      assert.equal(c.connected, true);
      assert.equal(c.connects, 1, "never disconnected");
    }
  });

  it("a user who leaves while Redis is down is shown offline to the others once it is back", async () => {
    const room = "outage-leave";
    const stays = await pool.connect(nodes[0].url, { username: "stays", room });
    const watcher = await pool.connect(nodes[1].url, { username: "watcher", room });
    const leaver = await pool.connect(nodes[0].url, { username: "leaver", room });
    for (const c of [stays, watcher]) {
      await c.waitFor(about(202, "leaver"), "202 for leaver");
      assert.deepEqual(viewOf(c), ["leaver", "stays", "watcher"]);
    }

    await outage(async () => {
      await waitUntil(
        async () => (await readiness()).every((s) => s === 503),
        "/readyz to answer 503 on both nodes",
        WAIT_MS,
      );
      leaver.close();
    });
    await waitUntil(
      async () => (await readiness()).every((s) => s === 200),
      "/readyz 200 again",
      RECOVERY_MS,
    );
    for (const c of [stays, watcher]) {
      await waitUntil(
        async () => JSON.stringify(await listIds(c)) === JSON.stringify(["stays", "watcher"]),
        "the list without leaver",
        RECOVERY_MS,
      );
    }
    // The list is right; the users' screens must be too (a 203, or a fresh 201).
    for (const [name, c] of [
      ["stays (same node)", stays],
      ["watcher (other node)", watcher],
    ] as const) {
      await waitUntil(
        () => !viewOf(c).includes("leaver"),
        `${name}'s screen to stop showing leaver online (shows ${viewOf(c)})`,
        WAIT_MS,
      );
    }
  });
});

describe("a node that cannot reach Redis at start", { timeout: 60_000 }, () => {
  const pool = new ClientPool();
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    pool.closeAll();
    for (const f of cleanup.splice(0)) await f();
  });

  it("exits 1 with a message naming the Redis and the way to wait for it", async () => {
    const port = await freePort();
    const dir = tempDir();
    const pidFile = path.join(dir, "weigot-ws.pid");
    const base = ["start", "--adapter", "redis", "--redis-url", `redis://127.0.0.1:${port}`];
    base.push("--port", "0", "--workers", "1", "--pid-file", pidFile, "--log-format", "json");

    const startedAt = Date.now();
    const r = await runCliAsync(base);
    assert.equal(r.code, 1, `exit code; stderr: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`cannot reach Redis at redis://127\\.0\\.0\\.1:${port}`));
    assert.match(r.stderr, /--redis-wait/);
    assert.ok(Date.now() - startedAt < 10_000, "fails promptly");
    assert.equal(existsSync(pidFile), false, "no PID file left behind");

    const waited = await runCliAsync([...base, "--redis-wait", "1"]);
    assert.equal(waited.code, 1);
    assert.match(waited.stderr, /cannot reach Redis at .*after waiting 1 s/);
    assert.equal(existsSync(pidFile), false);
  });

  it("with --redis-wait 5 it waits: Redis starting 1 s later, the node starts and serves", async () => {
    const port = await freePort();
    const url = `redis://127.0.0.1:${port}`;
    const launchedAt = Date.now();
    const starting = startNode({ redisUrl: url, nodeId: "patient", args: ["--redis-wait", "5"] });
    // Redis arrives 1 s after the node (the scenario, not a wait for a state).
    await delay(1000);
    const redis = await startRedisServer({ port });
    cleanup.push(() => redis.stop());
    const node = await starting;
    cleanup.push(() => node.stop());
    assert.ok(Date.now() - launchedAt >= 1000);
    assert.equal(await node.readyz(), 200);
    const c = await pool.connect(node.url, { username: "patient-user", room: "wait" });
    assert.deepEqual(await listIds(c), ["patient-user"]);
    assert.equal((await c.say("hello")).action, 300);
  });
});
