/**
 * Identity against the real cluster: nobody can take another connection's fd as userId (which
 * used to intercept private messages sent `to` that fd), `to` says whether it names an fd or a
 * userId, names are normalized and deceptive ones refused, `system` is the push API's, JWT
 * aud/iss/size are checked, and open mode says it is for development.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import { SignJWT } from "jose";
import type { Envelope } from "../src/chat/protocol.js";
import { type ChatClient, ClientPool, connectError } from "./support/chat-client.js";
import { type NodeHandle, startNode } from "./support/cluster-nodes.js";
import { type RedisServer, startRedisServer } from "./support/redis-server.js";
import { type ServiceHandle, startService } from "./support/service.js";

const SECRET = "identity-secret-0123456789abcdef01234567";
const AUDIENCE = "chat,chat-admin";
const ISSUER = "https://id.example";

async function token(claims: Record<string, unknown>, secret = SECRET): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: "HS256" })
    .setIssuedAt()
    .setExpirationTime("1h")
    .sign(new TextEncoder().encode(secret));
}

let roomSeq = 0;
const newRoom = () => `identity-${process.pid}-${++roomSeq}`;

const isPrivate = (text: string) => (e: Envelope) =>
  e.action === 300 && e.private === true && e.data.content.message === text;

async function onlineList(client: ChatClient) {
  const reply = await client.request("onlineList");
  return reply.data.content.userList ?? [];
}

/** Sends a private text with an ack and resolves with the reply (the 300, or an error 100). */
function sendPrivate(sender: ChatClient, to: unknown, text: string): Promise<Envelope> {
  return sender.request("message", { type: "text", content: { message: text }, to });
}

