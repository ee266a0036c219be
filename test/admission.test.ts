import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { ConnectionLedger } from "../src/cluster/connection-ledger.js";
import { addressKey, ClientAddresses } from "../src/http/client-address.js";
import { ChatClient, ClientPool, connectError } from "./support/chat-client.js";
import { processAlive } from "./support/cluster-nodes.js";
import {
  get,
  HANDSHAKE_PATH,
  parseRaw,
  rawConnect,
  readAll,
  wsHandshake,
} from "./support/raw-http.js";
import { type ServiceHandle, startService, waitUntil } from "./support/service.js";

interface AdmissionStatus {
  admission: { pending: number; sessions: number; headTimeouts: number };
  refusals: Record<string, number>;
  workers: { id: number; pid: number }[];
}

function status(svc: ServiceHandle): AdmissionStatus {
  return JSON.parse(svc.cli(["status", "--json"]).stdout);
}

/** A new session's polling handshake, as a raw HTTP client sees it. */
function handshake(
  svc: ServiceHandle,
  headers: Record<string, string> = {},
  localAddress?: string,
) {
  return get(`${svc.url}${HANDSHAKE_PATH}`, { headers, localAddress });
}

describe("admission of new sessions (worker middleware + primary ledger)", () => {
  let svc: ServiceHandle | undefined;
  const pool = new ClientPool();

  afterEach(async () => {
    pool.closeAll();
    await svc?.stop();
    svc = undefined;
  });

  it("origin allowlist: a foreign Origin gets 403 E_ORIGIN_FORBIDDEN, a listed one and none connect, CORS echoes only listed origins", async () => {
    svc = await startService(["--allowed-origins", "https://chat.example, http://localhost:3000"]);
    const evil = await handshake(svc, { Origin: "https://evil.example" });
    assert.equal(evil.status, 403);
    assert.equal(evil.json?.code, "E_ORIGIN_FORBIDDEN");
    assert.equal(evil.headers["access-control-allow-origin"], undefined);
    const wsEvil = await wsHandshake(svc, { Origin: "https://evil.example" });
    assert.notEqual(wsEvil, "open");
    assert.equal(wsEvil !== "open" && wsEvil.status, 403);
    assert.equal(wsEvil !== "open" && wsEvil.json?.code, "E_ORIGIN_FORBIDDEN");

    const good = await handshake(svc, { Origin: "https://chat.example" });
    assert.equal(good.status, 200);
    assert.equal(good.headers["access-control-allow-origin"], "https://chat.example");
    assert.equal(await wsHandshake(svc, { Origin: "http://localhost:3000" }), "open");
    assert.equal((await handshake(svc)).status, 200);

    // A real client: with a listed origin and with none it chats; a foreign one never connects.
    const listed = await pool.connect(
      svc.url,
      { username: "alice", room: "r" },
      { extraHeaders: { Origin: "https://chat.example" } },
    );
    await listed.say("hi");
    await (await pool.connect(svc.url, { username: "bob", room: "r" })).say("hello");
    const foreign = pool.add(
      new ChatClient(
        svc.url,
        { username: "eve", room: "r" },
        { extraHeaders: { Origin: "https://evil.example" }, transports: ["polling"] },
      ),
    );
    await foreign.until(() => foreign.connectErrors.length > 0, "eve's connect_error");
    assert.equal(foreign.connects, 0);
    assert.ok((status(svc).refusals.E_ORIGIN_FORBIDDEN ?? 0) >= 3);
  });

  it("connect rate per address is node-wide (both workers), with Retry-After and retryAfterMs", async () => {
    svc = await startService(["--connect-rate", "4/30s"]);
    const workers = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const ok = await handshake(svc);
      assert.equal(ok.status, 200, `handshake ${i}`);
      workers.add(JSON.parse(ok.body.slice(ok.body.indexOf("{"))).sid.split(".")[0]);
    }
    assert.equal(workers.size, 2, "the handshakes went to both workers");
    const limited = await handshake(svc);
    assert.equal(limited.status, 429);
    assert.equal(limited.json?.code, "E_RATE_LIMITED");
    const retryMs = limited.json?.retryAfterMs ?? 0;
    assert.ok(retryMs > 0 && retryMs <= 30_000, `retryAfterMs ${retryMs}`);
    assert.equal(Number(limited.headers["retry-after"]), Math.ceil(retryMs / 1000));
    // socket.io-client sees a failed handshake.
    const client = pool.add(new ChatClient(svc.url, { username: "a", room: "r" }));
    await client.until(() => client.connectErrors.length > 0, "connect_error");
    assert.equal(client.connects, 0);
    // Another address has its own quota.
    assert.equal((await handshake(svc, {}, "127.0.0.2")).status, 200);
    assert.ok((status(svc).refusals.E_RATE_LIMITED ?? 0) >= 2);
  });

  it("behind a trusted proxy, X-Forwarded-For addresses get separate quotas; an untrusted peer's XFF is ignored", async () => {
    svc = await startService([
      "--trusted-proxies",
      "127.0.0.1, 10.0.0.0/8, ::1",
      "--connect-rate",
      "2/60s",
      "--max-connections-per-address",
      "0",
    ]);
    const from = (xff: string, localAddress?: string) =>
      handshake(svc!, { "X-Forwarded-For": xff }, localAddress);
    assert.equal((await from("203.0.113.1")).status, 200);
    // A forged left part is skipped: the proxy appended the real address, and 10.1.2.3 is a proxy.
    assert.equal((await from("198.51.100.9, 203.0.113.1, 10.1.2.3")).status, 200);
    const third = await from("203.0.113.1");
    assert.equal(third.status, 429);
    assert.equal(third.json?.code, "E_RATE_LIMITED");
    assert.equal((await from("203.0.113.2")).status, 200);
    // IPv6 clients count by /64.
    assert.equal((await from("2001:db8:1:2::1")).status, 200);
    assert.equal((await from("2001:db8:1:2::ffff")).status, 200);
    assert.equal((await from("2001:db8:1:2:aaaa::1")).status, 429);

    // 127.0.0.5 is not a trusted proxy: whatever XFF it sends, it is one address.
    assert.equal((await from("192.0.2.1", "127.0.0.5")).status, 200);
    assert.equal((await from("192.0.2.2", "127.0.0.5")).status, 200);
    const forged = await from("192.0.2.3", "127.0.0.5");
    assert.equal(forged.status, 429);
    assert.equal(forged.json?.code, "E_RATE_LIMITED");
  });

  it("per-address cap on live sessions: 429 E_TOO_MANY_CONNECTIONS, directly and per forwarded address", async () => {
    svc = await startService([
      "--max-connections-per-address",
      "3",
      "--trusted-proxies",
      "127.0.0.1",
      "--connect-rate",
      "0",
    ]);
    const mine = [];
    for (let i = 0; i < 3; i++) {
      mine.push(await pool.connect(svc.url, { username: `u${i}`, room: "r" }));
    }
    const refused = pool.add(new ChatClient(svc.url, { username: "u3", room: "r" }));
    await refused.until(() => refused.connectErrors.length > 0, "u3's connect_error");
    assert.equal(refused.connects, 0);
    const raw = await handshake(svc);
    assert.equal(raw.status, 429);
    assert.equal(raw.json?.code, "E_TOO_MANY_CONNECTIONS");
    // Through the proxy (127.0.0.1 is trusted): each forwarded client has its own 3.
    for (let i = 0; i < 3; i++) {
      const ok = await handshake(svc, { "X-Forwarded-For": "198.51.100.7" });
      assert.equal(ok.status, 200, `forwarded session ${i}`);
    }
    const over = await handshake(svc, { "X-Forwarded-For": "198.51.100.7" });
    assert.equal(over.json?.code, "E_TOO_MANY_CONNECTIONS");
    assert.equal((await handshake(svc, { "X-Forwarded-For": "198.51.100.8" })).status, 200);
    // A freed slot is usable again.
    mine[0].close();
    await waitUntil(
      async () => (await handshake(svc!)).status === 200,
      "a session again after one closed",
    );
  });

  it("node-wide --max-connections: 503 E_SERVER_BUSY; slots come back on disconnect, aborted handshakes and a killed worker", async () => {
    svc = await startService(["--max-connections", "3", "--connect-rate", "0"]);
    const connectThree = async (tag: string) => {
      const clients = [];
      for (let i = 0; i < 3; i++) {
        clients.push(await pool.connect(svc!.url, { username: `${tag}${i}`, room: "r" }));
      }
      return clients;
    };
    let clients = await connectThree("a");
    const busy = await handshake(svc);
    assert.equal(busy.status, 503);
    assert.equal(busy.json?.code, "E_SERVER_BUSY");
    assert.equal((await wsHandshake(svc)) !== "open", true);
    // Connect N, disconnect, connect N again.
    for (const c of clients) c.close();
    await waitUntil(() => status(svc!).admission.sessions === 0, "the slots released");
    clients = await connectThree("b");
    for (const c of clients) c.close();
    await waitUntil(() => status(svc!).admission.sessions === 0, "the slots released again");

    // Handshakes that pass admission but never become sessions release their slot.
    for (let i = 0; i < 5; i++) {
      const bad = await get(`${svc.url}/socket.io/?EIO=4&transport=bogus`);
      assert.equal(bad.status, 400);
      const socket = await rawConnect(svc.port);
      const answer = readAll(socket);
      socket.write(
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n" +
          "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n" +
          "Sec-WebSocket-Key: not-a-key\r\n\r\n",
      );
      assert.equal(parseRaw(await answer).status, 400);
    }
    await waitUntil(
      () => status(svc!).admission.sessions === 0,
      "no slot held by failed handshakes",
    );

    // A killed worker's sessions are dropped from the ledger at its exit.
    clients = await connectThree("c");
    const victim = clients[0].worker;
    const pid = status(svc).workers.find((w) => w.id === victim)!.pid;
    process.kill(pid, "SIGKILL");
    await waitUntil(() => !processAlive(pid), "the worker gone");
    const survivors = clients.filter((c) => c.worker !== victim).length;
    await waitUntil(
      () => status(svc!).admission.sessions === survivors,
      `${survivors} sessions after the kill`,
      15_000,
    );
    assert.ok((status(svc).refusals.E_SERVER_BUSY ?? 0) >= 2);
  });

  it("per-user cap across workers: connect_error E_TOO_MANY_CONNECTIONS, and the slot comes back on disconnect", async () => {
    svc = await startService(["--max-connections-per-user", "2", "--connect-rate", "0"]);
    const auth = { username: "alice", userId: "alice", room: "r" };
    const first = await pool.connect(svc.url, auth);
    const second = await pool.connect(svc.url, auth);
    assert.notEqual(first.worker, second.worker, "one connection on each worker");
    const refused = await connectError(svc.url, auth);
    assert.equal(refused.code, "E_TOO_MANY_CONNECTIONS");
    // Another user is not affected.
    await pool.connect(svc.url, { username: "bob", userId: "bob", room: "r" });
    first.close();
    await waitUntil(
      () =>
        ChatClient.connect(svc!.url, auth).then(
          (c) => pool.add(c),
          () => undefined,
        ),
      "alice connects again",
    );
    assert.ok((status(svc).refusals.E_TOO_MANY_CONNECTIONS ?? 0) >= 1);
  });
});

