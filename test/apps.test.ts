/**
 * Apps (tenants) on one service: the default app (namespace `/`, the flags) and two apps of an
 * apps file (`/alpha`, `/beta`), in cluster mode with 2 workers and across 2 nodes via Redis.
 * The same room name in two apps shares nothing (messages, presence, history, lists); tokens,
 * API keys and admin keys are refused across apps; each app's limits hold on their own; the apps
 * file is reloaded live (added, removed, secret rotated); metrics and webhooks carry the app.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import { SignJWT } from "jose";
import { createClient } from "redis";
import type { Envelope } from "../src/chat/protocol.js";
import { loadApps } from "../src/config/apps.js";
import { parseConfig } from "../src/config/config.js";
import { type ChatClient, ClientPool, connectError } from "./support/chat-client.js";
import { type NodeHandle, startNode } from "./support/cluster-nodes.js";
import { type RedisServer, startRedisServer } from "./support/redis-server.js";
import {
  logged,
  ROOT,
  runCli,
  SCRIPTED_RATES,
  type ServiceHandle,
  startService,
  tempDir,
  waitUntil,
} from "./support/service.js";
import { WebhookReceiver } from "./support/webhook-receiver.js";

const DEFAULT_SECRET = "default-secret-0123456789";
const ALPHA_SECRET = "alpha-secret-0123456789";
const ALPHA_NEXT = "alpha-secret-NEXT-0123456789";
const BETA_SECRET = "beta-secret-0123456789";
const GAMMA_SECRET = "gamma-secret-0123456789";
const HOOK_SECRET = "alpha-hook-secret";

interface AppEntry {
  id: string;
  [key: string]: unknown;
}

const alpha = (more: Record<string, unknown> = {}): AppEntry => ({
  id: "alpha",
  name: "Alpha shop",
  jwtSecrets: [ALPHA_SECRET],
  apiKey: "alpha-api-key",
  adminKey: "alpha-admin-key",
  // Tight on purpose: alpha's flood must not touch beta or the default app.
  messageRate: "3/30s",
  ...more,
});
const beta = (more: Record<string, unknown> = {}): AppEntry => ({
  id: "beta",
  jwtSecrets: [BETA_SECRET],
  apiKey: "beta-api-key",
  adminKey: "beta-admin-key",
  ...more,
});

async function token(secret: string, sub: string, room = "lobby"): Promise<string> {
  return new SignJWT({ name: sub, room })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime("1h")
    .sign(new TextEncoder().encode(secret));
}

const DEFAULT_ARGS = [
  ...SCRIPTED_RATES,
  "--jwt-secret",
  DEFAULT_SECRET,
  "--api-key",
  "default-api-key",
  "--admin-key",
  "default-admin-key",
];

/** The 201's userIds (a connect's online list). */
function listOf(client: ChatClient, from = 0): string[] {
  const list = client.all((e) => e.action === 201, from).at(-1);
  return (list?.data.content.userList ?? []).map((u) => u.userId).sort();
}

function texts(client: ChatClient, from = 0): string[] {
  return client.all((e) => e.action === 300, from).map((e) => String(e.data.content.message));
}

