/**
 * Room history against the real cluster: seq on every room message, replay on connect (since,
 * or the last --history-on-join), recovered:false when history no longer reaches back, client
 * message ids, private messages by pseq, the backends' history API, history across a restart.
 */
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import path from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import type { Envelope } from "../src/chat/protocol.js";
import { type ChatClient, ClientPool } from "./support/chat-client.js";
import { freePort } from "./support/nginx.js";
import {
  runCli,
  runCliAsync,
  SCRIPTED_RATES,
  type ServiceHandle,
  startService,
  TEST_LIMITS_ENV,
  tempDir,
} from "./support/service.js";

const text = (message: string, extra: Record<string, unknown> = {}) => ({
  type: "text",
  content: { message },
  ...extra,
});
const chat = (e: Envelope) => e.action === 300 || e.action === 101;
const said = (c: ChatClient, from = 0) =>
  c.all(chat, from).map((e) => [e.data.content.message, e.seq, e.replay === true]);

describe("room history", () => {
  let service: ServiceHandle;
  const pool = new ClientPool();
  before(async () => {
    service = await startService([
      "--history-size",
      "5",
      "--history-on-join",
      "3",
      "--api-key",
      "k",
      ...SCRIPTED_RATES,
    ]);
  });
  afterEach(() => pool.closeAll());
  after(() => service.stop());

  /** Sends texts one by one with acks; resolves with the acks' seqs. */
  async function sendAll(c: ChatClient, texts: string[]): Promise<(number | undefined)[]> {
    const seqs = [];
    for (const t of texts) seqs.push((await c.request("message", text(t))).seq);
    return seqs;
  }

  it("numbers a room's messages from 1, the same for every worker's clients", async () => {
    const a = await pool.connect(service.url, { username: "a", room: "numbers" });
    const b = await pool.connect(service.url, { username: "b", room: "numbers" });
    assert.notEqual(a.worker, b.worker, "round-robin puts them on both workers");
    assert.deepEqual(await sendAll(a, ["one", "two"]), [1, 2]);
    assert.deepEqual(await sendAll(b, ["three"]), [3]);
    await a.waitFor((e) => e.seq === 3, "seq 3 at a");
    await b.waitFor((e) => e.seq === 3, "seq 3 at b");
    for (const c of [a, b]) {
      assert.deepEqual(said(c), [
        ["one", 1, false],
        ["two", 2, false],
        ["three", 3, false],
      ]);
    }
    // Another room counts on its own; state messages (102) are not numbered.
    const c = await pool.connect(service.url, { username: "c", room: "other-numbers" });
    assert.deepEqual(await sendAll(c, ["x"]), [1]);
    const typing = await c.request("message", { type: "state", content: { message: "typing" } });
    assert.equal(typing.seq, undefined);
  });

  it("replays what a reconnecting client missed after its since, in order, before live ones", async () => {
    const sender = await pool.connect(service.url, { username: "sender", room: "replay" });
    const first = await pool.connect(service.url, { username: "reader", room: "replay" });
    await sendAll(sender, ["r1", "r2"]);
    await first.waitFor((e) => e.seq === 2, "seq 2");
    first.close();
    await sendAll(sender, ["r3", "r4"]);
    const back = await pool.connect(service.url, { username: "reader", room: "replay", since: 2 });
    await back.waitFor((e) => e.seq === 4, "the replay up to seq 4");
    await sendAll(sender, ["r5"]);
    await back.waitFor((e) => e.seq === 5, "live seq 5");
    assert.deepEqual(said(back), [
      ["r3", 3, true],
      ["r4", 4, true],
      ["r5", 5, false],
    ]);
    assert.equal(
      back.all((e) => e.action === 100 && e.data.content.recovered === false).length,
      0,
      "nothing was lost: no recovered:false notice",
    );
  });

  it("gives a new connection the room's last --history-on-join messages", async () => {
    const sender = await pool.connect(service.url, { username: "s", room: "on-join" });
    await sendAll(sender, ["j1", "j2", "j3", "j4"]);
    const newcomer = await pool.connect(service.url, { username: "new", room: "on-join" });
    await newcomer.waitFor((e) => e.seq === 4, "the last message");
    assert.deepEqual(said(newcomer), [
      ["j2", 2, true],
      ["j3", 3, true],
      ["j4", 4, true],
    ]);
  });

  it("says recovered:false when history no longer reaches back to since", async () => {
    const sender = await pool.connect(service.url, { username: "s", room: "lost" });
    await sendAll(sender, ["l1", "l2", "l3", "l4", "l5", "l6", "l7", "l8"]);
    const late = await pool.connect(service.url, { username: "late", room: "lost", since: 1 });
    await late.waitFor((e) => e.seq === 8, "the replay");
    const notice = late.received.find(
      (e) => e.action === 100 && e.data.content.recovered === false,
    );
    assert.ok(notice, "told that messages were dropped");
    assert.equal(notice.data.content.from, 4, "the 5 kept messages start at seq 4");
    assert.equal(notice.data.content.stream, "room");
    assert.deepEqual(
      said(late).map(([, seq]) => seq),
      [4, 5, 6, 7, 8],
    );
    // A since beyond the room's last number (its history restarted): everything held, flagged.
    const ahead = await pool.connect(service.url, { username: "ahead", room: "lost", since: 99 });
    await ahead.waitFor((e) => e.seq === 8, "the replay");
    assert.ok(ahead.received.some((e) => e.data.content.recovered === false));
  });

  it("answers a resent cid with the first envelope and delivers it once", async () => {
    const sender = await pool.connect(service.url, { username: "s", room: "cid" });
    const other = await pool.connect(service.url, { username: "o", room: "cid" });
    const first = await sender.request("message", text("once", { cid: "abc-1" }));
    const again = await sender.request("message", text("once", { cid: "abc-1" }));
    assert.equal(first.action, 300);
    assert.deepEqual(again, first);
    assert.equal(first.cid, "abc-1");
    await sendAll(sender, ["marker"]);
    await other.waitFor((e) => e.data.content.message === "marker", "marker");
    assert.equal(other.all((e) => e.data.content.message === "once").length, 1);
    const bad = await sender.request("message", text("x", { cid: "" }));
    assert.equal(bad.data.content.error?.code, "E_BAD_PAYLOAD");
  });

  it("numbers private messages per user (pseq) and replays them with sincePrivate", async () => {
    const alice = await pool.connect(service.url, { username: "alice", room: "dm" });
    const bob = await pool.connect(service.url, { username: "bob", room: "dm" });
    // Private messages go to users online in the room: bob keeps a second tab while one is away.
    await pool.connect(service.url, { username: "bob", room: "dm" });
    const carol = await pool.connect(service.url, { username: "carol", room: "dm" });
    const toBob = await alice.request("message", text("hi bob", { to: { userId: "bob" } }));
    assert.equal(toBob.private, true);
    assert.equal(toBob.pseq, 1, "alice's first private message");
    assert.equal(toBob.seq, undefined, "private messages do not take a room seq");
    await bob.waitFor((e) => e.pseq === 1, "bob's copy");
    bob.close();
    await alice.request("message", text("still there?", { to: { userId: "bob" } }));
    await carol.request("message", text("psst bob", { to: { userId: "bob" } }));
    const back = await pool.connect(service.url, { username: "bob", room: "dm", sincePrivate: 1 });
    await back.waitFor((e) => e.pseq === 3, "bob's replay");
    assert.deepEqual(
      back.all((e) => e.private === true).map((e) => [e.data.content.message, e.pseq, e.replay]),
      [
        ["still there?", 2, true],
        ["psst bob", 3, true],
      ],
    );
    assert.equal(carol.all((e) => e.data.content.message === "hi bob").length, 0);
  });

  it("serves a room's history to backends: GET /api/v1/rooms/:room/messages", async () => {
    const s = await pool.connect(service.url, { username: "s", room: "api" });
    await sendAll(s, ["a1", "a2", "a3"]);
    const get = async (query: string) => {
      const res = await fetch(`${service.url}/api/v1/rooms/api/messages${query}`, {
        headers: { authorization: "Bearer k" },
      });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    const all = await get("");
    assert.equal(all.status, 200);
    assert.deepEqual(
      (all.body.messages as Envelope[]).map((e) => e.seq),
      [1, 2, 3],
    );
    assert.equal(all.body.last, 3);
    const after = await get("?since=1&limit=1");
    assert.deepEqual(
      (after.body.messages as Envelope[]).map((e) => e.data.content.message),
      ["a2"],
    );
    assert.equal((await get("?since=-1")).status, 400);
    const pushed = await fetch(`${service.url}/api/v1/push`, {
      method: "POST",
      headers: { authorization: "Bearer k", "content-type": "application/json" },
      body: JSON.stringify({ room: "api", message: "from the backend" }),
    });
    assert.equal(((await pushed.json()) as { seq: number }).seq, 4);
  });
});

describe("history across a restart (cluster mode)", { timeout: 120_000 }, () => {
  const pool = new ClientPool();
  const dir = tempDir();
  const pidFile = path.join(dir, "w.pid");
  let url = "";
  before(async () => {
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    const r = runCli(
      ["start", "-d", "--port", String(port), "--host", "127.0.0.1", "--workers", "2"].concat(
        ["--pid-file", pidFile],
        SCRIPTED_RATES,
      ),
      TEST_LIMITS_ENV,
    );
    assert.equal(r.code, 0, r.stderr);
  });
  afterEach(() => pool.closeAll());
  after(() => {
    runCli(["stop", "--pid-file", pidFile]);
    rmSync(dir, { recursive: true, force: true });
  });

  it("keeps the numbers and the messages: a client reconnecting with since gets what it missed", async () => {
    const s = await pool.connect(url, { username: "s", room: "restart" });
    for (const t of ["before 1", "before 2"]) await s.request("message", text(t));
    s.close();
    const r = await runCliAsync(["restart", "--pid-file", pidFile], TEST_LIMITS_ENV);
    assert.equal(r.code, 0, r.stderr);
    const back = await pool.connect(url, { username: "s", room: "restart", since: 1 });
    await back.waitFor((e) => e.seq === 2, "the replay of seq 2");
    assert.deepEqual(said(back), [["before 2", 2, true]]);
    assert.equal((await back.request("message", text("after"))).seq, 3);
  });
});
