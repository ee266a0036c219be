/**
 * Exact presence views under churn: hundreds of users with 1–3 tabs join and leave at random
 * while a worker is SIGKILLed, and every client that builds its list by the README's rule (its
 * 201, then the 202/203 with a greater version) ends with the true list, having never seen an
 * event before its 201 nor one that contradicts its view. Cluster mode, and Redis mode across
 * 2 nodes.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { ChatClient } from "./support/chat-client.js";
import { startNode } from "./support/cluster-nodes.js";
import { PresenceView } from "./support/presence-view.js";
import { type RedisServer, startRedisServer } from "./support/redis-server.js";
import { seededRandom } from "./support/seeded-random.js";
import { SCRIPTED_RATES, startService, waitUntil } from "./support/service.js";

const USERS = 120;
const CHURN_MS = 6_000;
const ROOM = "churn";

interface Tab {
  client: ChatClient;
  view: PresenceView;
  userId: string;
}

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/**
 * Runs the churn against `urls` (tabs pick one at random), calls `kill` half-way, then checks
 * every open tab's view against the truth once presence has settled.
 */
async function churn(
  t: { diagnostic(msg: string): void },
  urls: string[],
  kill: () => Promise<void>,
  settleMs: number,
): Promise<void> {
  const seed = Date.now();
  t.diagnostic(`seed ${seed}`);
  const rand = seededRandom(seed);
  const tabs = new Map<string, Tab[]>();
  const all: Tab[] = [];
  const open = (userId: string) => {
    const url = urls[Math.floor(rand() * urls.length)];
    const client = new ChatClient(
      url,
      { userId, username: userId, room: ROOM },
      { reconnection: true, transports: ["websocket"] },
    );
    const tab = { client, view: new PresenceView(client), userId };
    all.push(tab);
    tabs.set(userId, [...(tabs.get(userId) ?? []), tab]);
  };
  cleanups.push(() => {
    for (const tab of all) tab.client.close();
  });
  for (let i = 0; i < USERS; i++) open(`u${i}`);
  const started = Date.now();
  let killed = false;
  while (Date.now() - started < CHURN_MS) {
    const userId = `u${Math.floor(rand() * USERS)}`;
    const mine = tabs.get(userId) ?? [];
    if (mine.length === 0 || (mine.length < 3 && rand() < 0.5)) open(userId);
    else {
      const [tab] = mine.splice(Math.floor(rand() * mine.length), 1);
      tab.client.close();
    }
    if (!killed && Date.now() - started > CHURN_MS / 2) {
      killed = true;
      await kill();
    }
    await new Promise((r) => setTimeout(r, 5 + rand() * 20));
  }
  const live = [...tabs.values()].flat();
  const expected = [...tabs.entries()]
    .filter(([, list]) => list.length > 0)
    .map(([id]) => id)
    .sort();
  t.diagnostic(
    `${all.length} tabs opened, ${live.length} open at the end, ${expected.length} users`,
  );
  // Every open tab is connected again and has its 201 (the killed worker's tabs reconnect).
  await waitUntil(
    () => live.every((tab) => tab.client.connected && tab.view.version !== null) || undefined,
    "every open tab connected with its 201",
    20_000,
  );
  // The truth settles once the killed worker's entries are reaped (after the grace).
  const probe = live[0].client;
  const truth = async () => {
    const reply = await probe.request("onlineList", { limit: 1000 });
    return (reply.data.content.userList ?? []).map((u) => u.userId).sort();
  };
  await waitUntil(
    async () => (JSON.stringify(await truth()) === JSON.stringify(expected) ? true : undefined),
    "the store's list to be the users with an open tab",
    settleMs,
  );
  const wrong = () =>
    live.filter((tab) => JSON.stringify(tab.view.sorted(tab.userId)) !== JSON.stringify(expected));
  await waitUntil(() => wrong().length === 0 || undefined, "every view to settle", 5_000).catch(
    () => {},
  );
  const bad = wrong();
  assert.equal(
    bad.length,
    0,
    `${bad.length} of ${live.length} views differ from the truth, e.g. ${bad
      .slice(0, 3)
      .map((tab) => {
        const view = tab.view.sorted(tab.userId);
        const ghosts = view.filter((u) => !expected.includes(u));
        const missing = expected.filter((u) => !view.includes(u));
        return `${tab.userId}: ghosts ${ghosts} missing ${missing}`;
      })
      .join("; ")}`,
  );
  const sum = (f: (v: PresenceView) => number) => all.reduce((n, tab) => n + f(tab.view), 0);
  const contradictions = all.flatMap((tab) => tab.view.contradictions);
  t.diagnostic(`stale events dropped by clients: ${sum((v) => v.stale)}`);
  assert.equal(
    sum((v) => v.early),
    0,
    "202/203 before a connection's 201",
  );
  assert.equal(
    sum((v) => v.unversioned),
    0,
    "201/202/203 without a version",
  );
  assert.deepEqual(contradictions.slice(0, 5), [], `${contradictions.length} contradictions`);
}

describe("exact presence views under churn", { timeout: 120_000 }, () => {
  it("cluster mode, a worker SIGKILLed mid-run", async (t) => {
    const service = await startService(SCRIPTED_RATES);
    cleanups.push(() => service.stop());
    await churn(
      t,
      [service.url],
      async () => {
        const status = JSON.parse(service.cli(["status", "--json"]).stdout) as {
          workers: { pid: number }[];
        };
        process.kill(status.workers[0].pid, "SIGKILL");
      },
      30_000,
    );
  });

  it("Redis mode across 2 nodes, a worker SIGKILLed mid-run", async (t) => {
    const redis: RedisServer = await startRedisServer();
    cleanups.push(() => redis.stop());
    const nodes = await Promise.all(
      ["p1", "p2"].map((nodeId) =>
        startNode({ redisUrl: redis.url, nodeId, args: SCRIPTED_RATES }),
      ),
    );
    for (const node of nodes) cleanups.push(() => node.stop());
    await churn(
      t,
      nodes.map((n) => n.url),
      async () => {
        const status = await nodes[0].status();
        process.kill(status.workers[0].pid, "SIGKILL");
      },
      30_000,
    );
  });
});
