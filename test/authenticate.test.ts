/** Unit tests of src/auth/authenticate.ts: open mode and JWT mode, no processes. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SignJWT } from "jose";
import { Authenticator, DEFAULT_ROOM, MAX_TOKEN_BYTES } from "../src/auth/authenticate.js";
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

describe("Authenticator, names (open mode)", () => {
  const auth = new Authenticator("");
  const username = async (name: string) => (await auth.authenticate({ username: name })).username;

  it("normalizes: NFC, full-width ASCII folded, trimmed (any space), inner spaces collapsed", async () => {
    const composed = await auth.authenticate({ username: "Jos\u00e9" });
    const decomposed = await auth.authenticate({ username: "Jose\u0301" });
    assert.equal(decomposed.username, "Jos\u00e9");
    assert.equal(decomposed.userId, composed.userId);
    assert.equal(await username("ａｌｉｃｅ"), "alice");
    assert.equal(await username("\u3000王小明\u3000"), "王小明");
    assert.equal(await username("Ann \u00a0 B"), "Ann B");
    // Counted after normalization: 32 decomposed é (64 code points) are 32 characters.
    assert.equal(await username("e\u0301".repeat(32)), "\u00e9".repeat(32));
    assert.equal(
      (await auth.authenticate({ username: "a", userId: " Jose\u0301 " })).userId,
      "Jos\u00e9",
    );
  });

  it("accepts single-script names, CJK mixes and Latin with CJK (Chinese teams' names)", async () => {
    for (const name of [
      "王小明",
      "李明 2",
      "小A",
      "Tom王",
      "张三-dev",
      "山田たろう",
      "김철수",
      "Алексей",
      "Ἀλέξανδρος",
      "Ann-B_3.",
      "😀 Ann",
      "नमस्ते",
    ]) {
      assert.equal(await username(name), name);
    }
  });

  it("E_BAD_USERNAME: invisible, format, control characters anywhere", async () => {
    for (const name of [
      "a\u200bb",
      "a\u200cb",
      "a\u200db",
      "a\u200fb",
      "a\u2066b",
      "a\u202eb",
      "\ufeffann",
      "an\u00adn",
      "ann\u034f",
      "ann\ufe0f",
      "ann\u{e0100}",
      "ann\u{e0041}",
      "a\u3164b",
      "ann\n",
      "a\u2028b",
      "ann\u{f0000}",
    ]) {
      await refused(auth, { username: name }, "E_BAD_USERNAME");
      await refused(auth, { username: "ann", userId: name }, "E_BAD_USERNAME");
    }
  });

  it("E_BAD_USERNAME: nothing visible (Hangul fillers, zero-width, braille blank)", async () => {
    for (const name of [
      "\u3164",
      "\u115f\u1160",
      "\uffa0",
      "\u200b",
      "\u2800",
      " \u200b \u2060 ",
    ]) {
      await assert.rejects(
        auth.authenticate({ username: name }),
        (err: unknown) =>
          err instanceof ChatError &&
          err.code === "E_BAD_USERNAME" &&
          /no visible characters/.test(err.message),
        JSON.stringify(name),
      );
    }
  });

  it("E_BAD_USERNAME: look-alike script mixes (Latin + Cyrillic/Greek, Cyrillic + Greek)", async () => {
    for (const name of [
      "p\u0430ypal",
      "\u0391lice",
      "\u0410lex",
      "b\u043eb",
      "\u0412\u03b1\u0441",
    ]) {
      await refused(auth, { username: name }, "E_BAD_USERNAME");
      await refused(auth, { username: "ann", userId: name }, "E_BAD_USERNAME");
    }
  });

  it("E_BAD_USERNAME: a run of combining marks (Zalgo); over the limits after normalization", async () => {
    await refused(auth, { username: "q\u0300\u0301\u0302\u0303\u0304" }, "E_BAD_USERNAME");
    await refused(auth, { username: "ａ".repeat(33) }, "E_BAD_USERNAME");
    await refused(auth, { username: "a", userId: "u".repeat(65) }, "E_BAD_USERNAME");
    await refused(auth, { username: "a", userId: "u\u3000v" }, "E_BAD_USERNAME");
  });

  it("E_RESERVED_NAME: system, in any case or width, as username or userId", async () => {
    for (const name of ["system", "SYSTEM", "System", " system ", "ｓｙｓｔｅｍ"]) {
      await refused(auth, { username: name }, "E_RESERVED_NAME");
      await refused(auth, { username: "ann", userId: name }, "E_RESERVED_NAME");
    }
    assert.equal(await username("systems"), "systems");
  });
});

describe("Authenticator, JWT checks (aud, iss, size, reserved names)", () => {
  it("--jwt-audience: aud must be one of the list (string or array claim)", async () => {
    const auth = new Authenticator(SECRET, { audience: "chat-a, chat-b" });
    const ok = await auth.authenticate({ token: await jwt({ sub: "u", aud: "chat-b" }) });
    assert.equal(ok.userId, "u");
    await auth.authenticate({ token: await jwt({ sub: "u", aud: ["other", "chat-a"] }) });
    for (const claims of [{ sub: "u", aud: "chat-c" }, { sub: "u" }, { sub: "u", aud: ["x"] }]) {
      await assert.rejects(
        auth.authenticate({ token: await jwt(claims) }),
        (err: unknown) =>
          err instanceof ChatError && err.code === "E_AUTH_INVALID" && /aud/.test(err.message),
        JSON.stringify(claims),
      );
    }
    const list = new Authenticator(SECRET, { audience: ["chat-a"] });
    await list.authenticate({ token: await jwt({ sub: "u", aud: "chat-a" }) });
  });

  it("--jwt-issuer: iss must match", async () => {
    const auth = new Authenticator(SECRET, { issuer: "https://id.example" });
    await auth.authenticate({ token: await jwt({ sub: "u", iss: "https://id.example" }) });
    for (const claims of [{ sub: "u", iss: "https://evil.example" }, { sub: "u" }]) {
      await assert.rejects(
        auth.authenticate({ token: await jwt(claims) }),
        (err: unknown) =>
          err instanceof ChatError && err.code === "E_AUTH_INVALID" && /iss/.test(err.message),
        JSON.stringify(claims),
      );
    }
  });

  it("without --jwt-audience/--jwt-issuer, aud and iss are not checked", async () => {
    const auth = new Authenticator(SECRET, { audience: "", issuer: "" });
    await auth.authenticate({ token: await jwt({ sub: "u", aud: "any", iss: "anyone" }) });
  });

  it("E_AUTH_INVALID: a token over 8 KB is refused before verification, even a valid one", async () => {
    const auth = new Authenticator(SECRET);
    const fits = await jwt({ sub: "u", pad: "p".repeat(5000) });
    assert.ok(fits.length <= MAX_TOKEN_BYTES);
    await auth.authenticate({ token: fits });
    const big = await jwt({ sub: "u", pad: "p".repeat(7000) });
    assert.ok(big.length > MAX_TOKEN_BYTES);
    await assert.rejects(
      auth.authenticate({ token: big }),
      (err: unknown) =>
        err instanceof ChatError &&
        err.code === "E_AUTH_INVALID" &&
        err.message === "token too large",
    );
    await refused(auth, { token: "x".repeat(1_000_000) }, "E_AUTH_INVALID");
    await refused(
      new Authenticator(SECRET, { maxTokenBytes: 100 }),
      { token: fits },
      "E_AUTH_INVALID",
    );
  });

  it("E_RESERVED_NAME: sub or name system; names in tokens are normalized and checked too", async () => {
    const auth = new Authenticator(SECRET);
    for (const claims of [{ sub: "system" }, { sub: "SYSTEM" }, { sub: "u", name: "System" }]) {
      await refused(auth, { token: await jwt(claims) }, "E_RESERVED_NAME");
    }
    assert.equal(
      (await auth.authenticate({ token: await jwt({ sub: "u", name: "Jose\u0301" }) })).username,
      "Jos\u00e9",
    );
    await refused(auth, { token: await jwt({ sub: "u", name: "p\u0430ypal" }) }, "E_BAD_USERNAME");
    await refused(auth, { token: await jwt({ sub: "u", name: "\u3164" }) }, "E_BAD_USERNAME");
  });
});
