/** Unit tests of src/auth/authenticate.ts: open mode and JWT mode, no processes. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SignJWT } from "jose";
import { Authenticator, DEFAULT_ROOM } from "../src/auth/authenticate.js";
import { ChatError } from "../src/chat/chat-error.js";
import type { ErrorCode } from "../src/chat/protocol.js";

const SECRET = "unit-secret-0123456789abcdef0123456789";

async function refused(auth: Authenticator, input: unknown, code: ErrorCode): Promise<void> {
  await assert.rejects(
    auth.authenticate(input),
    (err: unknown) => err instanceof ChatError && err.code === code && err.message.length > 0,
    `${JSON.stringify(input)} → ${code}`,
  );
}

async function jwt(
  claims: Record<string, unknown>,
  { secret = SECRET, exp = "10m" as string | number, alg = "HS256" } = {},
): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg })
    .setIssuedAt()
    .setExpirationTime(exp)
    .sign(new TextEncoder().encode(secret));
}

describe("Authenticator, open mode (no secret)", () => {
  const auth = new Authenticator("");

  it("is open", () => {
    assert.equal(auth.open, true);
    assert.equal(new Authenticator(SECRET).open, false);
  });

  it("takes the username; userId defaults to it, room to the lobby; nobody is admin", async () => {
    assert.deepEqual(await auth.authenticate({ username: "ann" }), {
      username: "ann",
      userId: "ann",
      room: DEFAULT_ROOM,
      admin: false,
    });
    assert.equal(DEFAULT_ROOM, "lobby");
    assert.deepEqual(
      await auth.authenticate({ username: "Ann B", userId: "u-1", room: "dev.ops:1" }),
      {
        username: "Ann B",
        userId: "u-1",
        room: "dev.ops:1",
        admin: false,
      },
    );
    // A claimed role or admin flag changes nothing.
    const claimed = await auth.authenticate({ username: "eve", role: "admin", admin: true });
    assert.equal(claimed.admin, false);
  });

  it("trims the username; accepts unicode names and rooms, numeric userIds", async () => {
    assert.equal((await auth.authenticate({ username: "  ann  " })).username, "ann");
    assert.equal((await auth.authenticate({ username: "  ann  " })).userId, "ann");
    assert.equal((await auth.authenticate({ username: "王小明" })).username, "王小明");
    assert.equal(
      (await auth.authenticate({ username: "😀".repeat(32) })).username,
      "😀".repeat(32),
    );
    assert.equal((await auth.authenticate({ username: "a", room: "房间_1" })).room, "房间_1");
    assert.equal((await auth.authenticate({ username: "a", userId: 42 })).userId, "42");
    for (const room of [undefined, null, ""]) {
      assert.equal((await auth.authenticate({ username: "a", room })).room, DEFAULT_ROOM);
    }
    assert.equal(
      (await auth.authenticate({ username: "a", room: "r".repeat(64) })).room,
      "r".repeat(64),
    );
    assert.equal((await auth.authenticate({ username: "u".repeat(32) })).username, "u".repeat(32));
  });

  it("E_BAD_USERNAME: missing, empty, blank, too long, control or format characters, not a string", async () => {
    for (const input of [
      undefined,
      null,
      "ann",
      {},
      { username: "" },
      { username: "   " },
      { username: "u".repeat(33) },
      { username: "a\nb" },
      { username: "a\u0000b" },
      { username: "a\u200bb" },
      { username: "a\u202eb" },
      { username: 7 },
      { username: ["ann"] },
    ]) {
      await refused(auth, input, "E_BAD_USERNAME");
    }
  });

  it("E_BAD_USERNAME: a bad userId (spaces, too long, empty, float, object)", async () => {
    for (const userId of ["a b", "", "u".repeat(65), 1.5, { id: 1 }, null, "a\tb"]) {
      await refused(auth, { username: "ann", userId }, "E_BAD_USERNAME");
    }
  });

  it("E_BAD_ROOM: not 1-64 letters, digits or _ . : -", async () => {
    for (const room of ["a b", "a/b", "r".repeat(65), "<script>", 5, { r: 1 }, "a\nb"]) {
      await refused(auth, { username: "ann", room }, "E_BAD_ROOM");
    }
  });
});

describe("Authenticator, JWT mode", () => {
  const auth = new Authenticator(SECRET);

  it("a valid token: sub, name and room from the token; the client's claims are ignored", async () => {
    const token = await jwt({ sub: "u-1", name: "Ann", room: "sales" });
    assert.deepEqual(
      await auth.authenticate({ token, username: "mallory", userId: "root", room: "other" }),
      { userId: "u-1", username: "Ann", room: "sales", admin: false },
    );
  });

  it("without name the username is sub; without room in the token the client's room, else the lobby", async () => {
    const token = await jwt({ sub: "u-2" });
    assert.deepEqual(await auth.authenticate({ token }), {
      userId: "u-2",
      username: "u-2",
      room: DEFAULT_ROOM,
      admin: false,
    });
    assert.equal((await auth.authenticate({ token, room: "mine" })).room, "mine");
  });

  it("role admin makes an admin; other roles do not", async () => {
    assert.equal(
      (await auth.authenticate({ token: await jwt({ sub: "b", role: "admin" }) })).admin,
      true,
    );
    assert.equal(
      (await auth.authenticate({ token: await jwt({ sub: "b", role: "Admin" }) })).admin,
      false,
    );
    assert.equal(
      (await auth.authenticate({ token: await jwt({ sub: "b", role: ["admin"] }) })).admin,
      false,
    );
    assert.equal((await auth.authenticate({ token: await jwt({ sub: "b" }) })).admin, false);
  });

  it("E_AUTH_REQUIRED: no token", async () => {
    for (const input of [undefined, null, {}, { token: "" }, { token: 1 }, { username: "ann" }]) {
      await refused(auth, input, "E_AUTH_REQUIRED");
    }
  });

  it("E_AUTH_EXPIRED: exp in the past", async () => {
    const token = await jwt({ sub: "u" }, { exp: Math.floor(Date.now() / 1000) - 10 });
    await refused(auth, { token }, "E_AUTH_EXPIRED");
  });

  it("E_AUTH_INVALID: forged, garbled, or not HS256", async () => {
    await refused(
      auth,
      { token: await jwt({ sub: "u" }, { secret: "another-secret-of-some-length-123" }) },
      "E_AUTH_INVALID",
    );
    await refused(auth, { token: "a.b.c" }, "E_AUTH_INVALID");
    await refused(auth, { token: "garbage" }, "E_AUTH_INVALID");
    await refused(auth, { token: await jwt({ sub: "u" }, { alg: "HS384" }) }, "E_AUTH_INVALID");
    const good = await jwt({ sub: "u", name: "ann" });
    const [h, , s] = good.split(".");
    const evil = Buffer.from(JSON.stringify({ sub: "u", name: "ann", role: "admin" })).toString(
      "base64url",
    );
    await refused(auth, { token: `${h}.${evil}.${s}` }, "E_AUTH_INVALID");
  });

  it("E_BAD_USERNAME / E_BAD_ROOM: bad claims in a well-signed token", async () => {
    await refused(auth, { token: await jwt({ name: "ann" }) }, "E_BAD_USERNAME");
    await refused(auth, { token: await jwt({ sub: "has space" }) }, "E_BAD_USERNAME");
    await refused(auth, { token: await jwt({ sub: "u", name: "" }) }, "E_BAD_USERNAME");
    await refused(auth, { token: await jwt({ sub: "u", name: "n".repeat(33) }) }, "E_BAD_USERNAME");
    await refused(auth, { token: await jwt({ sub: "u", name: 5 }) }, "E_BAD_USERNAME");
    await refused(
      auth,
      { token: await jwt({ sub: "u", room: "no spaces allowed" }) },
      "E_BAD_ROOM",
    );
    await refused(auth, { token: await jwt({ sub: "u" }), room: "bad room" }, "E_BAD_ROOM");
  });
});
