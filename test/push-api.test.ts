import assert from "node:assert/strict";
import http from "node:http";
import { after, afterEach, before, describe, it } from "node:test";
import { ChatClient } from "./support/chat-client.js";
import { type ServiceHandle, startService } from "./support/service.js";

const KEY = "test-api-key";

describe("backend push API", () => {
  let service: ServiceHandle;
  const clients: ChatClient[] = [];
  const post = (body: unknown, key = KEY) =>
    fetch(`${service.url}/api/v1/push`, {
      method: "POST",
      headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
      body: typeof body === "string" ? body : JSON.stringify(body),
    });
  const connect = async (username: string, room = "ops") => {
    const c = await ChatClient.connect(
      service.url,
      { username, room },
      { transports: ["websocket"] },
    );
    clients.push(c);
    return c;
  };

  before(async () => {
    service = await startService(["--api-key", KEY]);
  });
  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
  });
  after(() => service.stop());

  it("pushes a message to every connection of the room, on every worker, and nowhere else", async () => {
    const a = await connect("alice");
    const b = await connect("bob");
    const other = await connect("carol", "elsewhere");
    assert.notEqual(a.worker, b.worker, "clients should be on different workers");
    const res = await post({
      room: "ops",
      message: "deploy done",
      from: { userId: "ci", username: "CI" },
    });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { ok: boolean; id: string; action: number };
    assert.equal(body.ok, true);
    assert.equal(body.action, 300);
    for (const c of [a, b]) {
      const got = await c.waitFor((e) => e.action === 300 && e.id === body.id, "pushed 300");
      assert.equal(got.data.content.message, "deploy done");
      assert.deepEqual(got.data.content.userInfo, {
        fd: "",
        userId: "ci",
        username: "CI",
        room: "ops",
      });
    }
    // A marker for carol's room proves nothing of room "ops" came before it.
    await post({ room: "elsewhere", message: "marker" });
    await other.waitFor((e) => e.data.content.message === "marker", "marker");
    assert.equal(other.all((e) => e.data.content.message === "deploy done").length, 0);
  });

  it("sends notices as 101 and private pushes to one user only", async () => {
    const a = await connect("alice");
    const b = await connect("bob");
    const notice = await post({ room: "ops", message: "maintenance at 5", notice: true });
    assert.equal(((await notice.json()) as { action: number }).action, 101);
    await a.waitFor(
      (e) => e.action === 101 && e.data.content.message === "maintenance at 5",
      "101 at alice",
    );
    await b.waitFor((e) => e.action === 101, "101 at bob");
    const priv = await post({ room: "ops", message: "just for bob", to: "bob" });
    assert.equal(priv.status, 200);
    const got = await b.waitFor((e) => e.data.content.message === "just for bob", "private push");
    assert.equal(got.private, true);
    await post({ room: "ops", message: "marker 2" });
    await a.waitFor((e) => e.data.content.message === "marker 2", "marker at alice");
    assert.equal(a.all((e) => e.data.content.message === "just for bob").length, 0);
  });

  it("lists a room's online users, one entry per user", async () => {
    await connect("alice");
    await connect("alice");
    await connect("bob");
    const res = await fetch(`${service.url}/api/v1/rooms/ops/users`, {
      headers: { Authorization: `Bearer ${KEY}` },
    });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { users: { userId: string }[] };
    assert.deepEqual(body.users.map((u) => u.userId).sort(), ["alice", "bob"]);
  });

  it("refuses bad requests with coded errors", async () => {
    const cases: [Response, number, string][] = [
      [await post({ room: "ops", message: "x" }, "wrong"), 401, "E_API_UNAUTHORIZED"],
      [await post("not json"), 400, "E_BAD_PAYLOAD"],
      [await post({ room: "ops", message: "" }), 400, "E_EMPTY_MESSAGE"],
      [await post({ room: "ops", message: "x", type: "img" }), 400, "E_BAD_IMAGE"],
      [await post({ room: "ops", message: "x", type: "state" }), 400, "E_BAD_TYPE"],
      [await post({ room: "bad room!", message: "x" }), 400, "E_BAD_ROOM"],
      [await post({ room: "ops", message: "x", to: "nobody" }), 404, "E_NO_RECIPIENT"],
      [
        await fetch(`${service.url}/api/v1/nope`, { headers: { Authorization: `Bearer ${KEY}` } }),
        404,
        "E_NOT_FOUND",
      ],
    ];
    for (const [res, status, code] of cases) {
      assert.equal(res.status, status, code);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, code);
    }
  });

  it("answers a body over the limit with 413 E_PAYLOAD_TOO_LARGE, not a connection reset", async () => {
    // Default --max-image-bytes: the limit is 1,000,000 + 16 KB; node:http shows what the peer
    // did (a reset before any answer would reject with ECONNRESET instead of a response).
    const body = Buffer.alloc(3_000_000, "a");
    let answered = false;
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(
        `${service.url}/api/v1/push`,
        { method: "POST", headers: { Authorization: `Bearer ${KEY}` } },
        (r) => {
          answered = true;
          let text = "";
          r.setEncoding("utf8");
          r.on("data", (d: string) => {
            text += d;
          });
          r.on("end", () => resolve({ status: r.statusCode ?? 0, body: text }));
          r.on("error", reject);
        },
      );
      // Writes still in flight when the server closes after its answer may fail: not the point.
      req.on("error", (err) => {
        if (!answered) reject(err);
      });
      req.end(body);
    });
    assert.equal(res.status, 413);
    const parsed = JSON.parse(res.body) as { ok: boolean; error: { code: string } };
    assert.equal(parsed.ok, false);
    assert.equal(parsed.error.code, "E_PAYLOAD_TOO_LARGE");
    // The worker is fine: the next push goes through.
    assert.equal((await post({ room: "ops", message: "after 413" })).status, 200);
  });

  it("answers bad %-encoding in a path with 400 E_BAD_ROOM", async () => {
    const res = await fetch(`${service.url}/api/v1/rooms/%E0%A4%A/users`, {
      headers: { Authorization: `Bearer ${KEY}` },
    });
    assert.equal(res.status, 400);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, "E_BAD_ROOM");
  });
});

describe("backend push API, disabled", () => {
  let service: ServiceHandle;
  before(async () => {
    service = await startService();
  });
  after(() => service.stop());

  it("answers 404 E_API_DISABLED without --api-key", async () => {
    const res = await fetch(`${service.url}/api/v1/push`, { method: "POST", body: "{}" });
    assert.equal(res.status, 404);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, "E_API_DISABLED");
  });
});
