/**
 * Nothing lost (cluster mode): under steady traffic, a network cut (made by a TCP relay in the
 * test), a `reload`, a worker SIGKILL and a `restart`. Senders retry each message with its cid
 * until acked; receivers reconnect with `since`. Once the disruption is over, every client holds
 * every acked message exactly once, at its acked seq, in order, with no gap, and nothing that was
 * never acked (see support/nothing-lost.ts).
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import path from "node:path";
import { after, afterEach, before, describe, it, type TestContext } from "node:test";
import type { ClientOptions } from "./support/chat-client.js";
import { type CutMode, type CutRelay, startCutRelay } from "./support/cut-relay.js";
import { freePort } from "./support/nginx.js";
import { settle, startTraffic, verdict } from "./support/nothing-lost.js";
import { ResilientClient, waitFor } from "./support/resilient-client.js";
import {
  runCli,
  runCliAsync,
  SCRIPTED_RATES,
  type ServiceHandle,
  startService,
  tempDir,
  waitUntil,
} from "./support/service.js";

const SENDERS = 4;
const RECEIVERS = 6;
/** A 20 s cut at this traffic is ~600 messages: more than the default --history-size (100). */
const HISTORY = ["--history-size", "2000"];

const clients: ResilientClient[] = [];
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Room {
  senders: ResilientClient[];
  receivers: ResilientClient[];
  all: ResilientClient[];
}

/**
 * Senders and receivers of a fresh room (websocket-only and default transports alternate), and a
 * second tab of r0, the private messages' recipient, on the senders' side.
 */
async function openRoom(
  senderUrl: string,
  receiverUrl: string,
  room: string,
  opts: ClientOptions = {},
): Promise<Room> {
  const make = (url: string, name: string, i: number) =>
    new ResilientClient(
      url,
      { userId: name, username: name, room },
      { ...(i % 2 === 0 ? { transports: ["websocket"] } : {}), ...opts },
    );
  const senders = Array.from({ length: SENDERS }, (_, i) => make(senderUrl, `s${i}`, i));
  const receivers = Array.from({ length: RECEIVERS }, (_, i) => make(receiverUrl, `r${i}`, i));
  // r0, who gets the private messages, has a second tab on the senders' side (never cut).
  const all = [...senders, ...receivers, make(senderUrl, "r0", 1)];
  clients.push(...all);
  await Promise.all(all.map((c) => c.ready()));
  return { senders, receivers, all };
}

function report(t: TestContext, what: string, room: Room): void {
  const v = verdict(room.all, room.senders);
  t.diagnostic(`${what}: ${JSON.stringify(v.counts)}`);
  for (const p of v.problems.slice(0, 40)) t.diagnostic(p);
  assert.ok(v.counts.ackedRoom > 0, "some messages were acked");
  assert.equal(v.counts.givenUp, 0, "every message was acked in the end");
  assert.deepEqual(v.problems, [], `${v.problems.length} contract breaches`);
}

/** Lets the traffic run until `n` more messages were sent (no fixed sleep). */
async function trafficFor(traffic: { started(): number }, n: number): Promise<void> {
  const target = traffic.started() + n;
  await waitFor(() => traffic.started() >= target, `${n} more messages sent`, 20_000);
}

