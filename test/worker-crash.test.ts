/**
 * A worker killed with SIGKILL (it runs no disconnect handler): its users go offline for the
 * others within 5 s unless they have another connection, the other worker's clients carry on
 * undisturbed, and the primary forks a replacement.
 */
import assert from "node:assert/strict";
import http from "node:http";
import { after, afterEach, before, describe, it } from "node:test";
import type { Envelope } from "../src/chat/protocol.js";
import { RECONNECT_GRACE_MS } from "../src/presence/reconnect-grace.js";
import { type ChatClient, ClientPool } from "./support/chat-client.js";
import { SCRIPTED_RATES, type ServiceHandle, startService, waitUntil } from "./support/service.js";

interface StatusJson {
  running: boolean;
  ready: boolean;
  workers: { id: number; pid: number; state: string; connections?: number }[];
}

/** A crashed worker's users stay online for the grace (their clients may come back), then go. */
const OFFLINE_WITHIN_MS = RECONNECT_GRACE_MS + 5000;

let service: ServiceHandle;

function status(): StatusJson {
  const r = service.cli(["status", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as StatusJson;
}

function pidOf(workerId: number): number {
  const w = status().workers.find((x) => x.id === workerId);
  assert.ok(w, `worker ${workerId} is in the status`);
  return w.pid;
}

const about = (action: number, userId: string) => (e: Envelope) =>
  e.action === action && e.data.content.userInfo?.userId === userId;
const isText = (text: string) => (e: Envelope) =>
  e.action === 300 && e.data.content.message === text;

async function listIds(c: ChatClient): Promise<string[]> {
  const reply = await c.request("onlineList");
  return (reply.data.content.userList ?? []).map((u) => u.userId).sort();
}

before(async () => {
  service = await startService(SCRIPTED_RATES);
});

after(async () => {
  await service?.stop();
});

describe("a worker killed with SIGKILL", { timeout: 120_000 }, () => {
  const pool = new ClientPool();
  afterEach(() => pool.closeAll());

  it("its users go offline within 5 s, the other worker's clients carry on, a replacement is forked", async () => {
    const room = "crash-1";
    const join = (username: string, opts = {}) =>
      pool.connect(service.url, { username, room }, { transports: ["websocket"], ...opts });
    // Round-robin: even joins on one worker, odd ones on the other.
    const doomed1 = await join("doomed1");
    const alive1 = await join("alive1");
    const doomed2 = await join("doomed2", { transports: ["polling"] });
    const alive2 = await join("alive2", { transports: ["polling"] });
    const tabbedOnDoomed = await join("tabbed");
    const tabbedOnAlive = await join("tabbed");
    const comeback = await join("comeback", { reconnection: true, reconnectionDelayMax: 1000 });
    const victimWorker = doomed1.worker;
    for (const c of [doomed2, tabbedOnDoomed, comeback]) assert.equal(c.worker, victimWorker);
    for (const c of [alive1, alive2, tabbedOnAlive]) assert.notEqual(c.worker, victimWorker);
    const survivors = [alive1, alive2, tabbedOnAlive];
    const marks = survivors.map((c) => c.mark());
    const before = status();
    assert.equal(before.workers.length, 2);
    const victimPid = pidOf(victimWorker);

    const fromComeback = comeback.mark();
    const killedAt = Date.now();
    process.kill(victimPid, "SIGKILL");

    // Its users who have no other connection go offline at every other client within 5 s.
    for (const [i, c] of survivors.entries()) {
      for (const user of ["doomed1", "doomed2"]) {
        await c.waitFor(about(203, user), `203 for ${user}`, OFFLINE_WITHIN_MS + 2000, marks[i]);
      }
    }
    const elapsed = Date.now() - killedAt;
    assert.ok(elapsed < OFFLINE_WITHIN_MS, `offline announced after ${elapsed} ms`);
    assert.ok(elapsed >= RECONNECT_GRACE_MS - 500, `not before the grace: ${elapsed} ms`);
    // comeback reconnected within the grace: never shown offline.
    for (const [i, c] of survivors.entries()) {
      assert.deepEqual(c.all(about(203, "comeback"), marks[i]), [], "no 203 for comeback");
    }

    // The survivors were not disturbed and still talk to each other.
    for (const c of survivors) {
      assert.equal(c.connected, true);
      assert.deepEqual(c.disconnects, []);
    }
    alive1.send({ type: "text", content: { message: "still here" } });
    for (const [i, c] of survivors.entries()) {
      await c.waitFor(isText("still here"), "message after the crash", 5000, marks[i]);
    }
    // "tabbed" kept a connection: no 203 for them (alive1's marker comes after the reaping).
    await waitUntil(
      async () => !(await listIds(alive2)).includes("doomed1"),
      "doomed1 to leave the list",
    );
    alive1.send({ type: "text", content: { message: "after reaping" } });
    for (const [i, c] of survivors.entries()) {
      const marker = await c.waitFor(isText("after reaping"), "marker", 5000, marks[i]);
      const upTo = c.received.indexOf(marker);
      assert.deepEqual(
        c.received.slice(marks[i], upTo).filter(about(203, "tabbed")),
        [],
        "no 203 for a user with a connection left",
      );
    }
    const list = (await alive1.request("onlineList")).data.content.userList ?? [];
    assert.deepEqual(
      list.map((u) => u.userId).sort(),
      ["alive1", "alive2", "tabbed"]
        .concat(list.some((u) => u.userId === "comeback") ? ["comeback"] : [])
        .sort(),
    );
    assert.equal(list.find((u) => u.userId === "tabbed")?.fd, tabbedOnAlive.fd);

    // A replacement worker is forked and takes new sessions.
    const replaced = await waitUntil(
      () => {
        const s = status();
        return s.workers.length === 2 && s.workers.every((w) => w.state === "ready")
          ? s
          : undefined;
      },
      "a replacement worker",
      15_000,
    );
    const pids = replaced.workers.map((w) => w.pid);
    assert.ok(!pids.includes(victimPid), `the dead pid ${victimPid} is gone: ${pids}`);
    assert.ok(pids.includes(before.workers.find((w) => w.id !== victimWorker)!.pid));
    // A client with reconnection on comes back by itself, and is online again.
    await comeback.waitReconnected(fromComeback, "comeback to reconnect", 15_000);
    assert.notEqual(comeback.worker, victimWorker);
    await waitUntil(async () => (await listIds(alive1)).includes("comeback"), "comeback online");
    const msg = await comeback.say("back again");
    assert.equal(msg.data.content.userInfo?.userId, "comeback");
    await alive2.waitFor(isText("back again"), "comeback's message", 5000, marks[1]);
    // New sessions alternate over the survivor and the replacement (nothing else connects now).
    const fresh1 = await join("fresh1");
    const fresh2 = await join("fresh2");
    assert.notEqual(fresh1.worker, fresh2.worker);
    const ids = replaced.workers.map((w) => w.id);
    assert.ok(ids.includes(fresh1.worker) && ids.includes(fresh2.worker));

    // The killed worker's clients lost their connection (and were not left hanging).
    for (const [name, c] of [
      ["doomed1 (websocket)", doomed1],
      ["doomed2 (polling)", doomed2],
      ["tabbed (websocket)", tabbedOnDoomed],
    ] as const) {
      const reason = await c.waitDisconnect(`${name} to be disconnected`, 10_000);
      assert.match(reason, /transport (close|error)/);
    }
  });

  it("when a second worker dies just after the first, the users of both still go offline", async () => {
    // Worker B is frozen (SIGSTOP) while worker A is killed: A's users are then handed to B to
    // be announced offline, and B dies too before it can do so.
    const room = "crash-2";
    const onA = await pool.connect(service.url, { username: "on-a", room });
    const onB = await pool.connect(service.url, { username: "on-b", room });
    assert.notEqual(onA.worker, onB.worker);
    const workers = status().workers;
    const pidA = workers.find((w) => w.id === onA.worker)!.pid;
    const pidB = workers.find((w) => w.id === onB.worker)!.pid;
    process.kill(pidB, "SIGSTOP");
    try {
      process.kill(pidA, "SIGKILL");
      // The primary has seen A go (and forks its replacement).
      await waitUntil(() => !status().workers.some((w) => w.pid === pidA), "A to leave the status");
    } finally {
      process.kill(pidB, "SIGKILL");
    }
    const back = await waitUntil(
      () => {
        const s = status();
        return s.ready &&
          s.workers.length === 2 &&
          s.workers.every((w) => w.state === "ready" && w.pid !== pidA && w.pid !== pidB)
          ? s
          : undefined;
      },
      "two fresh workers",
      20_000,
    );
    const a = await pool.connect(service.url, { username: "a", room });
    const b = await pool.connect(service.url, { username: "b", room });
    assert.notEqual(
      a.worker,
      b.worker,
      `new sessions alternate over ${JSON.stringify(back.workers.map((w) => w.id))}`,
    );
    // Both dead workers' users were reaped: the room holds exactly the new users.
    await waitUntil(
      async () => JSON.stringify(await listIds(a)) === JSON.stringify(["a", "b"]),
      "the list to hold a and b only",
      OFFLINE_WITHIN_MS,
    ).catch(async (err: unknown) => {
      assert.fail(`${String(err)}; the list is ${JSON.stringify(await listIds(a))}`);
    });
    const m = await a.say("hello again");
    assert.equal(m.action, 300);
    await b.waitFor(isText("hello again"), "message across the new workers");
  });

  it("a request on its way to a worker that dies before taking it is not left hanging", async () => {
    // A polling client's next request goes through the primary to the session's worker; the
    // worker is frozen so that it cannot take the request, then killed.
    const client = await pool.connect(
      service.url,
      { username: "poller", room: "crash-3" },
      { transports: ["polling"] },
    );
    const sid = (client.socket.io.engine as unknown as { id: string }).id;
    const pid = pidOf(client.worker);
    process.kill(pid, "SIGSTOP");
    const answered = new Promise<string>((resolve) => {
      const req = http.get(
        {
          host: "127.0.0.1",
          port: service.port,
          path: `/socket.io/?EIO=4&transport=polling&sid=${encodeURIComponent(sid)}`,
          agent: false,
        },
        (res) => {
          res.resume();
          res.on("end", () => resolve(`HTTP ${res.statusCode}`));
          res.on("error", () => resolve("closed"));
        },
      );
      req.on("error", (err) => resolve(`closed (${err.message})`));
      req.setTimeout(10_000, () => {
        req.destroy();
        resolve("no answer in 10 s");
      });
    });
    // Let the primary hand the request over, then kill the worker.
    await new Promise((r) => setTimeout(r, 200));
    process.kill(pid, "SIGKILL");
    const outcome = await answered;
    assert.notEqual(outcome, "no answer in 10 s", "the request was left hanging");
    await waitUntil(
      () => status().workers.every((w) => w.pid !== pid && w.state === "ready"),
      "a replacement",
      15_000,
    );
  });
});
