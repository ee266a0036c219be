/**
 * A service started with --jwt-secret: clients must present an HS256 JWT (sub, name, room,
 * role "admin"); the identity comes from the token, never from what the client claims.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import { SignJWT, UnsecuredJWT } from "jose";
import type { Envelope } from "../src/chat/protocol.js";
import { ClientPool, connectError, type Transport } from "./support/chat-client.js";
import { type ServiceHandle, startService } from "./support/service.js";

const SECRET = "test-secret-0123456789abcdef0123456789";
const OTHER_SECRET = "another-secret-0123456789abcdef012345";
const key = (s: string) => new TextEncoder().encode(s);

interface Claims {
  sub?: string;
  name?: string;
  room?: string;
  role?: string;
}

async function token(
  claims: Claims,
  opts: { secret?: string; exp?: string | number; alg?: string; nbf?: string | number } = {},
): Promise<string> {
  const { sub, ...rest } = claims;
  const jwt = new SignJWT({ ...rest })
    .setProtectedHeader({ alg: opts.alg ?? "HS256" })
    .setIssuedAt()
    .setExpirationTime(opts.exp ?? "1h");
  if (sub !== undefined) jwt.setSubject(sub);
  if (opts.nbf !== undefined) jwt.setNotBefore(opts.nbf);
  return jwt.sign(key(opts.secret ?? SECRET));
}

let service: ServiceHandle;

before(async () => {
  service = await startService(["--jwt-secret", SECRET]);
});

after(async () => {
  await service?.stop();
});

for (const transport of ["websocket", "polling"] as Transport[]) {
  describe(`JWT auth over ${transport}`, { timeout: 60_000 }, () => {
    const pool = new ClientPool();
    const opts = { transports: [transport] };
    let roomSeq = 0;
    const newRoom = () => `auth-${transport}-${++roomSeq}`;
    afterEach(() => pool.closeAll());

    it("no token: E_AUTH_REQUIRED, whatever else the client claims", async () => {
      for (const auth of [{}, { username: "mallory" }, { token: "" }, { token: 42 }]) {
        const err = await connectError(service.url, auth, opts);
        assert.equal(err.code, "E_AUTH_REQUIRED", JSON.stringify(auth));
        assert.match(err.message, /token/);
      }
    });

    it("a garbled, forged, unsigned or wrongly signed token: E_AUTH_INVALID", async () => {
      const good = await token({ sub: "u1", name: "ann" });
      const [h, p] = good.split(".");
      const tampered = `${h}.${Buffer.from(JSON.stringify({ sub: "admin", role: "admin", exp: 9_999_999_999 })).toString("base64url")}.${good.split(".")[2]}`;
      const cases: [string, string][] = [
        ["garbage", "not-a-jwt"],
        [
          "forged with another secret",
          await token({ sub: "u1", name: "ann" }, { secret: OTHER_SECRET }),
        ],
        ["payload swapped", tampered],
        ["signature cut", `${h}.${p}.`],
        ["alg none", new UnsecuredJWT({ sub: "u1" }).setExpirationTime("1h").encode()],
        ["HS512", await token({ sub: "u1", name: "ann" }, { alg: "HS512" })],
        ["not yet valid", await token({ sub: "u1" }, { nbf: "1h" })],
      ];
      for (const [what, t] of cases) {
        const err = await connectError(service.url, { token: t }, opts);
        assert.equal(err.code, "E_AUTH_INVALID", what);
        assert.equal(typeof err.message, "string");
      }
    });

    it("an expired token: E_AUTH_EXPIRED", async () => {
      const t = await token(
        { sub: "u1", name: "ann" },
        { exp: Math.floor(Date.now() / 1000) - 60 },
      );
      const err = await connectError(service.url, { token: t }, opts);
      assert.equal(err.code, "E_AUTH_EXPIRED");
      assert.match(err.message, /expired/);
    });

    it("a token with a bad name, a bad room or no subject is refused with the field's code", async () => {
      const cases: [Claims, string][] = [
        [{ sub: "u1", name: "x".repeat(33) }, "E_BAD_USERNAME"],
        [{ sub: "u1", name: "a\u0000b" }, "E_BAD_USERNAME"],
        [{ sub: "has space", name: "ann" }, "E_BAD_USERNAME"],
        [{ name: "ann" }, "E_BAD_USERNAME"],
        [{ sub: "u1", name: "ann", room: "bad room" }, "E_BAD_ROOM"],
      ];
      for (const [claims, code] of cases) {
        const err = await connectError(service.url, { token: await token(claims) }, opts);
        assert.equal(err.code, code, JSON.stringify(claims));
      }
    });

    it("a valid token: the identity is the token's (sub, name, room), not the client's claims", async () => {
      const room = newRoom();
      const ann = await pool.connect(
        service.url,
        {
          token: await token({ sub: "user-1", name: "Ann", room }),
          username: "mallory",
          userId: "admin",
          room: "elsewhere",
        },
        opts,
      );
      const info = ann.received[0];
      assert.equal(info.action, 200);
      assert.deepEqual(info.data.content.userInfo, {
        fd: ann.fd,
        userId: "user-1",
        username: "Ann",
        room,
      });
      // Without name the username is the subject; without a room in the token the client's.
      const room2 = newRoom();
      const bare = await pool.connect(
        service.url,
        { token: await token({ sub: "user-2" }), room: room2 },
        opts,
      );
      assert.deepEqual(bare.received[0].data.content.userInfo, {
        fd: bare.fd,
        userId: "user-2",
        username: "user-2",
        room: room2,
      });
      const sent = await ann.say("hello with a token");
      assert.deepEqual(sent.data.content.userInfo, info.data.content.userInfo);
    });

    it("role admin marks the user admin in its details, in 202, in lists and on its messages", async () => {
      const room = newRoom();
      const ann = await pool.connect(
        service.url,
        { token: await token({ sub: "ann", name: "Ann", room }) },
        opts,
      );
      const from = ann.mark();
      const boss = await pool.connect(
        service.url,
        { token: await token({ sub: "boss", name: "Boss", room, role: "admin" }) },
        opts,
      );
      const bossInfo = { fd: boss.fd, userId: "boss", username: "Boss", room, admin: true };
      assert.deepEqual(boss.received[0].data.content.userInfo, bossInfo);
      const online = await ann.waitFor(
        (e: Envelope) => e.action === 202,
        "202 for boss",
        5000,
        from,
      );
      assert.deepEqual(online.data.content.userInfo, bossInfo);
      const list = await ann.request("onlineList");
      assert.deepEqual(list.data.content.userList, [
        { fd: ann.fd, userId: "ann", username: "Ann", room },
        bossInfo,
      ]);
      assert.equal(
        "admin" in (list.data.content.userList?.[0] ?? {}),
        false,
        "non-admins carry no admin field",
      );
      const msg = await boss.say("listen up");
      assert.deepEqual(msg.data.content.userInfo, bossInfo);
      // An admin's notice: 101 to the whole room, the admin's tabs included, with id and ts.
      const marks = [ann.mark(), boss.mark()];
      const reply = await boss.request("message", {
        type: "text",
        content: { message: "maintenance at noon" },
        notice: true,
      });
      assert.equal(reply.action, 101);
      for (const [i, c] of [ann, boss].entries()) {
        const n = await c.waitFor((e: Envelope) => e.action === 101, "the notice", 5000, marks[i]);
        assert.equal(n.data.type, "text");
        assert.equal(n.data.content.message, "maintenance at noon");
        assert.deepEqual(n.data.content.userInfo, bossInfo);
        assert.equal(n.id, reply.id);
        assert.equal(typeof n.ts, "number");
      }
      // A user's notice is refused.
      const refused = await ann.request("message", {
        type: "text",
        content: { message: "me too" },
        notice: true,
      });
      assert.equal(refused.action, 100);
      assert.equal(refused.data.content.error?.code, "E_FORBIDDEN");
      await ann.say("ann is still connected");
      // Any other role is no admin.
      const other = await pool.connect(
        service.url,
        { token: await token({ sub: "eve", name: "Eve", room, role: "superuser" }) },
        opts,
      );
      assert.equal(other.received[0].data.content.userInfo?.admin, undefined);
    });
  });
}
