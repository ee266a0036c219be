/**
 * Per-user rate limits across nodes (Redis mode): a user's budget is one, whichever node each of
 * their connections is on; with Redis down each process still limits on its own instead of
 * refusing everything or nothing.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import type { Envelope } from "../src/chat/protocol.js";
import { ClientPool } from "./support/chat-client.js";
import { type NodeHandle, startNode } from "./support/cluster-nodes.js";
import { type RedisServer, startRedisServer } from "./support/redis-server.js";

const text = (message: string) => ({ type: "text", content: { message } });
const outcome = (e: Envelope) => e.data.content.error?.code ?? e.action;
const LIMITS = ["--message-rate", "100/30s", "--user-message-rate", "6/30s", "--max-refusals", "0"];

describe("per-user rate limits across nodes", () => {
  let redis: RedisServer;
  let nodes: NodeHandle[];
  const pool = new ClientPool();
  before(async () => {
    redis = await startRedisServer();
    nodes = await Promise.all(
      ["rl-a", "rl-b"].map((nodeId) =>
        startNode({ redisUrl: redis.url, nodeId, workers: 1, args: LIMITS }),
      ),
    );
  });
  afterEach(() => pool.closeAll());
  after(async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    await redis.stop();
  });

  it("counts one user's messages on two nodes against one budget", async () => {
    const onA = await pool.connect(nodes[0].url, { username: "roamer", room: "x" });
    const onB = await pool.connect(nodes[1].url, { username: "roamer", room: "x" });
    const replies: Envelope[] = [];
    for (let i = 0; i < 5; i++) replies.push(await onA.request("message", text(`a${i}`)));
    for (let i = 0; i < 5; i++) replies.push(await onB.request("message", text(`b${i}`)));
    assert.deepEqual(replies.map(outcome), [
      300,
      300,
      300,
      300,
      300,
      300,
      "E_RATE_LIMITED",
      "E_RATE_LIMITED",
      "E_RATE_LIMITED",
      "E_RATE_LIMITED",
    ]);
    // Another user is not affected.
    const other = await pool.connect(nodes[1].url, { username: "other", room: "x" });
    assert.equal((await other.request("message", text("mine"))).action, 300);
  });

  it("keeps limiting, per process, while Redis is down", async () => {
    const client = await pool.connect(nodes[0].url, { username: "during-outage", room: "y" });
    await redis.kill();
    try {
      const replies: Envelope[] = [];
      for (let i = 0; i < 8; i++) replies.push(await client.request("message", text(`m${i}`)));
      // The per-user budget is counted by this process alone: the first 6 pass the limits (and
      // are then refused by the history, which cannot store them: E_UNAVAILABLE), the rest are
      // refused by the limit without waiting for Redis.
      assert.deepEqual(replies.map(outcome), [
        "E_UNAVAILABLE",
        "E_UNAVAILABLE",
        "E_UNAVAILABLE",
        "E_UNAVAILABLE",
        "E_UNAVAILABLE",
        "E_UNAVAILABLE",
        "E_RATE_LIMITED",
        "E_RATE_LIMITED",
      ]);
    } finally {
      await redis.restart();
    }
  });
});
