/**
 * Rate limits, against the real cluster: each limit reached gives E_RATE_LIMITED with retryAfterMs
 * and the refused message reaches nobody; per-user limits hold across workers; a client that keeps
 * going is disconnected with a coded reason.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import type { Envelope } from "../src/chat/protocol.js";
import { type ChatClient, ClientPool } from "./support/chat-client.js";
import { type ServiceHandle, startService } from "./support/service.js";

const pool = new ClientPool();
afterEach(() => pool.closeAll());

const text = (message: string) => ({ type: "text", content: { message } });
const errorCode = (e: Envelope) => e.data.content.error?.code;

/** Sends `n` messages one after the other, each with an ack; resolves with the replies. */
async function sendAll(client: ChatClient, payloads: unknown[]): Promise<Envelope[]> {
  const replies: Envelope[] = [];
  for (const p of payloads) replies.push(await client.request("message", p));
  return replies;
}

/** Connects clients of one user until two of them are on different workers. */
async function onTwoWorkers(url: string, auth: Record<string, unknown>): Promise<ChatClient[]> {
  const first = await pool.connect(url, auth, { transports: ["websocket"] });
  for (let i = 0; i < 6; i++) {
    const next = await pool.connect(url, auth, { transports: ["websocket"] });
    if (next.worker !== first.worker) return [first, next];
    next.close();
  }
  throw new Error("round-robin never used the second worker");
}

describe("rate limits", () => {
  let service: ServiceHandle;
  // 30 s windows: none rolls over during a test, so every count is exact.
  before(async () => {
    service = await startService([
      "--message-rate",
      "5/30s",
      "--user-message-rate",
      "8/30s",
      "--max-image-bytes",
      "1000",
      "--message-bytes-rate",
      "2500/30s",
      "--user-message-bytes-rate",
      "100000/30s",
      "--state-rate",
      "3/30s",
      "--query-rate",
      "4/30s",
      "--max-refusals",
      "0",
    ]);
  });
  after(() => service.stop());

  it("refuses chat messages over the connection's limit, with retryAfterMs, and delivers none of them", async () => {
    const sender = await pool.connect(service.url, { username: "sender", room: "r1" });
    const receiver = await pool.connect(service.url, { username: "receiver", room: "r1" });
    const replies = await sendAll(
      sender,
      Array.from({ length: 8 }, (_, i) => text(`m${i}`)),
    );
    assert.deepEqual(
      replies.map((r) => r.action),
      [300, 300, 300, 300, 300, 100, 100, 100],
    );
    for (const refused of replies.slice(5)) {
      assert.equal(errorCode(refused), "E_RATE_LIMITED");
      const retry = refused.data.content.error?.retryAfterMs ?? -1;
      assert.ok(retry > 0 && retry <= 30_000, `retryAfterMs ${retry}`);
      assert.match(
        refused.data.content.message ?? "",
        /too many chat messages \(limit: 5 per 30 s per connection\)/,
      );
    }
    // A marker sent after the refused ones: once it is in, everything before it would be too.
    await receiver.say("marker");
    const got = receiver.all(
      (e) => e.action === 300 && e.data.content.userInfo?.userId === "sender",
    );
    assert.deepEqual(
      got.map((e) => e.data.content.message),
      ["m0", "m1", "m2", "m3", "m4"],
    );
  });

  it("holds a user's limit across connections on different workers", async () => {
    const [a, b] = await onTwoWorkers(service.url, { username: "multi", room: "r2" });
    const fromA = await sendAll(
      a,
      Array.from({ length: 5 }, (_, i) => text(`a${i}`)),
    );
    const fromB = await sendAll(
      b,
      Array.from({ length: 5 }, (_, i) => text(`b${i}`)),
    );
    const accepted = [...fromA, ...fromB].filter((r) => r.action === 300).length;
    assert.equal(accepted, 8, "the user's 8 messages per 30 s, whatever the connection");
    assert.deepEqual(
      fromB.map((r) => errorCode(r) ?? r.action),
      [300, 300, 300, "E_RATE_LIMITED", "E_RATE_LIMITED"],
    );
  });

  it("weighs images by their size", async () => {
    const client = await pool.connect(service.url, { username: "painter", room: "r3" });
    const image = { type: "img", content: { message: `data:image/png;base64,${"A".repeat(876)}` } };
    const replies = await sendAll(client, [image, image, image]);
    assert.deepEqual(
      replies.map((r) => errorCode(r) ?? r.action),
      [300, 300, "E_RATE_LIMITED"],
      "2,500 bytes per 30 s: two 900-byte images",
    );
    // Refused bytes count too (the window's end does not move): a text now waits as well,
    // while state messages, which carry no content worth weighing, still go.
    const textReply = await client.request("message", text("still here"));
    assert.equal(errorCode(textReply), "E_RATE_LIMITED");
    const state = { type: "state", content: { message: "typing" } };
    assert.equal((await client.request("message", state)).action, 102);
  });

  it("limits state messages and queries on their own", async () => {
    const client = await pool.connect(service.url, { username: "typist", room: "r4" });
    const state = { type: "state", content: { message: "typing" } };
    const states = await sendAll(client, [state, state, state, state]);
    assert.deepEqual(
      states.map((r) => errorCode(r) ?? r.action),
      [102, 102, 102, "E_RATE_LIMITED"],
    );
    // Chat messages have their own budget.
    assert.equal((await client.request("message", text("hi"))).action, 300);
    const queries: (string | number | undefined)[] = [];
    for (const event of ["info", "onlineList", "info", "onlineList", "info"] as const) {
      const r = await client.request(event);
      queries.push(errorCode(r) ?? r.action);
    }
    assert.deepEqual(queries, [200, 201, 200, 201, "E_RATE_LIMITED"]);
  });

  it("counts unknown events against the query limit", async () => {
    const client = await pool.connect(service.url, { username: "prober", room: "r5" });
    const codes: (string | undefined)[] = [];
    for (let i = 0; i < 6; i++) {
      const reply = (await client.socket
        .timeout(5000)
        .emitWithAck(`nope${i}`, { x: i })) as Envelope;
      codes.push(errorCode(reply));
    }
    assert.deepEqual(codes, [
      "E_UNKNOWN_EVENT",
      "E_UNKNOWN_EVENT",
      "E_UNKNOWN_EVENT",
      "E_UNKNOWN_EVENT",
      "E_RATE_LIMITED",
      "E_RATE_LIMITED",
    ]);
  });
});