describe("identity, open mode", { timeout: 120_000 }, () => {
  let service: ServiceHandle;
  const pool = new ClientPool();
  before(async () => {
    service = await startService();
  });
  after(async () => {
    pool.closeAll();
    await service?.stop();
  });
  afterEach(() => pool.closeAll());

  it("says it is for development: start-up warning, /config.json open: true", async () => {
    const warning = service.logs.find((l) => /development only/.test(l));
    assert.ok(warning, "a start-up warning says open mode is for development only");
    assert.match(warning, /--jwt-secret/);
    const res = await fetch(`${service.url}/config.json`);
    const body = (await res.json()) as { open?: unknown; authRequired?: unknown };
    assert.equal(body.open, true);
    assert.equal(body.authRequired, false);
  });

  it("the interception repro is refused: userId = a live fd gets E_RESERVED_NAME", async () => {
    const room = newRoom();
    const victim = await pool.connect(service.url, { username: "victim", room });
    const sender = await pool.connect(service.url, { username: "sender", room });
    const listed = (await onlineList(sender)).find((u) => u.userId === "victim");
    assert.ok(listed, "the victim is in the online list, with its fd");
    assert.equal(listed.fd, victim.fd);
    // Several tries: the new connection lands on either worker; the check is cluster-wide.
    for (let i = 0; i < 4; i++) {
      const err = await connectError(service.url, { username: "mallory", userId: victim.fd, room });
      assert.equal(err.code, "E_RESERVED_NAME");
      assert.match(err.message, /fd/);
    }
    // As username too (the userId defaults to it).
    const err = await connectError(service.url, { username: victim.fd, room });
    assert.equal(err.code, "E_RESERVED_NAME");
    // In another room that fd names nobody: no collision to prevent there.
    const elsewhere = await pool.connect(service.url, {
      username: "mallory",
      userId: victim.fd,
      room: newRoom(),
    });
    assert.equal(elsewhere.connected, true);
  });

  it("a private message to an fd reaches its user (string, { fd }, { userId }), nobody else", async () => {
    const room = newRoom();
    const victim = await pool.connect(service.url, { username: "victim", room });
    const secondTab = await pool.connect(service.url, { username: "victim", room });
    const sender = await pool.connect(service.url, { username: "sender", room });
    const bystander = await pool.connect(service.url, { username: "mallory", room });
    const forms: [string, unknown][] = [
      ["string fd", victim.fd],
      ["{ fd }", { fd: victim.fd }],
      ["{ fd } of the second tab", { fd: secondTab.fd }],
      ["{ userId }", { userId: "victim" }],
      ["string userId", "victim"],
    ];
    for (const [what, to] of forms) {
      const text = `secret via ${what}`;
      const reply = await sendPrivate(sender, to, text);
      assert.equal(reply.action, 300, `${what}: ${JSON.stringify(reply.data.content.error)}`);
      assert.equal(reply.data.content.to, "victim");
      await victim.waitFor(isPrivate(text), `victim gets ${what}`);
      await secondTab.waitFor(isPrivate(text), `victim's second tab gets ${what}`);
    }
    // The bystander got none of them: a 300 to everyone proves its stream is flowing.
    await sender.say("to the room");
    await bystander.waitFor((e) => e.action === 300 && !e.private, "the public message");
    assert.deepEqual(bystander.all(isPrivate("secret via string fd")), []);
    assert.equal(
      bystander.all((e) => e.private === true).length,
      0,
      "no private message reached the bystander",
    );
  });

  it("{ fd } and { userId } never cross: an fd is no userId, a userId no fd", async () => {
    const room = newRoom();
    const victim = await pool.connect(service.url, { username: "victim", room });
    const sender = await pool.connect(service.url, { username: "sender", room });
    for (const to of [{ userId: victim.fd }, { fd: "victim" }, { fd: "nobody-at-all-here-00" }]) {
      const reply = await sendPrivate(sender, to, "lost");
      assert.equal(reply.action, 100, JSON.stringify(to));
      assert.equal(reply.data.content.error?.code, "E_NO_RECIPIENT");
    }
    const bad = await sendPrivate(sender, { userId: "victim", fd: victim.fd }, "ambiguous");
    assert.equal(bad.data.content.error?.code, "E_BAD_PAYLOAD");
  });

  it("a stale fd someone took as userId afterwards: { fd } reaches nobody", async () => {
    const room = newRoom();
    const gone = await pool.connect(service.url, { username: "gone", room });
    const sender = await pool.connect(service.url, { username: "sender", room });
    const staleFd = gone.fd;
    gone.close();
    await sender.waitFor((e) => e.action === 203, "the 203 of the gone user");
    // No longer a live fd: the name is free to take (it is just a string now)...
    const squatter = await pool.connect(service.url, { username: "squat", userId: staleFd, room });
    const reply = await sendPrivate(sender, { fd: staleFd }, "for the old connection");
    assert.equal(reply.data.content.error?.code, "E_NO_RECIPIENT");
    assert.deepEqual(squatter.all(isPrivate("for the old connection")), []);
  });

  it("E_RESERVED_NAME: system, in any case, as username or userId", async () => {
    for (const auth of [
      { username: "system" },
      { username: "System" },
      { username: "ｓｙｓｔｅｍ" },
      { username: "ann", userId: "SYSTEM" },
    ]) {
      const err = await connectError(service.url, auth);
      assert.equal(err.code, "E_RESERVED_NAME", JSON.stringify(auth));
    }
  });

  it("NFC: a decomposed and a composed name are one user", async () => {
    const room = newRoom();
    const composed = await pool.connect(service.url, { username: "Jos\u00e9", room });
    const decomposed = await pool.connect(service.url, { username: "Jose\u0301 ", room });
    const me = await decomposed.request("info");
    assert.equal(me.data.content.userInfo?.userId, "Jos\u00e9");
    assert.equal(me.data.content.userInfo?.username, "Jos\u00e9");
    const users = await onlineList(composed);
    assert.deepEqual(
      users.map((u) => u.userId),
      ["Jos\u00e9"],
      "one user, two connections",
    );
  });

  it("E_BAD_USERNAME: invisible, blank-looking and mixed-script names", async () => {
    for (const username of [
      "ad\u200bmin",
      "admin\u202e",
      "\u3164",
      "\u115f\u1160",
      "\u200b",
      "p\u0430ypal",
      "\u0391lice",
      "ann\ufe0f",
    ]) {
      const err = await connectError(service.url, { username });
      assert.equal(err.code, "E_BAD_USERNAME", JSON.stringify(username));
    }
    const err = await connectError(service.url, { username: "ann", userId: "b\u043eb" });
    assert.equal(err.code, "E_BAD_USERNAME");
  });

  it("Chinese (and other single-script) names work, privately too", async () => {
    const room = newRoom();
    const wang = await pool.connect(service.url, { username: "王小明", room });
    const xiaoA = await pool.connect(service.url, { username: "小A", room });
    await pool.connect(service.url, { username: "Алексей", room });
    const users = await onlineList(wang);
    assert.deepEqual(users.map((u) => u.username).sort(), ["Алексей", "小A", "王小明"].sort());
    const reply = await sendPrivate(xiaoA, { userId: "王小明" }, "你好");
    assert.equal(reply.action, 300);
    await wang.waitFor(isPrivate("你好"), "王小明 gets the private message");
  });
});

