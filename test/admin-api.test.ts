/**
 * The admin API (`/api/v1/admin/...`, --admin-key) against the real service: one node with
 * 2 workers (cluster mode), and 2 nodes x 2 workers on one Redis. Clients alternate between the
 * service's entry points (the workers of one node, or the two nodes), so that every action is
 * seen to reach tabs held elsewhere than the worker answering the HTTP request.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import type { Envelope } from "../src/chat/protocol.js";
import { type ChatClient, ClientPool, connectError } from "./support/chat-client.js";
import { type NodeHandle, startNode } from "./support/cluster-nodes.js";
import { type RedisServer, startRedisServer } from "./support/redis-server.js";
import { SCRIPTED_RATES, type ServiceHandle, startService, waitUntil } from "./support/service.js";

const KEY = "test-admin-key";

interface Setup {
  /** Where client i connects: urls[i % urls.length]. */
  urls: string[];
  /** Where the admin API is called. */
  api: string;
  /** True when tabs sit on different nodes (Redis), false for workers of one node. */
  nodes: boolean;
}

interface Json {
  status: number;
  body: Record<string, unknown> & { error?: { code: string; message: string } };
}

async function call(base: string, method: string, path: string, body?: unknown, key = KEY) {
  const headers: Record<string, string> = { "Content-Type": "application/json" };
  if (key) headers.Authorization = `Bearer ${key}`;
  const res = await fetch(`${base}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Json["body"] };
}

type RoomRow = { room: string; users: number; connections: number };
type UserRow = { userId: string; connections: { fd: string; owner: string }[] };

const isError = (code: string) => (e: Envelope) =>
  e.action === 100 && e.data.content.error?.code === code;

/** Resolves true when the 100 with `code` had arrived by the time the server disconnected. */
function noticeBeforeDisconnect(c: ChatClient, code: string): Promise<boolean> {
  return new Promise((resolve) => {
    c.socket.once("disconnect", (reason) => {
      resolve(reason === "io server disconnect" && c.received.some(isError(code)));
    });
  });
}

let unique = 0;
const fresh = (what: string) => `${what}${++unique}${process.pid}`;

function adminSuite(name: string, setup: () => Promise<Setup>): void {
  describe(name, { timeout: 90_000 }, () => {
    const pool = new ClientPool();
    let s: Setup;
    let n = 0;
    /** Connects the next client, alternating between the entry points. */
    const connect = (userId: string, room: string, at = n++, transport = "websocket") =>
      pool.connect(
        s.urls[at % s.urls.length],
        { username: userId, userId, room },
        { transports: [transport] },
      );
    const api = (method: string, path: string, body?: unknown) => call(s.api, method, path, body);

    before(async () => {
      s = await setup();
    });
    afterEach(() => pool.closeAll());

    it("lists rooms with their user and connection counts, and a room's users with each tab's owner", async () => {
      const ops = fresh("ops");
      const dev = fresh("dev");
      const alice = fresh("alice");
      const bob = fresh("bob");
      const a1 = await connect(alice, ops, 0);
      const a2 = await connect(alice, ops, 1);
      const b1 = await connect(bob, ops);
      const a3 = await connect(alice, dev);
      if (!s.nodes) assert.notEqual(a1.worker, a2.worker, "alice's tabs on both workers");

      const rooms = await api("GET", "/api/v1/admin/rooms");
      assert.equal(rooms.status, 200);
      const mine = (rooms.body.rooms as RoomRow[]).filter((r) => r.room === ops || r.room === dev);
      assert.deepEqual(
        mine,
        [
          { room: ops, users: 2, connections: 3 },
          { room: dev, users: 1, connections: 1 },
        ].sort((x, y) => (x.room < y.room ? -1 : 1)),
      );

      const users = await api("GET", `/api/v1/admin/rooms/${ops}/users`);
      assert.equal(users.status, 200);
      assert.equal(users.body.room, ops);
      const list = users.body.users as UserRow[];
      assert.deepEqual(
        list.map((u) => u.userId),
        [alice, bob],
      );
      assert.deepEqual(
        list[0].connections.map((c) => c.fd),
        [a1.fd, a2.fd],
      );
      assert.deepEqual(
        list[1].connections.map((c) => c.fd),
        [b1.fd],
      );
      const [o1, o2] = list[0].connections.map((c) => c.owner);
      assert.match(o1, /^[^/]+\/\d+$/);
      assert.notEqual(o1, o2, "two tabs held by two processes");
      if (s.nodes) assert.notEqual(o1.split("/")[0], o2.split("/")[0], "on two nodes");
      const other = await api("GET", `/api/v1/admin/rooms/${dev}/users`);
      assert.deepEqual(
        (other.body.users as UserRow[]).map((u) => u.connections.map((c) => c.fd)),
        [[a3.fd]],
      );
      const empty = await api("GET", `/api/v1/admin/rooms/${fresh("nobody")}/users`);
      assert.deepEqual(empty.body.users, []);
    });

    it("disconnects a user everywhere: every tab gets the 100 with the reason, then 'io server disconnect'", async () => {
      const ops = fresh("ops");
      const dev = fresh("dev");
      const alice = fresh("alice");
      const bob = fresh("bob");
      // Over both transports: a polling tab gets the notice with its next poll, then the close.
      const tabs = [
        await connect(alice, ops, 0),
        await connect(alice, ops, 1, "polling"),
        await connect(alice, dev, 2, "polling"),
        await connect(alice, dev, 3),
      ];
      const b = await connect(bob, ops);
      if (!s.nodes) assert.notEqual(tabs[0].worker, tabs[1].worker);
      const seen = tabs.map((t) => noticeBeforeDisconnect(t, "E_DISCONNECTED"));
      const res = await api("POST", `/api/v1/admin/users/${alice}/disconnect`, {
        reason: "account closed",
      });
      assert.equal(res.status, 200);
      assert.deepEqual(res.body, { ok: true, userId: alice, disconnected: 4, complete: true });
      assert.deepEqual(await Promise.all(seen), [true, true, true, true]);
      for (const t of tabs) {
        const notice = t.all(isError("E_DISCONNECTED"))[0];
        assert.equal(notice.data.content.error?.message, "account closed");
        assert.equal(notice.data.content.message, "account closed");
        assert.equal(notice.data.content.error?.retryAfterMs, undefined);
      }
      // Others stay, and see alice leave.
      await b.waitFor(
        (e) => e.action === 203 && e.data.content.userInfo?.userId === alice,
        "203 alice",
      );
      assert.equal(b.connected, true);
      await b.say("still here");
      await waitUntil(async () => {
        const users = (await api("GET", `/api/v1/admin/rooms/${ops}/users`)).body.users;
        return (users as UserRow[]).every((u) => u.userId !== alice);
      }, "alice gone from the room's users");
      // Not banned: alice may come back at once.
      await connect(alice, ops);
      const nobody = fresh("nobody");
      const again = await api("POST", `/api/v1/admin/users/${nobody}/disconnect`, {});
      assert.deepEqual(again.body, { ok: true, userId: nobody, disconnected: 0, complete: true });
    });

    it("bans with an expiry: handshakes everywhere are refused with E_BANNED until it expires", async () => {
      const room = fresh("ops");
      const mallory = fresh("mallory");
      const tab = await connect(mallory, room);
      const seen = noticeBeforeDisconnect(tab, "E_DISCONNECTED");
      const res = await api("POST", `/api/v1/admin/users/${mallory}/disconnect`, {
        reason: "spam",
        banSeconds: 2,
      });
      assert.equal(res.status, 200);
      assert.equal(res.body.disconnected, 1);
      const ban = res.body.ban as { userId: string; reason: string; until: number };
      assert.equal(ban.userId, mallory);
      assert.equal(ban.reason, "spam");
      assert.equal(await seen, true);
      assert.equal(tab.all(isError("E_DISCONNECTED"))[0].data.content.error?.retryAfterMs, 2000);

      const listed = await api("GET", "/api/v1/admin/bans");
      assert.deepEqual(
        (listed.body.bans as { userId: string }[]).filter((b) => b.userId === mallory),
        [ban],
      );
      for (const url of s.urls) {
        const refused = await connectError(url, { username: mallory, userId: mallory, room });
        assert.equal(refused.code, "E_BANNED");
        assert.equal(refused.message, "spam");
        const retry = (refused as { retryAfterMs?: number }).retryAfterMs ?? -1;
        assert.ok(retry > 0 && retry <= 2000, `retryAfterMs ${retry}`);
      }
      // Others are not affected.
      await connect(fresh("eve"), room);
      // Polls until the ban expires: admitted again, and not before its time.
      const back = await waitUntil(
        async () => {
          try {
            return await connect(mallory, room);
          } catch {
            return undefined;
          }
        },
        "mallory admitted after the ban",
        10_000,
        100,
      );
      assert.ok(Date.now() >= ban.until - 250, "admitted before the ban's end");
      assert.equal(back.connected, true);
      const later = await api("GET", "/api/v1/admin/bans");
      assert.equal(
        (later.body.bans as { userId: string }[]).some((b) => b.userId === mallory),
        false,
      );
    });

    it("lifts a ban", async () => {
      const room = fresh("ops");
      const trudy = fresh("trudy");
      const res = await api("POST", `/api/v1/admin/users/${trudy}/disconnect`, { banSeconds: 600 });
      assert.equal(res.status, 200);
      assert.equal(res.body.disconnected, 0);
      const refused = await connectError(s.urls[0], { username: trudy, userId: trudy, room });
      assert.equal(refused.code, "E_BANNED");
      assert.equal(refused.message, "banned by an operator");
      const lifted = await api("DELETE", `/api/v1/admin/bans/${trudy}`);
      assert.deepEqual(lifted.body, { ok: true, userId: trudy, lifted: true });
      for (const [i] of s.urls.entries()) await connect(trudy, room, i);
      const again = await api("DELETE", `/api/v1/admin/bans/${trudy}`);
      assert.deepEqual(again.body, { ok: true, userId: trudy, lifted: false });
      const listed = await api("GET", "/api/v1/admin/bans");
      assert.equal(
        (listed.body.bans as { userId: string }[]).some((b) => b.userId === trudy),
        false,
      );
    });

    it("kicks a user from one room: only their tabs in it get E_KICKED and go", async () => {
      const ops = fresh("ops");
      const dev = fresh("dev");
      const alice = fresh("alice");
      const bob = fresh("bob");
      const inOps = [await connect(alice, ops, 0), await connect(alice, ops, 1)];
      const inDev = await connect(alice, dev);
      const b = await connect(bob, ops);
      const seen = inOps.map((t) => noticeBeforeDisconnect(t, "E_KICKED"));
      const res = await api("POST", `/api/v1/admin/rooms/${ops}/kick`, {
        userId: alice,
        reason: "off-topic",
      });
      assert.equal(res.status, 200);
      assert.deepEqual(res.body, {
        ok: true,
        room: ops,
        userId: alice,
        disconnected: 2,
        complete: true,
      });
      assert.deepEqual(await Promise.all(seen), [true, true]);
      assert.equal(inOps[0].all(isError("E_KICKED"))[0].data.content.error?.message, "off-topic");
      await b.waitFor(
        (e) => e.action === 203 && e.data.content.userInfo?.userId === alice,
        "203 alice",
      );
      // Alice's other room and bob are untouched.
      assert.equal(inDev.connected, true);
      await inDev.say("still in dev");
      assert.equal(inDev.all((e) => e.action === 100).length, 0);
      await b.say("still in ops");
      const again = await api("POST", `/api/v1/admin/rooms/${ops}/kick`, { userId: alice });
      assert.equal(again.status, 404);
      assert.equal(again.body.error?.code, "E_NO_RECIPIENT");
    });

    it("sends a server notice (100, no error) to one room, or to everyone", async () => {
      const ops = fresh("ops");
      const dev = fresh("dev");
      const inOps = [await connect(fresh("u"), ops), await connect(fresh("u"), ops)];
      const inDev = await connect(fresh("u"), dev);
      const text = (m: string) => (e: Envelope) =>
        e.action === 100 && e.data.content.message === m && e.data.content.error === undefined;
      const res = await api("POST", "/api/v1/admin/notice", { room: ops, message: "ops only" });
      assert.deepEqual(res.body, { ok: true, room: ops });
      for (const c of inOps) await c.waitFor(text("ops only"), "room notice");
      const all = await api("POST", "/api/v1/admin/notice", { message: "to everyone" });
      assert.deepEqual(all.body, { ok: true });
      for (const c of [...inOps, inDev]) await c.waitFor(text("to everyone"), "global notice");
      // The global notice came after the room one: dev never got the room's.
      assert.equal(inDev.all(text("ops only")).length, 0);
      for (const c of [...inOps, inDev]) assert.equal(c.connected, true);
    });

    it("refuses requests without the key or with a wrong one (401), and bad input with coded 400s", async () => {
      const cases: [Json, number, string][] = [
        [await call(s.api, "GET", "/api/v1/admin/rooms", undefined, ""), 401, "E_API_UNAUTHORIZED"],
        [
          await call(s.api, "GET", "/api/v1/admin/rooms", undefined, "wrong"),
          401,
          "E_API_UNAUTHORIZED",
        ],
        [
          await call(s.api, "GET", "/api/v1/admin/bans", undefined, `${KEY}x`),
          401,
          "E_API_UNAUTHORIZED",
        ],
        [
          await call(s.api, "GET", "/api/v1/admin/bans", undefined, "push-key"),
          401,
          "E_API_UNAUTHORIZED",
        ],
        [await api("POST", "/api/v1/admin/users/x/disconnect", "not json"), 400, "E_BAD_PAYLOAD"],
        [await api("POST", "/api/v1/admin/users/x/disconnect", []), 400, "E_BAD_PAYLOAD"],
        [
          await api("POST", "/api/v1/admin/users/x/disconnect", { banSeconds: 0 }),
          400,
          "E_BAD_PAYLOAD",
        ],
        [
          await api("POST", "/api/v1/admin/users/x/disconnect", { banSeconds: 1.5 }),
          400,
          "E_BAD_PAYLOAD",
        ],
        [
          await api("POST", "/api/v1/admin/users/x/disconnect", { banSeconds: "60" }),
          400,
          "E_BAD_PAYLOAD",
        ],
        [
          await api("POST", "/api/v1/admin/users/x/disconnect", { reason: 5 }),
          400,
          "E_BAD_PAYLOAD",
        ],
        [
          await api("POST", `/api/v1/admin/users/${"x".repeat(65)}/disconnect`, {}),
          400,
          "E_BAD_USERNAME",
        ],
        [await api("POST", "/api/v1/admin/users/%E0%A4%A/disconnect", {}), 400, "E_BAD_USERNAME"],
        [await api("POST", "/api/v1/admin/rooms/ops/kick", {}), 400, "E_BAD_USERNAME"],
        [
          await api("POST", "/api/v1/admin/rooms/bad%20room!/kick", { userId: "x" }),
          400,
          "E_BAD_ROOM",
        ],
        [await api("GET", "/api/v1/admin/rooms/%E0%A4%A/users"), 400, "E_BAD_ROOM"],
        [await api("POST", "/api/v1/admin/notice", { message: "" }), 400, "E_EMPTY_MESSAGE"],
        [
          await api("POST", "/api/v1/admin/notice", { message: "x".repeat(100_000) }),
          413,
          "E_PAYLOAD_TOO_LARGE",
        ],
        [
          await api("POST", "/api/v1/admin/notice", { message: "x".repeat(10_000) }),
          400,
          "E_MESSAGE_TOO_LONG",
        ],
        [await api("POST", "/api/v1/admin/notice", { room: 7, message: "x" }), 400, "E_BAD_ROOM"],
        [await api("GET", "/api/v1/admin/nope"), 404, "E_NOT_FOUND"],
        [await api("DELETE", "/api/v1/admin/rooms"), 404, "E_NOT_FOUND"],
      ];
      for (const [res, status, code] of cases) {
        assert.equal(res.body.error?.code, code, `${code}: ${JSON.stringify(res.body)}`);
        assert.equal(res.status, status, code);
        assert.equal(res.body.ok, false);
      }
    });
  });
}

{
  let service: ServiceHandle | undefined;
  adminSuite("admin API, one node with 2 workers", async () => {
    service = await startService(["--admin-key", KEY, "--api-key", "push-key", ...SCRIPTED_RATES]);
    return { urls: [service.url], api: service.url, nodes: false };
  });
  after(() => service?.stop());
}

{
  let redis: RedisServer | undefined;
  let nodes: NodeHandle[] = [];
  adminSuite("admin API, 2 nodes x 2 workers on Redis", async () => {
    redis = await startRedisServer();
    const url = redis.url;
    nodes = await Promise.all(
      ["a", "b"].map((nodeId) =>
        startNode({ redisUrl: url, nodeId, args: ["--admin-key", KEY, ...SCRIPTED_RATES] }),
      ),
    );
    return { urls: nodes.map((n) => n.url), api: nodes[0].url, nodes: true };
  });
  after(async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    await redis?.stop();
  });
}

describe("admin API keys", () => {
  let service: ServiceHandle;
  before(async () => {
    service = await startService(["--api-key", "push-key"]);
  });
  after(() => service.stop());

  it("is off (404 E_API_DISABLED) without --admin-key, and the push API's key opens nothing", async () => {
    for (const key of ["", "push-key", KEY]) {
      const res = await call(service.url, "GET", "/api/v1/admin/rooms", undefined, key);
      assert.equal(res.status, 404);
      assert.equal(res.body.error?.code, "E_API_DISABLED");
    }
    // The push API still answers on its own key.
    const push = await call(service.url, "GET", "/api/v1/rooms/x/users", undefined, "push-key");
    assert.equal(push.status, 200);
  });
});