async function api(
  base: string,
  method: string,
  route: string,
  key: string,
  body?: unknown,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${base}${route}`, {
    method,
    headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

function writeApps(file: string, apps: AppEntry[]): void {
  writeFileSync(file, JSON.stringify({ apps }, null, 2));
}

describe("apps, cluster mode (2 workers)", { timeout: 180_000 }, () => {
  const pool = new ClientPool();
  let service: ServiceHandle | undefined;
  let receiver: WebhookReceiver | undefined;
  let appsFile = "";

  async function setup(apps: AppEntry[], more: string[] = []): Promise<ServiceHandle> {
    appsFile = path.join(tempDir(), "apps.json");
    writeApps(appsFile, apps);
    service = await startService([...DEFAULT_ARGS, "--apps-file", appsFile, ...more]);
    return service;
  }

  afterEach(async () => {
    pool.closeAll();
    await service?.stop();
    await receiver?.close();
    service = undefined;
    receiver = undefined;
  });

  it("the same room in three apps shares nothing: lists, presence, messages, history", async () => {
    const s = await setup([alpha(), beta()]);
    const url = (ns: string) => `${s.url}${ns}`;
    // The same userId and room in every app.
    const d1 = await pool.connect(url("/"), { token: await token(DEFAULT_SECRET, "ann") });
    const a1 = await pool.connect(url("/alpha"), { token: await token(ALPHA_SECRET, "ann") });
    const b1 = await pool.connect(url("/beta"), { token: await token(BETA_SECRET, "ann") });
    assert.deepEqual(listOf(a1), ["ann"]);
    assert.deepEqual(listOf(b1), ["ann"]);
    const marks = [d1.mark(), a1.mark(), b1.mark()];
    const a2 = await pool.connect(url("/alpha"), { token: await token(ALPHA_SECRET, "bob") });
    assert.deepEqual(listOf(a2), ["ann", "bob"], "alpha's list has alpha's users only");
    const status = JSON.parse(s.cli(["status", "--json"]).stdout) as {
      apps: { id: string; name: string; connections: number }[];
    };
    assert.deepEqual(
      status.apps.map((a) => [a.id, a.name, a.connections]),
      [
        ["default", "default", 1],
        ["alpha", "Alpha shop", 2],
        ["beta", "beta", 1],
      ],
    );
    await a1.waitFor(
      (e) => e.action === 202 && e.data.content.userInfo?.userId === "bob",
      "202 bob",
    );
    await a2.say("alpha says hi");
    await a1.waitFor((e) => e.action === 300, "alpha's message in alpha");
    await b1.say("beta says hi");
    await d1.say("default says hi");
    // A marker after the messages: what has not arrived by then would have arrived before it.
    await b1.say("beta marker");
    await d1.say("default marker");
    await a2.say("alpha marker");
    await a1.waitFor((e) => e.data.content.message === "alpha marker", "alpha marker");
    await b1.waitFor((e) => e.data.content.message === "beta marker", "beta marker");
    await d1.waitFor((e) => e.data.content.message === "default marker", "default marker");
    assert.deepEqual(texts(a1, marks[1]), ["alpha says hi", "alpha marker"]);
    assert.deepEqual(texts(b1, marks[2]), ["beta says hi", "beta marker"]);
    assert.deepEqual(texts(d1, marks[0]), ["default says hi", "default marker"]);
    for (const c of [d1, b1]) {
      assert.equal(c.all((e) => e.action === 202).length, 0, "no 202 from another app");
    }
    // onlineList and history are the app's.
    const list = await b1.request("onlineList");
    assert.deepEqual(
      list.data.content.userList?.map((u) => u.userId),
      ["ann"],
      "beta's onlineList",
    );
    const late = await pool.connect(url("/beta"), { token: await token(BETA_SECRET, "cat") });
    await late.waitFor((e) => e.data.content.message === "beta marker", "beta's replay");
    const replay = late.all((e) => e.action === 300).map((e) => e.data.content.message);
    assert.deepEqual(replay, ["beta says hi", "beta marker"], "beta's history only");
    // Private messages find the recipient in the sender's app only: bob is in alpha, not beta.
    const privateReply = await b1.request("message", {
      type: "text",
      content: { message: "psst" },
      to: "bob",
    });
    assert.equal(privateReply.data.content.error?.code, "E_NO_RECIPIENT");
    // The rooms' users carry the plain room name, never the app-scoped one.
    for (const e of [...a1.received, ...b1.received, ...late.received]) {
      const room = (e.data.content as { userInfo?: { room?: string } }).userInfo?.room;
      if (room !== undefined) assert.equal(room, "lobby");
    }
  });

  it("tokens, API keys and admin keys open their own app only; unknown apps get E_UNKNOWN_APP", async () => {
    const s = await setup([alpha(), beta()]);
    const alphaToken = await token(ALPHA_SECRET, "ann");
    const refused = await connectError(`${s.url}/beta`, { token: alphaToken });
    assert.equal(refused.code, "E_AUTH_INVALID", "alpha's token at beta");
    assert.equal((await connectError(`${s.url}/`, { token: alphaToken })).code, "E_AUTH_INVALID");
    const defaultToken = await token(DEFAULT_SECRET, "ann");
    assert.equal(
      (await connectError(`${s.url}/alpha`, { token: defaultToken })).code,
      "E_AUTH_INVALID",
    );
    const unknown = await connectError(`${s.url}/nope`, { token: alphaToken });
    assert.equal(unknown.code, "E_UNKNOWN_APP");
    assert.match(unknown.message, /nope/);
    // Polling too (the refusal is the same packet).
    const unknownPolling = await connectError(
      `${s.url}/nope`,
      { token: alphaToken },
      { transports: ["polling"] },
    );
    assert.equal(unknownPolling.code, "E_UNKNOWN_APP");

    const a = await pool.connect(`${s.url}/alpha`, { token: alphaToken });
    const b = await pool.connect(`${s.url}/beta`, { token: await token(BETA_SECRET, "ann") });
    const bMark = b.mark();
    // Alpha's API key pushes into alpha's lobby; beta's lobby gets nothing.
    const push = await api(s.url, "POST", "/api/v1/push", "alpha-api-key", {
      room: "lobby",
      message: "to alpha",
    });
    assert.equal(push.status, 200, JSON.stringify(push.body));
    assert.equal(push.body.app, "alpha");
    await a.waitFor((e) => e.data.content.message === "to alpha", "the push in alpha");
    const users = await api(s.url, "GET", "/api/v1/rooms/lobby/users", "beta-api-key");
    assert.equal(users.status, 200);
    assert.deepEqual(
      (users.body.users as { userId: string }[]).map((u) => u.userId),
      ["ann"],
      "beta's key lists beta's lobby",
    );
    const history = await api(s.url, "GET", "/api/v1/rooms/lobby/messages", "beta-api-key");
    assert.deepEqual(history.body.messages, [], "beta's key reads beta's history (empty)");
    // Admin keys: each app's own rooms, bans and kicks.
    const rooms = await api(s.url, "GET", "/api/v1/admin/rooms", "beta-admin-key");
    assert.deepEqual(rooms.body.rooms, [{ room: "lobby", users: 1, connections: 1 }]);
    assert.equal(rooms.body.app, "beta");
    const defaultRooms = await api(s.url, "GET", "/api/v1/admin/rooms", "default-admin-key");
    assert.deepEqual(defaultRooms.body.rooms, [], "the default app sees none of the apps' rooms");
    const ban = await api(s.url, "POST", "/api/v1/admin/users/ann/disconnect", "alpha-admin-key", {
      reason: "alpha only",
      banSeconds: 60,
    });
    assert.equal(ban.status, 200, JSON.stringify(ban.body));
    await a.waitDisconnect("alpha's ann disconnected");
    assert.equal((await connectError(`${s.url}/alpha`, { token: alphaToken })).code, "E_BANNED");
    assert.ok(b.connected, "beta's ann is not touched by alpha's ban");
    await pool.connect(`${s.url}/beta`, { token: await token(BETA_SECRET, "ann") });
    const betaBans = await api(s.url, "GET", "/api/v1/admin/bans", "beta-admin-key");
    assert.deepEqual(betaBans.body.bans, []);
    // Keys of no app, and the default app's keys, do not reach an app.
    assert.equal((await api(s.url, "GET", "/api/v1/rooms/lobby/users", "nope")).status, 401);
    const viaDefault = await api(s.url, "POST", "/api/v1/push", "default-api-key", {
      room: "lobby",
      message: "to default",
    });
    assert.equal(viaDefault.body.app, "default");
    await b.say("beta marker");
    assert.deepEqual(texts(b, bMark), ["beta marker"], "beta got no push of another app");
  });

  it("limits are per app: alpha's flood, room size and connection cap leave beta alone", async () => {
    const s = await setup([
      alpha({ maxConnections: 3, allowedOrigins: "https://alpha.example.com" }),
      beta({ maxRoomSize: 2 }),
    ]);
    // alpha's pages come from its own origin; the default app (any origin) is not narrowed.
    const origin = (o: string) => ({ extraHeaders: { Origin: o } });
    const foreign = await connectError(
      `${s.url}/alpha`,
      { token: await token(ALPHA_SECRET, "eve") },
      origin("https://evil.example.com"),
    );
    assert.equal(foreign.code, "E_ORIGIN_FORBIDDEN");
    const home = await pool.connect(
      `${s.url}/`,
      { token: await token(DEFAULT_SECRET, "eve") },
      origin("https://evil.example.com"),
    );
    home.close();
    const a = await pool.connect(`${s.url}/alpha`, { token: await token(ALPHA_SECRET, "ann") });
    const b = await pool.connect(`${s.url}/beta`, { token: await token(BETA_SECRET, "ann") });
    const replies: Envelope[] = [];
    for (let i = 0; i < 5; i++) {
      replies.push(
        await a.request("message", { type: "text", content: { message: `flood ${i}` } }),
      );
    }
    const limited = replies.filter((r) => r.data.content.error?.code === "E_RATE_LIMITED");
    assert.equal(limited.length, 2, "alpha allows 3 per 30 s");
    // The same userId in beta sends on (the per-connection and per-user limits are per app).
    for (let i = 0; i < 5; i++) await b.say(`beta ${i}`);
    // beta's rooms hold 2 users at most; a second tab of a user in it is not a new user.
    await pool.connect(`${s.url}/beta`, { token: await token(BETA_SECRET, "bob") });
    await pool.connect(`${s.url}/beta`, { token: await token(BETA_SECRET, "ann") });
    const full = await connectError(`${s.url}/beta`, { token: await token(BETA_SECRET, "cat") });
    assert.equal(full.code, "E_ROOM_FULL");
    const other = await pool.connect(`${s.url}/beta`, {
      token: await token(BETA_SECRET, "cat", "other"),
    });
    assert.ok(other.connected, "another room of beta has room");
    // alpha holds 3 connections on the node at most; beta and the default app are not counted.
    await pool.connect(`${s.url}/alpha`, { token: await token(ALPHA_SECRET, "bob") });
    await pool.connect(`${s.url}/alpha`, { token: await token(ALPHA_SECRET, "cat") });
    const capped = await connectError(`${s.url}/alpha`, {
      token: await token(ALPHA_SECRET, "dan"),
    });
    assert.equal(capped.code, "E_TOO_MANY_CONNECTIONS");
    await pool.connect(`${s.url}/`, { token: await token(DEFAULT_SECRET, "dan") });
    // Metrics carry the app.
    const metrics = await (
      await fetch(`${s.url}/metrics`, {
        headers: { Authorization: "Bearer default-admin-key" },
      })
    ).text();
    assert.match(metrics, /weigot_ws_rate_limited_total\{[^}]*app="alpha"[^}]*\} 2/);
    assert.match(metrics, /weigot_ws_connections\{[^}]*app="beta"[^}]*\} 4/);
    assert.match(metrics, /weigot_ws_handshakes_total\{[^}]*result="E_ROOM_FULL"[^}]*app="beta"/);
    assert.match(metrics, /weigot_ws_messages_received_total\{[^}]*app="beta"[^}]*\} 5/);
  });

  it("reload: an app added, one removed (its clients told), a secret rotated with both accepted", async () => {
    const s = await setup([alpha(), beta()]);
    const oldToken = await token(ALPHA_SECRET, "ann");
    const a = await pool.connect(`${s.url}/alpha`, { token: oldToken });
    const b = await pool.connect(`${s.url}/beta`, { token: await token(BETA_SECRET, "ann") });
    const bMark = b.mark();
    // Rotation, step 1: both secrets; gamma added; beta removed.
    writeApps(appsFile, [
      alpha({ jwtSecrets: [ALPHA_NEXT, ALPHA_SECRET] }),
      { id: "gamma", jwtSecrets: [GAMMA_SECRET] },
    ]);
    const r = s.cli(["reload", "--apps"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /alpha, gamma/);
    const told = await b.waitFor(
      (e) => e.data.content.error?.code === "E_UNKNOWN_APP",
      "beta told",
      5000,
      bMark,
    );
    assert.match(String(told.data.content.message), /removed/);
    assert.equal(await b.waitDisconnect("beta disconnected"), "io server disconnect");
    assert.equal(
      (await connectError(`${s.url}/beta`, { token: await token(BETA_SECRET, "ann") })).code,
      "E_UNKNOWN_APP",
    );
    await pool.connect(`${s.url}/gamma`, { token: await token(GAMMA_SECRET, "gil") });
    await pool.connect(`${s.url}/alpha`, { token: oldToken });
    await pool.connect(`${s.url}/alpha`, { token: await token(ALPHA_NEXT, "bob") });
    assert.ok(a.connected, "alpha's connection stays through the reload");
    // Step 2, by SIGHUP: the old secret goes; its tokens are refused, open connections stay.
    writeApps(appsFile, [alpha({ jwtSecrets: [ALPHA_NEXT] })]);
    const before = logged(s.logs, "apps reloaded").length;
    process.kill(s.pid, "SIGHUP");
    await waitUntil(() => logged(s.logs, "apps reloaded").length > before, "SIGHUP reload");
    assert.equal(
      (await connectError(`${s.url}/alpha`, { token: oldToken })).code,
      "E_AUTH_INVALID",
    );
    await pool.connect(`${s.url}/alpha`, { token: await token(ALPHA_NEXT, "cat") });
    assert.ok(a.connected);
    await a.say("still here");
    // A broken file changes nothing and says why.
    writeFileSync(appsFile, JSON.stringify({ apps: [{ id: "Bad Id" }] }));
    const bad = s.cli(["reload", "--apps"]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /app id "Bad Id"/);
    await pool.connect(`${s.url}/alpha`, { token: await token(ALPHA_NEXT, "dan") });
    // beta added back in place (the workers that removed it keep running).
    writeApps(appsFile, [alpha({ jwtSecrets: [ALPHA_NEXT] }), beta()]);
    assert.equal(s.cli(["reload", "--apps"]).code, 0);
    const back = await pool.connect(`${s.url}/beta`, { token: await token(BETA_SECRET, "fay") });
    await back.say("beta in place");
    assert.ok(back.connected, "a client of an app added back stays");
    back.close();
    // A full reload (rolling restart) re-reads the apps too, and new workers start with them.
    writeApps(appsFile, [alpha({ jwtSecrets: [ALPHA_NEXT] }), beta({ name: "Beta 2" })]);
    const full = s.cli(["reload"]);
    assert.equal(full.code, 0, full.stderr);
    // beta is back: its new clients stay and chat (the removal left nothing behind).
    const eve = await pool.connect(`${s.url}/beta`, { token: await token(BETA_SECRET, "eve") });
    await eve.say("beta is back");
    assert.ok(eve.connected);
    assert.deepEqual(listOf(eve), ["eve"], "the removed app's users went offline");
  });

  it("webhooks go to each app's own receiver, with the app and the plain room name", async () => {
    receiver = new WebhookReceiver(HOOK_SECRET);
    await receiver.open(0);
    const s = await setup([
      alpha({ webhookUrl: receiver.url, webhookSecret: HOOK_SECRET, webhookMessages: true }),
      beta(),
    ]);
    const a = await pool.connect(`${s.url}/alpha`, { token: await token(ALPHA_SECRET, "ann") });
    await pool.connect(`${s.url}/beta`, { token: await token(BETA_SECRET, "ann") });
    await pool.connect(`${s.url}/`, { token: await token(DEFAULT_SECRET, "ann") });
    await a.say("hooked");
    const r = receiver;
    await waitUntil(
      () => r.acked.some((e) => e.type === "message"),
      "alpha's message webhook",
      15_000,
    );
    assert.ok(r.batches.every((b) => b.app === "alpha" && b.signatureOk));
    const events = r.acked;
    assert.ok(
      events.every((e) => e.room === "lobby"),
      JSON.stringify(events),
    );
    // One user.online (alpha's ann), not three: beta's and the default app's are not alpha's.
    assert.equal(events.filter((e) => e.type === "user.online").length, 1);
  });

  it("a bad apps file stops the start with the reason", async () => {
    const file = path.join(tempDir(), "apps.json");
    writeApps(file, [alpha(), beta({ jwtSecrets: [ALPHA_SECRET] })]);
    const r = runCli(["start", "--port", "0", "--apps-file", file, "--pid-file", `${file}.pid`]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /app "beta": its jwtSecret is also app "alpha"'s/);
    writeApps(file, [alpha({ messageRate: "fast" })]);
    const r2 = runCli(["start", "--port", "0", "--apps-file", file, "--pid-file", `${file}.pid`]);
    assert.equal(r2.code, 1);
    assert.match(r2.stderr, /app "alpha": messageRate: expected <count>\/<seconds>s/);
    writeApps(file, [alpha({ colour: "red" })]);
    const r3 = runCli(["start", "--port", "0", "--apps-file", file, "--pid-file", `${file}.pid`]);
    assert.match(r3.stderr, /unknown key "colour"/);
  });

  it("apps from the --config file's apps key", async () => {
    const dir = tempDir();
    const config = path.join(dir, "config.json");
    writeFileSync(config, JSON.stringify({ jwtSecret: DEFAULT_SECRET, apps: [alpha()] }));
    service = await startService(["--config", config]);
    const a = await pool.connect(`${service.url}/alpha`, {
      token: await token(ALPHA_SECRET, "ann"),
    });
    assert.ok(a.connected);
    writeFileSync(config, JSON.stringify({ jwtSecret: DEFAULT_SECRET, apps: [alpha(), beta()] }));
    assert.equal(service.cli(["reload", "--apps"]).code, 0);
    await pool.connect(`${service.url}/beta`, { token: await token(BETA_SECRET, "ann") });
  });
});

describe("apps across 2 nodes via Redis", { timeout: 120_000 }, () => {
  const pool = new ClientPool();
  let redis: RedisServer;
  let nodes: NodeHandle[] = [];
  const prefix = "apps-test";
  const receiver = new WebhookReceiver(HOOK_SECRET);

  before(async () => {
    redis = await startRedisServer();
    await receiver.open(0);
    const file = path.join(tempDir(), "apps.json");
    writeApps(file, [
      alpha({
        messageRate: "100/10s",
        webhookUrl: receiver.url,
        webhookSecret: HOOK_SECRET,
        webhookMessages: true,
      }),
      beta(),
    ]);
    nodes = await Promise.all(
      ["a", "b"].map((nodeId) =>
        startNode({
          redisUrl: redis.url,
          nodeId,
          prefix,
          args: [...DEFAULT_ARGS, "--apps-file", file],
        }),
      ),
    );
  });
  afterEach(() => pool.closeAll());
  after(async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    await redis?.stop();
    await receiver.close();
  });

  it("the same room in two apps is isolated across nodes; Redis keys carry the app id", async () => {
    const [na, nb] = nodes as [NodeHandle, NodeHandle];
    const a1 = await pool.connect(`${na.url}/alpha`, { token: await token(ALPHA_SECRET, "ann") });
    const b1 = await pool.connect(`${na.url}/beta`, { token: await token(BETA_SECRET, "ann") });
    const marks = [a1.mark(), b1.mark()];
    const a2 = await pool.connect(`${nb.url}/alpha`, { token: await token(ALPHA_SECRET, "bob") });
    const b2 = await pool.connect(`${nb.url}/beta`, { token: await token(BETA_SECRET, "cat") });
    assert.deepEqual(listOf(a2), ["ann", "bob"]);
    assert.deepEqual(listOf(b2), ["ann", "cat"]);
    await a1.waitFor((e) => e.action === 202 && e.data.content.userInfo?.userId === "bob", "202");
    await b1.waitFor((e) => e.action === 202 && e.data.content.userInfo?.userId === "cat", "202");
    await a2.say("alpha across");
    await b2.say("beta across");
    await a1.waitFor((e) => e.data.content.message === "alpha across", "alpha across nodes");
    await b1.waitFor((e) => e.data.content.message === "beta across", "beta across nodes");
    await a2.say("alpha marker");
    await b2.say("beta marker");
    await a1.waitFor((e) => e.data.content.message === "alpha marker", "alpha marker");
    await b1.waitFor((e) => e.data.content.message === "beta marker", "beta marker");
    assert.deepEqual(texts(a1, marks[0]), ["alpha across", "alpha marker"]);
    assert.deepEqual(texts(b1, marks[1]), ["beta across", "beta marker"]);
    assert.deepEqual(
      a1.all((e) => e.action === 202, marks[0]).map((e) => e.data.content.userInfo?.userId),
      ["bob"],
    );
    // History across nodes: a late beta client on node a gets beta's messages only.
    const late = await pool.connect(`${na.url}/beta`, { token: await token(BETA_SECRET, "dan") });
    await late.waitFor((e) => e.data.content.message === "beta marker", "beta's replay");
    assert.deepEqual(
      late.all((e) => e.action === 300).map((e) => e.data.content.message),
      ["beta across", "beta marker"],
    );
    // The keys: alpha's and beta's lobbies are apart, under the prefix, with the app id.
    const client = createClient({ url: redis.url });
    await client.connect();
    try {
      const keys = await client.keys(`${prefix}*`);
      assert.ok(
        keys.some((k) => k.includes("alpha/lobby")),
        keys.join("\n"),
      );
      assert.ok(
        keys.some((k) => k.includes("beta/lobby")),
        keys.join("\n"),
      );
      assert.ok(keys.every((k) => k.startsWith(prefix)));
    } finally {
      await client.close();
    }
    // Alpha's webhooks (queued in Redis by the stores' scripts, in alpha's own queue): alpha's
    // events only, with the plain room name, sent once.
    await waitUntil(
      () =>
        receiver.acked.some(
          (e) => e.type === "message" && e.envelope?.data.content.message === "alpha marker",
        ),
      "alpha's webhooks via Redis",
      15_000,
    );
    assert.ok(receiver.batches.every((b) => b.app === "alpha" && b.signatureOk));
    const hooked = receiver.acked;
    assert.ok(
      hooked.every((e) => e.room === "lobby"),
      JSON.stringify(hooked),
    );
    assert.deepEqual(
      hooked
        .filter((e) => e.type === "user.online")
        .map((e) => e.user?.userId)
        .sort(),
      ["ann", "bob"],
    );
    assert.deepEqual(
      hooked.filter((e) => e.type === "message").map((e) => e.envelope?.data.content.message),
      ["alpha across", "alpha marker"],
    );
    // The API of node b, with alpha's key, sees alpha's users of both nodes.
    const users = await api(nb.url, "GET", "/api/v1/rooms/lobby/users", "alpha-api-key");
    assert.deepEqual((users.body.users as { userId: string }[]).map((u) => u.userId).sort(), [
      "ann",
      "bob",
    ]);
  });
});

describe("deploy/apps.example.json", () => {
  it("is an apps file the service accepts", () => {
    const file = path.join(ROOT, "deploy/apps.example.json");
    const apps = loadApps(parseConfig({ appsFile: file }));
    assert.deepEqual(
      apps.map((a) => [a.id, a.jwtSecrets.length]),
      [
        ["shop", 1],
        ["crm", 2],
      ],
    );
  });
});