describe("connection ledger (the primary's counts)", () => {
  it("caps users per node, releases exactly once, drops a dead worker's entries", async () => {
    const ledger = new ConnectionLedger({
      maxConnections: 0,
      maxConnectionsPerAddress: 0,
      maxConnectionsPerUser: 2,
    });
    const a = await ledger.reserve(1, "user", "alice");
    const b = await ledger.reserve(2, "user", "alice");
    assert.equal(typeof a, "number");
    assert.equal(typeof b, "number");
    const c = await ledger.reserve(1, "user", "alice");
    assert.equal(typeof c === "object" && c.code, "E_TOO_MANY_CONNECTIONS");
    assert.equal(typeof (await ledger.reserve(1, "user", "bob")), "number");
    ledger.release(a as number);
    ledger.release(a as number);
    assert.equal(typeof (await ledger.reserve(1, "user", "alice")), "number");
    assert.equal(typeof (await ledger.reserve(1, "user", "alice")) === "object", true);
    ledger.dropWorker(1);
    // Only worker 2's alice is left.
    assert.equal(typeof (await ledger.reserve(3, "user", "alice")), "number");
    assert.equal(typeof (await ledger.reserve(3, "user", "alice")) === "object", true);
    assert.equal(ledger.refusals.E_TOO_MANY_CONNECTIONS, 3);
  });

  it("parses trusted proxies (IPv4, IPv6, CIDR, loopback) and keys IPv6 by /64", () => {
    const p = new ClientAddresses("loopback, 10.0.0.0/8, 2001:db8::/32, 192.168.1.1");
    assert.ok(p.isTrusted("::ffff:127.0.0.1"));
    assert.ok(p.isTrusted("::1"));
    assert.ok(p.isTrusted("10.20.30.40"));
    assert.ok(p.isTrusted("2001:db8:ffff::1"));
    assert.ok(!p.isTrusted("192.168.1.2"));
    assert.equal(p.clientOf("192.168.1.2", "1.2.3.4"), "192.168.1.2");
    assert.equal(p.clientOf("10.0.0.1", "6.6.6.6, 1.2.3.4, 192.168.1.1"), "1.2.3.4");
    assert.equal(p.clientOf("10.0.0.1", "junk"), "10.0.0.1");
    assert.equal(p.clientOf("10.0.0.1", undefined), "10.0.0.1");
    assert.equal(addressKey("2001:db8:0:1::5"), "2001:db8:0:1::/64");
    assert.equal(addressKey("::1"), "0:0:0:0::/64");
    assert.equal(addressKey("1.2.3.4"), "1.2.3.4");
    assert.throws(() => new ClientAddresses("10.0.0.0/99"));
    assert.throws(() => new ClientAddresses("nginx"));
  });
});
