/**
 * `weigot-ws reload`: a rolling restart of the workers under load. Fresh connections keep being
 * opened during the reload and every one must succeed on its first attempt; clients of the old
 * workers (reconnection on) move to the new ones by themselves, without their users flapping
 * offline and online.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import type { Envelope } from "../src/chat/protocol.js";
import { ChatClient, type ClientOptions, ClientPool } from "./support/chat-client.js";
import { runCliAsync, type ServiceHandle, startService, waitUntil } from "./support/service.js";

interface StatusJson {
  pid: number;
  ready: boolean;
  workers: { id: number; pid: number; state: string; connections?: number }[];
}

let service: ServiceHandle;

function status(): StatusJson {
  const r = service.cli(["status", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as StatusJson;
}

const presenceOf = (users: Set<string>) => (e: Envelope) =>
  (e.action === 202 || e.action === 203) && users.has(e.data.content.userInfo?.userId ?? "");

before(async () => {
  service = await startService();
});

after(async () => {
  await service?.stop();
});

describe("reload", { timeout: 180_000 }, () => {
  const pool = new ClientPool();
  afterEach(() => pool.closeAll());

  it("replaces every worker; no connection attempt fails; old clients move without flapping", async () => {
    const room = "reload";
    const before = status();
    assert.equal(before.workers.length, 2);
    const oldIds = new Set(before.workers.map((w) => w.id));
    const oldPids = new Set(before.workers.map((w) => w.pid));

    // Clients of the old workers, with reconnection on (as browsers have it).
    const moving: [string, ClientOptions][] = [
      ["ws-user", { transports: ["websocket"] }],
      ["poll-user", { transports: ["polling"] }],
      ["default-user", {}],
      ["tabs-user", { transports: ["websocket"] }],
      ["tabs-user", { transports: ["polling"] }],
      ["solo", { transports: ["websocket"] }],
    ];
    const movers: ChatClient[] = [];
    for (const [username, opts] of moving) {
      movers.push(
        await pool.connect(
          service.url,
          { username, room },
          { reconnection: true, reconnectionDelay: 200, reconnectionDelayMax: 1000, ...opts },
        ),
      );
    }
    const moverUsers = new Set(moving.map(([u]) => u));
    assert.equal(new Set(movers.map((c) => c.worker)).size, 2, "movers on both old workers");
    // The last mover's marker comes after every 202 of the movers' joins.
    const last = movers[movers.length - 1];
    last.send({ type: "text", content: { message: "movers ready" } });
    const marks: number[] = [];
    for (const c of movers) {
      const m = await c.waitFor(
        (e) => e.action === 300 && e.data.content.message === "movers ready",
        "movers ready",
      );
      marks.push(c.received.indexOf(m) + 1);
    }

    // Fresh connections, one after the other on three loops, for as long as the reload runs.
    let reloading = true;
    const reload = runCliAsync(["reload", "--pid-file", service.pidFile]).finally(() => {
      reloading = false;
    });
    const attempts: { ok: boolean; worker?: number; error?: string }[] = [];
    const probes: ChatClient[] = [];
    const loop = async (n: number) => {
      for (let i = 0; reloading; i++) {
        const opts: ClientOptions = { transports: i % 2 === 0 ? ["websocket"] : ["polling"] };
        try {
          const c = await ChatClient.connect(
            service.url,
            { username: `probe${n}-${i}`, room },
            opts,
          );
          attempts.push({ ok: true, worker: c.worker });
          probes.push(c);
          // Keep the last few open for a while: they watch the movers too.
          if (probes.length > 6) probes.shift()?.close();
        } catch (err) {
          attempts.push({ ok: false, error: String(err) });
        }
      }
    };
    const loops = Promise.all([loop(0), loop(1), loop(2)]);
    const r = await reload;
    await loops;
    assert.equal(r.code, 0, `reload: ${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /reload complete/);

    assert.ok(attempts.length >= 20, `enough attempts during the reload (${attempts.length})`);
    const probeWorkers = new Set(attempts.map((a) => a.worker));
    assert.ok(
      [...probeWorkers].some((w) => w !== undefined && !oldIds.has(w)),
      "some probes reached new workers",
    );

    // New workers: new pids, all ready.
    const afterReload = status();
    assert.equal(afterReload.workers.length, 2);
    for (const w of afterReload.workers) {
      assert.ok(!oldPids.has(w.pid), `worker pid ${w.pid} is new`);
      assert.ok(!oldIds.has(w.id));
      assert.equal(w.state, "ready");
    }
    assert.equal(afterReload.pid, before.pid, "the primary stays");

    // The old clients were told, lost their transport, and came back by themselves.
    for (const [i, c] of movers.entries()) {
      const notice = c.all((e) => e.action === 100, marks[i]);
      assert.ok(notice.length > 0, `mover ${i} got the reload notice`);
      assert.match(notice[0].data.content.message ?? "", /reload/);
      assert.equal(notice[0].data.content.error, undefined);
      assert.ok(c.disconnects.length > 0, `mover ${i} was disconnected`);
      assert.ok(
        c.disconnects.every((d) => d === "transport close" || d === "transport error"),
        `mover ${i} disconnects: ${c.disconnects}`,
      );
      await c.waitReconnected(marks[i], `mover ${i} to reconnect`, 15_000);
      await waitUntil(() => c.connected && !oldIds.has(c.worker), `mover ${i} on a new worker`);
    }
    // They receive messages again.
    const fromNow = movers.map((c) => c.mark());
    movers[0].send({ type: "text", content: { message: "after the reload" } });
    for (const [i, c] of movers.entries()) {
      await c.waitFor(
        (e) => e.action === 300 && e.data.content.message === "after the reload",
        `mover ${i} receives again`,
        8000,
        fromNow[i],
      );
    }
    // Everyone is listed once.
    const list = (await movers[1].request("onlineList")).data.content.userList ?? [];
    const listed = list.map((u) => u.userId).filter((u) => moverUsers.has(u));
    assert.deepEqual(listed.sort(), [...moverUsers].sort());

    // No 203/202 flapping for the movers: the old workers are gone (their delayed leaves ran
    // before they exited), so a marker now closes the window. The last probes, connected to
    // the new workers near the end of the reload, watch too.
    const watching = probes.filter((p) => p.connected && !oldIds.has(p.worker));
    movers[0].send({ type: "text", content: { message: "final marker" } });
    for (const [i, c] of [...movers, ...watching].entries()) {
      await c.waitFor(
        (e) => e.action === 300 && e.data.content.message === "final marker",
        `final marker at ${i}`,
      );
      const flaps = c.all(presenceOf(moverUsers), i < movers.length ? marks[i] : 0);
      assert.deepEqual(
        flaps.map((e) => `${e.action} ${e.data.content.userInfo?.userId}`),
        [],
        `client ${i} saw no offline/online of a mover`,
      );
    }
    for (const p of probes) p.close();

    // Every connection attempt made during the reload succeeded the first time (checked last,
    // so that a failure here does not hide the rest).
    const failed = attempts.filter((a) => !a.ok);
    assert.deepEqual(failed, [], `${failed.length} of ${attempts.length} attempts failed`);
  });

  it("a second reload works as well (and the service still serves)", async () => {
    const before = status();
    const r = await runCliAsync(["reload", "--pid-file", service.pidFile]);
    assert.equal(r.code, 0, r.stderr);
    const afterReload = status();
    assert.equal(afterReload.workers.length, 2);
    for (const w of afterReload.workers) {
      assert.ok(!before.workers.some((o) => o.pid === w.pid));
    }
    const a = await pool.connect(service.url, { username: "a", room: "reload-2" });
    const b = await pool.connect(service.url, { username: "b", room: "reload-2" });
    assert.notEqual(a.worker, b.worker);
    await a.say("hi");
    await b.waitFor((e) => e.action === 300 && e.data.content.message === "hi", "hi at b");
  });
});
