/**
 * Presence across the workers of one node (the store lives in the primary): sessions are spread
 * round-robin, tabs of one user on different workers are one user, and a burst of concurrent
 * joins and leaves leaves every view of the room exactly right.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import type { Envelope, UserInfo } from "../src/chat/protocol.js";
import { ChatClient, ClientPool, type Transport } from "./support/chat-client.js";
import { seededRandom } from "./support/seeded-random.js";
import { SCRIPTED_RATES, type ServiceHandle, startService, waitUntil } from "./support/service.js";

const WAIT_MS = 10_000;

interface StatusJson {
  running: boolean;
  connections: number;
  users: number;
  workers: { id: number; pid: number; connections?: number }[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function listIds(client: ChatClient): Promise<string[]> {
  const reply = await client.request("onlineList");
  assert.equal(reply.action, 201);
  return (reply.data.content.userList ?? []).map((u) => u.userId).sort();
}

/** Who is online according to the 201 a client got at connect and the 202/203 since. */
function viewFromEvents(client: ChatClient): Map<string, string[]> {
  const online = new Map<string, string[]>();
  const first = client.received.find((e) => e.action === 201);
  for (const u of first?.data.content.userList ?? []) online.set(u.userId, ["201"]);
  const history = new Map<string, string[]>();
  for (const e of client.received.slice(client.received.indexOf(first as Envelope) + 1)) {
    const u = e.data.content.userInfo;
    if (!u || (e.action !== 202 && e.action !== 203)) continue;
    history.set(u.userId, [...(history.get(u.userId) ?? []), String(e.action)]);
    if (e.action === 202) online.set(u.userId, history.get(u.userId) ?? []);
    else online.delete(u.userId);
  }
  return new Map([...online.keys()].map((id) => [id, history.get(id) ?? []]));
}

let service: ServiceHandle;

before(async () => {
  service = await startService(SCRIPTED_RATES);
});

after(async () => {
  await service?.stop();
});