describe("identity, JWT mode (--jwt-audience, --jwt-issuer)", { timeout: 120_000 }, () => {
  let service: ServiceHandle;
  const pool = new ClientPool();
  before(async () => {
    service = await startService([
      "--jwt-secret",
      SECRET,
      "--jwt-audience",
      AUDIENCE,
      "--jwt-issuer",
      ISSUER,
    ]);
  });
  after(async () => {
    pool.closeAll();
    await service?.stop();
  });
  afterEach(() => pool.closeAll());

  const good = { aud: "chat", iss: ISSUER };

  it("/config.json says open: false; no development warning", async () => {
    const body = (await (await fetch(`${service.url}/config.json`)).json()) as { open?: unknown };
    assert.equal(body.open, false);
    assert.equal(
      service.logs.some((l) => /development only/.test(l)),
      false,
    );
  });

  it("a token with an accepted aud (string or list) and the iss connects", async () => {
    const room = newRoom();
    const a = await pool.connect(service.url, {
      token: await token({ sub: "u1", name: "王小明", room, ...good }),
    });
    const b = await pool.connect(service.url, {
      token: await token({ sub: "u2", room, aud: ["other", "chat-admin"], iss: ISSUER }),
    });
    assert.equal(a.connected && b.connected, true);
  });

  it("E_AUTH_INVALID: wrong or missing aud, wrong or missing iss, a token over 8 KB", async () => {
    const cases: [string, string, RegExp][] = [
      ["wrong aud", await token({ sub: "u", aud: "billing", iss: ISSUER }), /aud/],
      ["no aud", await token({ sub: "u", iss: ISSUER }), /aud/],
      ["wrong iss", await token({ sub: "u", aud: "chat", iss: "https://evil.example" }), /iss/],
      ["no iss", await token({ sub: "u", aud: "chat" }), /iss/],
      ["9 KB, well signed", await token({ sub: "u", ...good, pad: "p".repeat(9000) }), /large/],
      ["1 MB of junk", "x".repeat(1_000_000), /large/],
    ];
    for (const [what, t, why] of cases) {
      const err = await connectError(service.url, { token: t });
      assert.equal(err.code, "E_AUTH_INVALID", what);
      assert.match(err.message, why, what);
    }
  });

  it("E_RESERVED_NAME: a token whose sub is a live fd, or system", async () => {
    const room = newRoom();
    const victim = await pool.connect(service.url, {
      token: await token({ sub: "victim", room, ...good }),
    });
    const err = await connectError(service.url, {
      token: await token({ sub: victim.fd, room, ...good }),
    });
    assert.equal(err.code, "E_RESERVED_NAME");
    for (const claims of [{ sub: "system" }, { sub: "u", name: "SYSTEM" }]) {
      const e = await connectError(service.url, { token: await token({ ...claims, ...good }) });
      assert.equal(e.code, "E_RESERVED_NAME", JSON.stringify(claims));
    }
  });
});

describe("identity across two nodes (Redis presence)", { timeout: 120_000 }, () => {
  let redis: RedisServer;
  let nodes: NodeHandle[] = [];
  const pool = new ClientPool();
  before(async () => {
    redis = await startRedisServer();
    nodes = await Promise.all(
      ["a", "b"].map((nodeId) => startNode({ redisUrl: redis.url, nodeId })),
    );
  });
  after(async () => {
    pool.closeAll();
    await Promise.all(nodes.map((n) => n.stop()));
    await redis?.stop();
  });
  afterEach(() => pool.closeAll());

  it("the fd of a user on node a cannot be claimed on node b; to: fd reaches the user", async () => {
    const [a, b] = nodes;
    const room = newRoom();
    const victim = await pool.connect(a.url, { username: "victim", room });
    const sender = await pool.connect(b.url, { username: "sender", room });
    const err = await connectError(b.url, { username: "mallory", userId: victim.fd, room });
    assert.equal(err.code, "E_RESERVED_NAME");
    for (const to of [victim.fd, { fd: victim.fd }, { userId: "victim" }]) {
      const text = `across nodes ${JSON.stringify(to)}`;
      const reply = await sendPrivate(sender, to, text);
      assert.equal(reply.action, 300, JSON.stringify(reply.data.content.error));
      await victim.waitFor(isPrivate(text), `victim on node a gets ${JSON.stringify(to)}`);
    }
    const wrong = await sendPrivate(sender, { userId: victim.fd }, "lost");
    assert.equal(wrong.data.content.error?.code, "E_NO_RECIPIENT");
  });
});
