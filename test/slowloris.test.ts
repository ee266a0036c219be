import assert from "node:assert/strict";
import type net from "node:net";
import { afterEach, describe, it } from "node:test";
import { ClientPool } from "./support/chat-client.js";
import { get, HANDSHAKE_PATH, parseRaw, rawConnect, readAll } from "./support/raw-http.js";
import { type ServiceHandle, startService, waitUntil } from "./support/service.js";

/** The primary's own view: admission counters and refusals. */
function status(svc: ServiceHandle): {
  admission: { pending: number; sessions: number; headTimeouts: number };
  refusals: Record<string, number>;
} {
  const r = svc.cli(["status", "--json"]);
  return JSON.parse(r.stdout);
}

/** `promise`, or a failure after `ms` (what is awaited may never happen when the guard is broken). */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

describe("slowloris: the primary's request-head deadline and pending caps", () => {
  let svc: ServiceHandle | undefined;
  const sockets: net.Socket[] = [];
  const timers: NodeJS.Timeout[] = [];
  const pool = new ClientPool();

  afterEach(async () => {
    for (const t of timers.splice(0)) clearInterval(t);
    for (const s of sockets.splice(0)) s.destroy();
    pool.closeAll();
    await svc?.stop();
    svc = undefined;
  });

  /** Opens a connection that sends `head` one byte every `everyMs`, forever (or until closed). */
  async function trickle(port: number, head: string, everyMs: number, localAddress?: string) {
    const socket = await rawConnect(port, localAddress);
    sockets.push(socket);
    const openedAt = Date.now();
    let i = 0;
    const timer = setInterval(() => {
      if (socket.destroyed) return clearInterval(timer);
      socket.write(head[i % head.length]);
      i++;
    }, everyMs);
    timers.push(timer);
    const closed = new Promise<number>((resolve) => {
      socket.on("error", () => {});
      socket.on("close", () => {
        clearInterval(timer);
        resolve(Date.now() - openedAt);
      });
    });
    return { socket, closed };
  }

  it("closes connections trickling their request line or headers at the total deadline, while /healthz and a real client keep working", async () => {
    svc = await startService(["--request-timeout", "2", "--max-pending-connections", "4000"]);
    const port = svc.port;
    // Bytes every 250 ms: an idle timer (the old 30 s one) would never fire.
    const line = "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n";
    const lineTricklers = await Promise.all(
      Array.from({ length: 100 }, () => trickle(port, line, 250)),
    );
    // The request line at once, then headers that never end.
    const headerTricklers = await Promise.all(
      Array.from({ length: 100 }, async () => {
        const t = await trickle(port, "X-Slow: aaaaaaaa\r\n", 250);
        t.socket.write(line);
        return t;
      }),
    );
    // While all 200 are held: health and a real chat client get through.
    assert.equal((await get(`${svc.url}/healthz`)).status, 200);
    assert.equal((await get(`${svc.url}/readyz`)).status, 200);
    const alice = await pool.connect(svc.url, { username: "alice", room: "r1" });
    await alice.say("still here");
    assert.ok(
      lineTricklers.every((t) => !t.socket.destroyed),
      "the tricklers are still held (the test measures something)",
    );

    const lifetimes = await within(
      Promise.all([...lineTricklers, ...headerTricklers].map((t) => t.closed)),
      10_000,
      "the tricklers closed",
    );
    for (const ms of lifetimes) {
      assert.ok(ms >= 1500 && ms < 4500, `closed after ${ms} ms, want about 2000`);
    }
    const s = status(svc);
    assert.ok(s.admission.headTimeouts >= 200, `headTimeouts ${s.admission.headTimeouts}`);
    assert.equal(s.admission.pending, 0);
    // The real client was not affected.
    await alice.say("after");
  });

  it("over --max-pending-connections refuses at once with 503 E_SERVER_BUSY; /healthz and /readyz still answer", async () => {
    // A cap of 20 pending, at most 2 per address: the attacker uses ten source addresses.
    svc = await startService(["--request-timeout", "30", "--max-pending-connections", "20"]);
    const port = svc.port;
    for (let a = 2; a < 12; a++) {
      for (let k = 0; k < 2; k++) sockets.push(await rawConnect(port, `127.0.0.${a}`));
    }
    await waitUntil(() => status(svc!).admission.pending === 20, "20 pending connections");

    // A new session from elsewhere: refused with the coded body as soon as its request line shows.
    const refused = await rawConnect(port, "127.0.0.50");
    sockets.push(refused);
    const answer = readAll(refused);
    refused.write(`GET ${HANDSHAKE_PATH} HTTP/1.1\r\nHost: x\r\n\r\n`);
    const res = parseRaw(await within(answer, 5000, "the refusal"));
    assert.equal(res.status, 503);
    assert.equal(res.json?.code, "E_SERVER_BUSY");
    assert.equal(res.headers["content-type"], "application/json");

    // A connection that sends nothing is not held either: refused within the reserve's second.
    const silent = await rawConnect(port, "127.0.0.51");
    sockets.push(silent);
    const t0 = Date.now();
    const silentAnswer = parseRaw(await within(readAll(silent), 5000, "the refusal"));
    assert.equal(silentAnswer.json?.code, "E_SERVER_BUSY");
    assert.ok(Date.now() - t0 < 2500, `silent over-cap connection held ${Date.now() - t0} ms`);

    // Health checks answer, also while more over-cap connections keep arriving.
    for (let k = 0; k < 40; k++) sockets.push(await rawConnect(port, "127.0.0.52"));
    assert.equal((await get(`${svc.url}/healthz`)).status, 200);
    const ready = await get(`${svc.url}/readyz`);
    assert.equal(ready.status, 200);
    assert.equal(JSON.parse(ready.body).ready, true);
    // Even from an address that holds its whole share.
    assert.equal((await get(`${svc.url}/healthz`, { localAddress: "127.0.0.2" })).status, 200);

    assert.ok((status(svc).refusals.E_SERVER_BUSY ?? 0) >= 2);
    // The attacker gone, new sessions are served again.
    for (const s of sockets.splice(0)) s.destroy();
    await waitUntil(() => status(svc!).admission.pending === 0, "pending drained");
    assert.equal((await get(`${svc.url}${HANDSHAKE_PATH}`)).status, 200);
  });

  it("one address cannot hold more than its share of pending slots (429 E_TOO_MANY_CONNECTIONS); others are served", async () => {
    svc = await startService(["--request-timeout", "30", "--max-pending-connections", "20"]);
    const port = svc.port;
    // Its share: a tenth of 20.
    for (let k = 0; k < 2; k++) sockets.push(await rawConnect(port, "127.0.0.7"));
    await waitUntil(() => status(svc!).admission.pending === 2, "2 pending connections");
    const third = await rawConnect(port, "127.0.0.7");
    sockets.push(third);
    const answer = readAll(third);
    third.write(`GET ${HANDSHAKE_PATH} HTTP/1.1\r\nHost: x\r\n\r\n`);
    const res = parseRaw(await within(answer, 5000, "the refusal"));
    assert.equal(res.status, 429);
    assert.equal(res.json?.code, "E_TOO_MANY_CONNECTIONS");
    // The same address's health probe and another address's handshake get through.
    assert.equal((await get(`${svc.url}/healthz`, { localAddress: "127.0.0.7" })).status, 200);
    assert.equal(
      (await get(`${svc.url}${HANDSHAKE_PATH}`, { localAddress: "127.0.0.8" })).status,
      200,
    );
  });
});