describe("nothing lost: network cuts", { timeout: 180_000 }, () => {
  let service: ServiceHandle;
  let relay: CutRelay;
  before(async () => {
    service = await startService([...SCRIPTED_RATES, ...HISTORY]);
    relay = await startCutRelay({ port: service.port });
  });
  after(async () => {
    await relay?.close();
    await service?.stop();
  });

  for (const [ms, mode] of [
    [2000, "reset"],
    [20_000, "reset"],
    [2000, "stall"],
  ] as [number, CutMode][]) {
    it(`a ${ms / 1000} s cut (${mode}) of the receivers: each gets every acked message once`, async (t) => {
      const room = await openRoom(service.url, relay.url, `cut-${mode}-${ms}`);
      const traffic = startTraffic(room.senders, { privateEvery: 5, privateTo: "r0" });
      await trafficFor(traffic, 20);
      const duringBefore = traffic.started();
      await relay.cut(ms, mode);
      const during = traffic.started() - duringBefore;
      await trafficFor(traffic, 20);
      await traffic.stop();
      await settle(room.all, room.senders);
      t.diagnostic(`sent during the cut: ${during}; relay refused ${relay.refused()} connections`);
      assert.ok(during > 0, "messages were sent during the cut");
      assert.ok(
        room.receivers.every((r) => r.disconnects > 0),
        "every receiver was cut",
      );
      report(t, `${ms} ms ${mode} cut`, room);
    });
  }
});

describe("nothing lost: reload and a worker SIGKILL", { timeout: 180_000 }, () => {
  let service: ServiceHandle;
  before(async () => {
    service = await startService([...SCRIPTED_RATES, ...HISTORY]);
  });
  after(async () => {
    await service?.stop();
  });

  it("reload under traffic: every acked message reaches every client once", async (t) => {
    const room = await openRoom(service.url, service.url, "reload");
    const traffic = startTraffic(room.senders, { privateEvery: 5, privateTo: "r0" });
    await trafficFor(traffic, 20);
    const r = await runCliAsync(["reload", "--pid-file", service.pidFile]);
    assert.equal(r.code, 0, r.stderr);
    await trafficFor(traffic, 20);
    await traffic.stop();
    await settle(room.all, room.senders);
    assert.ok(
      room.all.every((c) => c.disconnects > 0),
      "every client was moved",
    );
    report(t, "reload", room);
  });

  it("a worker SIGKILL under traffic: every acked message reaches every client once", async (t) => {
    const room = await openRoom(service.url, service.url, "sigkill");
    const traffic = startTraffic(room.senders, { privateEvery: 5, privateTo: "r0" });
    await trafficFor(traffic, 20);
    const status = JSON.parse(service.cli(["status", "--json"]).stdout) as {
      workers: { id: number; pid: number }[];
    };
    const victim = status.workers[0];
    process.kill(victim.pid, "SIGKILL");
    await waitUntil(
      () => room.all.some((c) => c.disconnects > 0) || undefined,
      "clients of the killed worker cut",
    );
    await trafficFor(traffic, 20);
    await traffic.stop();
    await settle(room.all, room.senders);
    t.diagnostic(`cut by the kill: ${room.all.filter((c) => c.disconnects > 0).length}`);
    report(t, "worker SIGKILL", room);
  });
});

describe("nothing lost: restart", { timeout: 120_000 }, () => {
  it("restart under traffic (the history is handed to the next start)", async (t) => {
    const dir = tempDir();
    const pidFile = path.join(dir, "w.pid");
    const port = await freePort();
    const started = runCli([
      "start",
      "-d",
      "--port",
      String(port),
      "--host",
      "127.0.0.1",
      "--pid-file",
      pidFile,
      ...SCRIPTED_RATES,
      ...HISTORY,
    ]);
    assert.equal(started.code, 0, started.stderr);
    cleanups.push(() => existsSync(pidFile) && runCliAsync(["stop", "--pid-file", pidFile]));
    const url = `http://127.0.0.1:${port}`;
    const room = await openRoom(url, url, "restart");
    const traffic = startTraffic(room.senders, { privateEvery: 5, privateTo: "r0" });
    await trafficFor(traffic, 20);
    const r = await runCliAsync(["restart", "--pid-file", pidFile]);
    assert.equal(r.code, 0, r.stderr);
    await trafficFor(traffic, 20);
    await traffic.stop();
    await settle(room.all, room.senders);
    assert.ok(
      room.all.every((c) => c.disconnects > 0),
      "every client was cut",
    );
    report(t, "restart", room);
  });
});