describe("presence across workers", { timeout: 120_000 }, () => {
  const pool = new ClientPool();
  let roomSeq = 0;
  const newRoom = () => `presence-${++roomSeq}`;
  afterEach(() => pool.closeAll());

  for (const transport of ["websocket", "polling"] as Transport[]) {
    it(`new ${transport} sessions alternate between the two workers`, async () => {
      const room = newRoom();
      const clients: ChatClient[] = [];
      for (let i = 0; i < 6; i++) {
        clients.push(
          await pool.connect(service.url, { username: `u${i}`, room }, { transports: [transport] }),
        );
      }
      const workers = clients.map((c) => c.worker);
      assert.ok(
        workers.every((w) => Number.isInteger(w) && w > 0),
        `worker ids ${workers}`,
      );
      assert.equal(new Set(workers).size, 2, `two workers used: ${workers}`);
      for (let i = 1; i < workers.length; i++) {
        assert.notEqual(workers[i], workers[i - 1], `consecutive sessions alternate: ${workers}`);
      }
      const status = JSON.parse(service.cli(["status", "--json"]).stdout) as StatusJson;
      const pids = new Set(status.workers.map((w) => w.id));
      for (const w of workers) assert.ok(pids.has(w), `worker ${w} is one of ${[...pids]}`);
    });
  }

  it("two tabs of one user on different workers are one list entry, wherever it is asked", async () => {
    const room = newRoom();
    const tab1 = await pool.connect(service.url, { username: "dana", room });
    const tab2 = await pool.connect(service.url, { username: "dana", room });
    const eve = await pool.connect(service.url, { username: "eve", room });
    const frank = await pool.connect(service.url, { username: "frank", room });
    assert.notEqual(tab1.worker, tab2.worker);
    assert.notEqual(eve.worker, frank.worker);
    const dana: UserInfo = { fd: tab1.fd, userId: "dana", username: "dana", room };
    for (const c of [tab1, tab2, eve, frank]) {
      const reply = await c.request("onlineList");
      assert.deepEqual(reply.data.content.userList?.[0], dana);
      assert.deepEqual(
        reply.data.content.userList?.map((u) => u.userId),
        ["dana", "eve", "frank"],
      );
    }
    // tab2's own 201 listed dana once, too.
    assert.deepEqual(
      tab2.received[1].data.content.userList?.map((u) => u.userId),
      ["dana"],
    );
    // Closing the first tab keeps dana listed, now by her second tab.
    tab1.close();
    await waitUntil(
      async () => {
        const list = (await eve.request("onlineList")).data.content.userList ?? [];
        return list.length === 3 && list[0].fd === tab2.fd;
      },
      "dana's entry to move to tab2",
      WAIT_MS,
    );
    assert.deepEqual(await listIds(frank), ["dana", "eve", "frank"]);
  });

  it("users moving between workers are never shown offline while online (202/203 in store order)", async () => {
    // A user's last connection leaves on one worker while their next one joins on the other:
    // the store orders the leave before the join, so every watcher must end up seeing the user
    // online. Several users move at once, round after round.
    const room = newRoom();
    const watchers = [
      await pool.connect(service.url, { username: "watcher-a", room }),
      await pool.connect(service.url, { username: "watcher-b", room }),
    ];
    assert.notEqual(watchers[0].worker, watchers[1].worker);
    const movers = Array.from({ length: 6 }, (_, k) => `mover${k}`);
    const presenceOf = (w: ChatClient, user: string, from: number) =>
      w
        .all(
          (e) => (e.action === 202 || e.action === 203) && e.data.content.userInfo?.userId === user,
          from,
        )
        .map((e) => e.action);
    let crossWorker = 0;
    for (let round = 0; round < 60; round++) {
      const marks = watchers.map((w) => w.mark());
      const moves = await Promise.all(
        movers.map(async (user, k) => {
          const c1 = await pool.connect(service.url, { username: user, room });
          // c2's transport is open (its worker chosen); its socket.io CONNECT goes out in the
          // same tick as c1's disconnect, so both reach their workers at about the same time.
          const c2 = pool.add(
            new ChatClient(service.url, { username: user, room }, { autoConnect: false }),
          );
          await new Promise<void>((resolve, reject) =>
            c2.socket.io.open((err) => (err ? reject(err) : resolve())),
          );
          return { user, k, c1, c2 };
        }),
      );
      for (const { c1, c2, k } of moves) {
        if ((round + k) % 2 === 0) {
          c1.close();
          c2.socket.connect();
        } else {
          c2.socket.connect();
          c1.close();
        }
      }
      for (const { c1, c2 } of moves) {
        await c2.waitFor((e) => e.action === 201, "c2's 201", WAIT_MS);
        if (c1.worker !== c2.worker) crossWorker++;
      }
      // Settled in the store: every c1 left and every c2 joined.
      await waitUntil(
        async () => {
          const list = (await watchers[0].request("onlineList")).data.content.userList ?? [];
          return moves.every(({ user, c2 }) => list.find((u) => u.userId === user)?.fd === c2.fd);
        },
        "every mover's entry to be its c2",
        WAIT_MS,
      );
      // A marker from each worker closes the window of what the workers announced.
      for (const [n, w] of watchers.entries()) {
        w.send({ type: "text", content: { message: `marker ${round}.${n}` } });
      }
      for (const w of watchers) {
        for (const n of [0, 1]) {
          await w.waitFor(
            (e) => e.action === 300 && e.data.content.message === `marker ${round}.${n}`,
            "marker",
            WAIT_MS,
          );
        }
      }
      for (const [n, w] of watchers.entries()) {
        for (const { user, c1, c2 } of moves) {
          const seen = presenceOf(w, user, marks[n]);
          assert.equal(
            seen.at(-1),
            202,
            `round ${round}: ${user} is online (c1 on worker ${c1.worker} left, c2 on worker ${c2.worker} joined) but the watcher on worker ${w.worker} was told ${JSON.stringify(seen)}`,
          );
        }
      }
      for (const { c2 } of moves) c2.close();
      for (const [n, w] of watchers.entries()) {
        await w.until(
          () => movers.every((u) => presenceOf(w, u, marks[n]).at(-1) === 203),
          `round ${round}: 203 for every mover`,
          WAIT_MS,
        );
      }
      pool.clients.splice(2);
    }
    assert.ok(crossWorker > 60, `most moves crossed workers (${crossWorker})`);
  });

  it("a burst of 30 clients of 10 users joining and leaving at random leaves the room exactly right", async () => {
    const seed = Number(process.env.WWS_SEED ?? Date.now() % 1_000_000);
    const random = seededRandom(seed);
    const note = `(seed ${seed}; replay with WWS_SEED=${seed})`;
    const room = newRoom();
    const watchers = [
      await pool.connect(service.url, { username: "watcher-a", room }),
      await pool.connect(service.url, { username: "watcher-b", room }),
    ];
    assert.notEqual(watchers[0].worker, watchers[1].worker);

    const users = Array.from({ length: 10 }, (_, i) => `user${i}`);
    const plan = Array.from({ length: 30 }, (_, i) => ({
      user: users[i % users.length],
      transport: (random() < 0.5 ? "websocket" : "polling") as Transport,
      joinAt: Math.floor(random() * 400),
      leaveAfter: random() < 0.5 ? Math.floor(random() * 400) : undefined,
    }));
    const stays = new Set<string>();
    const clients = await Promise.all(
      plan.map(async (p) => {
        await sleep(p.joinAt);
        const c = await pool.connect(
          service.url,
          { username: p.user, room },
          { transports: [p.transport] },
        );
        if (p.leaveAfter === undefined) {
          stays.add(p.user);
          return c;
        }
        await sleep(p.leaveAfter);
        c.close();
        return c;
      }),
    );
    const workersUsed = new Set(clients.map((c) => c.worker));
    assert.equal(workersUsed.size, 2, "the burst used both workers");
    const expected = [...stays, "watcher-a", "watcher-b"].sort();

    // The list converges to exactly the users with a connection left, asked on either worker.
    for (const w of watchers) {
      await waitUntil(
        async () => JSON.stringify(await listIds(w)) === JSON.stringify(expected),
        `onlineList = ${expected} ${note}`,
        WAIT_MS,
      ).catch(async (err) => {
        assert.deepEqual(await listIds(w), expected, `${String(err)}`);
      });
    }
    // Every user who left for good got their 203 at both watchers.
    for (const w of watchers) {
      for (const u of users.filter((x) => !stays.has(x))) {
        await w.until(
          () => w.all((e) => e.action === 203 && e.data.content.userInfo?.userId === u).length > 0,
          `203 for ${u} ${note}`,
          WAIT_MS,
        );
      }
    }
    const status = JSON.parse(service.cli(["status", "--json"]).stdout) as StatusJson;
    assert.ok(status.users >= expected.length, `status counts the room's users: ${status.users}`);

    // What each watcher was told (its 201, then every 202/203) adds up to the same set.
    const views = watchers.map((w) => viewFromEvents(w));
    for (const [i, view] of views.entries()) {
      assert.deepEqual(
        [...view.keys()].filter((u) => !u.startsWith("watcher")).sort(),
        [...stays].sort(),
        `watcher ${i}'s 202/203 stream ends with the right users ${note}: ${JSON.stringify([...view])}`,
      );
    }
  });
});