describe("a client that keeps going past its limit", () => {
  let service: ServiceHandle;
  before(async () => {
    service = await startService(["--message-rate", "2/30s", "--max-refusals", "5"]);
  });
  after(() => service.stop());

  it("is told why and disconnected; the room's others stay", async () => {
    const flooder = await pool.connect(service.url, { username: "flooder", room: "r" });
    const bystander = await pool.connect(service.url, { username: "bystander", room: "r" });
    for (let i = 0; i < 20; i++) flooder.send(text(`f${i}`));
    const reason = await flooder.waitDisconnect("disconnected for abuse");
    assert.equal(reason, "io server disconnect", "socket.io-client does not reconnect by itself");
    const refusals = flooder.all((e) => errorCode(e) === "E_RATE_LIMITED");
    const last = refusals[refusals.length - 1];
    assert.match(last.data.content.message ?? "", /^disconnected: more than 5 refused/);
    const notices = refusals.filter((e) => /^disconnected/.test(e.data.content.message ?? ""));
    assert.equal(notices.length, 1, "told once");
    // Frames already read when the limit was passed are refused too; none was delivered.
    assert.ok(refusals.length - 1 >= 6, `${refusals.length - 1} refusals before the disconnect`);
    // The bystander saw the flooder's two accepted messages, then its 203, and still chats.
    await bystander.waitFor(
      (e) => e.action === 203 && e.data.content.userInfo?.userId === "flooder",
      "203 for the flooder",
    );
    const seen = bystander.all(
      (e) => e.action === 300 && e.data.content.userInfo?.userId === "flooder",
    );
    assert.deepEqual(
      seen.map((e) => e.data.content.message),
      ["f0", "f1"],
    );
    await bystander.say("still chatting");
    assert.ok(
      service.logs.some((l) => l.includes("disconnected a flooding client")),
      "the operator sees it in the log",
    );
    const status = JSON.parse(service.cli(["status", "--json"]).stdout) as {
      sessionRefusals: Record<string, number>;
    };
    assert.equal(status.sessionRefusals.disconnects, 1, "and counted in status --json");
    assert.equal(status.sessionRefusals.E_RATE_LIMITED, refusals.length - 1);
  });
});
