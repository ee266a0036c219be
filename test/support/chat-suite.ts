/**
 * The chat protocol as a user observes it, as one suite that runs against any deployment:
 * `setup` starts (or points at) the service and says where clients connect. Client i connects to
 * `urls[i % urls.length]` with `clientOptions(i)`, so a multi-node setup spreads them over nodes.
 *
 * To assert that something does NOT arrive, a test sends a marker afterwards through the same
 * path (same connection or at least the same worker) and checks that the unwanted envelope did not
 * come before the marker.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import type { Envelope, UserInfo } from "../../src/chat/protocol.js";
import { type ChatClient, type ClientOptions, ClientPool, isProtocolTime } from "./chat-client.js";
import { waitUntil } from "./service.js";

export interface ChatTarget {
  /** Where clients connect; client i uses `urls[i % urls.length]`. */
  urls: string[];
  /** socket.io-client options of client i (e.g. its transports). */
  clientOptions?(i: number): ClientOptions;
  /**
   * Names the process holding a client, to check that clients were spread. Default:
   * `<url index>/<worker id>`. A setup where that cannot tell processes apart (one URL in front
   * of several nodes) returns undefined to skip those checks.
   */
  placement?(client: ChatClient, i: number): string | undefined;
  /** The transport every client should end up on, checked once (optional). */
  transport?: string;
  /** Stops what setup started. */
  stop(): Promise<void>;
}

/** Longest wait for something a user should see. */
const WAIT_MS = 8000;
const PNG =
  "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";

const pad = (n: number) => String(n).padStart(2, "0");
/** `YYYY-MM-DD HH:mm:ss` of epoch ms in local time (the service runs in the same TZ). */
export function localTime(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

const isText = (text: string) => (e: Envelope) =>
  e.action === 300 && e.data.content.message === text;
const about = (action: number, userId: string) => (e: Envelope) =>
  e.action === action && e.data.content.userInfo?.userId === userId;

/** Fails if `client` got an envelope matching `unwanted` after `from` and before `marker`. */
async function noneBefore(
  client: ChatClient,
  from: number,
  unwanted: (e: Envelope) => boolean,
  marker: string,
  what: string,
): Promise<void> {
  const m = await client.waitFor(isText(marker), `marker "${marker}"`, WAIT_MS, from);
  const upTo = client.received.indexOf(m);
  const seen = client.received.slice(from, upTo).filter(unwanted);
  assert.deepEqual(seen, [], what);
}

export function chatSuite(name: string, setup: () => Promise<ChatTarget>): void {
  describe(name, { timeout: 120_000 }, () => {
    let target: ChatTarget;
    const pool = new ClientPool();
    const where = new Map<ChatClient, string | undefined>();
    let clientSeq = 0;
    let roomSeq = 0;
    const slug = name.replace(/[^\w]+/g, "-").slice(0, 30);

    before(async () => {
      target = await setup();
    });
    afterEach(() => pool.closeAll());
    after(async () => {
      pool.closeAll();
      await target?.stop();
    });

    const newRoom = () => `${slug}-${++roomSeq}`;

    /** Connects client number i (the next one), as `username` in `room`. */
    async function join(
      username: string,
      room: string,
      extra: Record<string, unknown> = {},
    ): Promise<ChatClient> {
      const i = clientSeq++;
      const urlIndex = i % target.urls.length;
      const client = await pool.connect(
        target.urls[urlIndex],
        { username, room, ...extra },
        target.clientOptions?.(i) ?? {},
      );
      where.set(
        client,
        target.placement ? target.placement(client, i) : `${urlIndex}/${client.worker}`,
      );
      return client;
    }

    /** Asserts that two clients are held by different processes (when the setup can tell). */
    function apart(a: ChatClient, b: ChatClient, what: string): void {
      const pa = where.get(a);
      const pb = where.get(b);
      if (pa === undefined || pb === undefined) return;
      assert.notEqual(pa, pb, `${what}: expected different workers, both on ${pa}`);
    }

    function infoOf(client: ChatClient): UserInfo {
      const e = client.received.find((x) => x.action === 200);
      assert.ok(e?.data.content.userInfo, "the client got its 200");
      return e.data.content.userInfo;
    }

    async function listOf(client: ChatClient): Promise<UserInfo[]> {
      const reply = await client.request("onlineList");
      assert.equal(reply.action, 201);
      return reply.data.content.userList ?? [];
    }

    it("on connect: 200 with the connection's own details, then 201 with the room's users", async () => {
      const room = newRoom();
      const alice = await join("alice", room, { userId: "u-alice" });
      if (target.transport) assert.equal(alice.transport, target.transport);
      const [first, second] = alice.received;
      assert.equal(first.action, 200);
      assert.equal(first.data.type, "state");
      assert.deepEqual(first.data.content.userInfo, {
        fd: alice.fd,
        userId: "u-alice",
        username: "alice",
        room,
      });
      assert.ok(isProtocolTime(first.endTime), `endTime ${first.endTime}`);
      assert.equal(first.sendTime, first.endTime);
      assert.equal(second.action, 201);
      assert.equal(second.data.type, "state");
      assert.deepEqual(second.data.content.userList, [first.data.content.userInfo]);
      assert.ok(isProtocolTime(second.endTime) && second.sendTime === second.endTime);

      // Without a userId the username is the userId. The newcomer's list: oldest first.
      const bob = await join("bob", room);
      apart(alice, bob, "alice and bob");
      assert.deepEqual(bob.received.map((e) => e.action).slice(0, 2), [200, 201]);
      assert.deepEqual(infoOf(bob), { fd: bob.fd, userId: "bob", username: "bob", room });
      const list = bob.received[1].data.content.userList;
      assert.deepEqual(list, [infoOf(alice), infoOf(bob)]);
    });

    it("202 reaches the room's others once per user, not once per tab", async () => {
      const room = newRoom();
      const alice = await join("alice", room);
      const fromA = alice.mark();
      const bob1 = await join("bob", room);
      apart(alice, bob1, "alice and bob's first tab");
      const online = await alice.waitFor(about(202, "bob"), "202 for bob at alice", WAIT_MS, fromA);
      assert.equal(online.data.type, "state");
      assert.deepEqual(online.data.content.userInfo, infoOf(bob1));
      assert.ok(isProtocolTime(online.endTime));

      const fromB1 = bob1.mark();
      const bob2 = await join("bob", room);
      apart(bob1, bob2, "bob's two tabs");
      // bob2's own connection is the path its 202 would take: its marker comes after.
      bob2.send({ type: "text", content: { message: "bob2 is here" } });
      const afterFirst = alice.received.indexOf(online) + 1;
      await noneBefore(alice, afterFirst, about(202, "bob"), "bob2 is here", "one 202 for bob");
      assert.equal(alice.all(about(202, "bob"), fromA).length, 1);
      await noneBefore(bob1, fromB1, (e) => e.action === 202, "bob2 is here", "no 202 to bob");
      await noneBefore(bob2, 0, (e) => e.action === 202, "bob2 is here", "no 202 to bob2");

      // A third user is announced to both of bob's tabs and to alice.
      const marks = [alice.mark(), bob1.mark(), bob2.mark()];
      const carol = await join("carol", room);
      for (const [i, c] of [alice, bob1, bob2].entries()) {
        const e = await c.waitFor(about(202, "carol"), "202 for carol", WAIT_MS, marks[i]);
        assert.deepEqual(e.data.content.userInfo, infoOf(carol));
      }
    });

    it("203 only when the user's last connection in the room is gone, seen on every worker", async () => {
      const room = newRoom();
      const alice = await join("alice", room);
      const bob1 = await join("bob", room);
      const bob2 = await join("bob", room);
      const carol = await join("carol", room);
      apart(bob1, bob2, "bob's tabs");
      apart(alice, carol, "the two observers");
      const fromA = alice.mark();
      const fromC = carol.mark();

      bob1.close();
      // The store has settled bob1's leave once bob's entry names his other tab.
      await waitUntil(async () => {
        const bob = (await listOf(alice)).find((u) => u.userId === "bob");
        return bob?.fd === bob2.fd;
      }, "bob's list entry to move to his second tab");
      carol.send({ type: "text", content: { message: "after bob1" } });
      await noneBefore(alice, fromA, about(203, "bob"), "after bob1", "no 203 at alice");
      await noneBefore(carol, fromC, about(203, "bob"), "after bob1", "no 203 at carol");

      bob2.close();
      for (const [c, from] of [
        [alice, fromA],
        [carol, fromC],
      ] as const) {
        const off = await c.waitFor(about(203, "bob"), "203 for bob", WAIT_MS, from);
        assert.equal(off.data.type, "state");
        assert.equal(off.data.content.userInfo?.username, "bob");
        assert.equal(off.data.content.userInfo?.room, room);
        assert.ok(isProtocolTime(off.endTime));
      }
      assert.deepEqual(
        (await listOf(alice)).map((u) => u.userId),
        ["alice", "carol"],
      );
      // Once: the marker after the 203 shows no second one.
      alice.send({ type: "text", content: { message: "after bob2" } });
      await carol.waitFor(isText("after bob2"), "marker", WAIT_MS, fromC);
      assert.equal(alice.all(about(203, "bob"), fromA).length, 1);
      assert.equal(carol.all(about(203, "bob"), fromC).length, 1);
    });

    it("a text message reaches every connection of the room as 300, the sender's included", async () => {
      const room = newRoom();
      const alice1 = await join("alice", room);
      const alice2 = await join("alice", room);
      const bob = await join("bob", room);
      apart(alice1, alice2, "alice's tabs");
      const before = Date.now();
      const marks = [alice1, alice2, bob].map((c) => c.mark());
      alice1.send({ type: "text", content: { message: "hello room" } });
      const got = await Promise.all(
        [alice1, alice2, bob].map((c, i) =>
          c.waitFor(isText("hello room"), "the 300", WAIT_MS, marks[i]),
        ),
      );
      const afterSend = Date.now();
      for (const e of got) {
        assert.equal(e.action, 300);
        assert.equal(e.data.type, "text");
        assert.deepEqual(e.data.content.userInfo, infoOf(alice1));
        assert.equal(e.data.content.to, undefined);
        assert.equal(e.private, undefined);
        assert.equal(typeof e.id, "string");
        assert.ok((e.id ?? "").length > 0);
        assert.equal(typeof e.ts, "number");
        assert.ok(e.ts! >= before - 1000 && e.ts! <= afterSend + 1000, `ts ${e.ts}`);
        assert.ok(isProtocolTime(e.endTime), `endTime ${e.endTime}`);
        assert.equal(e.sendTime, e.endTime);
        assert.equal(e.endTime, localTime(e.ts!));
        assert.equal(e.id, got[0].id, "one message, one id");
      }
      // Exactly once each.
      alice2.send({ type: "text", content: { message: "marker" } });
      for (const [i, c] of [alice1, alice2, bob].entries()) {
        await c.waitFor(isText("marker"), "marker", WAIT_MS, marks[i]);
        assert.equal(c.all(isText("hello room"), marks[i]).length, 1);
      }
    });

    it("message ids are unique and increase for one sender, in send order", async () => {
      const room = newRoom();
      const alice = await join("alice", room);
      const bob = await join("bob", room);
      const from = bob.mark();
      const texts = Array.from({ length: 25 }, (_, i) => `burst ${i}`);
      for (const t of texts) alice.send({ type: "text", content: { message: t } });
      await bob.waitFor(isText(texts[texts.length - 1]), "the last of the burst", WAIT_MS, from);
      const got = bob.all((e) => e.action === 300, from);
      assert.deepEqual(
        got.map((e) => e.data.content.message),
        texts,
      );
      const ids = got.map((e) => e.id ?? "");
      assert.equal(new Set(ids).size, ids.length, "ids are unique");
      for (let i = 1; i < ids.length; i++) {
        assert.ok(ids[i - 1] < ids[i], `id ${ids[i - 1]} < ${ids[i]}`);
        assert.ok(got[i - 1].ts! <= got[i].ts!);
      }
      // Alice sees the same ids.
      await alice.waitFor(isText(texts[texts.length - 1]), "own burst");
      assert.deepEqual(
        alice.all((e) => e.action === 300).map((e) => e.id),
        ids,
      );
    });

    it("img messages (data URL, https URL) are broadcast as 300 of type img", async () => {
      const room = newRoom();
      const alice = await join("alice", room);
      const bob = await join("bob", room);
      for (const url of [PNG, "https://example.com/cat.png?size=2"]) {
        const marks = [alice.mark(), bob.mark()];
        alice.send({ type: "img", content: { message: url } });
        for (const [i, c] of [alice, bob].entries()) {
          const e = await c.waitFor(
            (x) => x.action === 300 && x.data.content.message === url,
            `img at ${i}`,
            WAIT_MS,
            marks[i],
          );
          assert.equal(e.data.type, "img");
          assert.deepEqual(e.data.content.userInfo, infoOf(alice));
          assert.ok(e.id && typeof e.ts === "number" && isProtocolTime(e.endTime));
        }
      }
    });

    it("`to` a userId makes a message private: the target's and the sender's connections only", async () => {
      const room = newRoom();
      const alice1 = await join("alice", room);
      const alice2 = await join("alice", room);
      const bob1 = await join("bob", room);
      const bob2 = await join("bob", room);
      const carol = await join("carol", room);
      apart(alice1, alice2, "alice's tabs");
      apart(bob1, bob2, "bob's tabs");
      const everyone = [alice1, alice2, bob1, bob2, carol];
      const marks = everyone.map((c) => c.mark());
      alice1.send({ type: "text", content: { message: "psst bob" }, to: "bob" });
      for (const [i, c] of everyone.slice(0, 4).entries()) {
        const e = await c.waitFor(isText("psst bob"), `private at ${i}`, WAIT_MS, marks[i]);
        assert.equal(e.private, true);
        assert.equal(e.data.content.to, "bob");
        assert.equal(e.data.type, "text");
        assert.deepEqual(e.data.content.userInfo, infoOf(alice1));
        assert.ok(e.id && typeof e.ts === "number" && isProtocolTime(e.endTime));
      }
      alice1.send({ type: "text", content: { message: "public again" } });
      await noneBefore(carol, marks[4], isText("psst bob"), "public again", "carol got no private");
      for (const [i, c] of everyone.entries()) {
        await c.waitFor(isText("public again"), "public marker", WAIT_MS, marks[i]);
        if (i < 4) assert.equal(c.all(isText("psst bob"), marks[i]).length, 1);
      }
    });

    it("`to` an fd makes a message private to that connection's user (all their tabs)", async () => {
      const room = newRoom();
      const alice = await join("alice", room);
      const bob1 = await join("bob", room);
      const bob2 = await join("bob", room);
      const carol = await join("carol", room);
      const marks = [alice, bob1, bob2, carol].map((c) => c.mark());
      alice.send({ type: "img", content: { message: PNG }, to: bob2.fd });
      for (const [i, c] of [alice, bob1, bob2].entries()) {
        const e = await c.waitFor(
          (x) => x.action === 300 && x.private === true,
          `private img at ${i}`,
          WAIT_MS,
          marks[i],
        );
        assert.equal(e.data.type, "img");
        assert.equal(e.data.content.to, "bob");
      }
      // With an ack, the sender is answered with the same envelope.
      const reply = await alice.request("message", {
        type: "text",
        content: { message: "to carol" },
        to: carol.fd,
      });
      assert.equal(reply.action, 300);
      assert.equal(reply.private, true);
      assert.equal(reply.data.content.to, "carol");
      const atCarol = await carol.waitFor(
        isText("to carol"),
        "private at carol",
        WAIT_MS,
        marks[3],
      );
      assert.equal(atCarol.id, reply.id);
      alice.send({ type: "text", content: { message: "end" } });
      await noneBefore(carol, marks[3], (e) => e.data.type === "img", "end", "carol got no img");
      await noneBefore(bob1, marks[1], isText("to carol"), "end", "bob1 got nothing for carol");
      await noneBefore(bob2, marks[2], isText("to carol"), "end", "bob2 got nothing for carol");
    });

    it("state is relayed as 102 to the room's others: not to the sender, not as 300", async () => {
      const room = newRoom();
      const alice1 = await join("alice", room);
      const alice2 = await join("alice", room);
      const bob = await join("bob", room);
      const carol = await join("carol", room);
      const all = [alice1, alice2, bob, carol];
      const marks = all.map((c) => c.mark());
      alice1.send({ type: "state", content: { message: "typing" } });
      for (const [i, c] of [bob, carol].entries()) {
        const e = await c.waitFor((x) => x.action === 102, "102", WAIT_MS, marks[i + 2]);
        assert.equal(e.data.type, "state");
        assert.equal(e.data.content.message, "typing");
        assert.deepEqual(e.data.content.userInfo, infoOf(alice1));
        assert.ok(isProtocolTime(e.endTime));
      }
      alice1.send({ type: "text", content: { message: "done typing" } });
      for (const [i, c] of all.entries()) {
        await noneBefore(
          c,
          marks[i],
          (e) =>
            (i < 2 && e.action === 102) ||
            (e.action === 300 && e.data.content.message === "typing"),
          "done typing",
          `client ${i}: no 102 to the sender's tabs, no 300 for a state`,
        );
        assert.ok(i < 2 || c.all((e) => e.action === 102, marks[i]).length === 1);
      }
    });

    it("info answers 200 and onlineList answers 201, one entry per user across workers; acks or pushes", async () => {
      const room = newRoom();
      const alice = await join("alice", room);
      const bob1 = await join("bob", room);
      const bob2 = await join("bob", room);
      const carol = await join("carol", room);
      apart(alice, carol, "alice and carol");
      apart(bob1, bob2, "bob's tabs");

      const info = await bob2.request("info");
      assert.equal(info.action, 200);
      assert.deepEqual(info.data.content.userInfo, {
        fd: bob2.fd,
        userId: "bob",
        username: "bob",
        room,
      });
      const expected = [infoOf(alice), infoOf(bob1), infoOf(carol)];
      for (const c of [alice, bob1, bob2, carol]) {
        assert.deepEqual(await listOf(c), expected, "oldest connection per user, oldest first");
      }

      // Without an ack the answer is pushed as a "message".
      const from = carol.mark();
      carol.socket.emit("info");
      const pushedInfo = await carol.waitFor((e) => e.action === 200, "pushed 200", WAIT_MS, from);
      assert.deepEqual(pushedInfo.data.content.userInfo, infoOf(carol));
      carol.socket.emit("onlineList");
      const pushedList = await carol.waitFor((e) => e.action === 201, "pushed 201", WAIT_MS, from);
      assert.deepEqual(pushedList.data.content.userList, expected);
    });

    it("replies: a message with an ack gets its envelope; errors go to the ack, else are pushed", async () => {
      const room = newRoom();
      const alice = await join("alice", room);
      const bob = await join("bob", room);
      const fromB = bob.mark();
      const reply = await alice.request("message", { type: "text", content: { message: "acked" } });
      assert.equal(reply.action, 300);
      assert.equal(reply.data.content.message, "acked");
      const atBob = await bob.waitFor(isText("acked"), "the acked message", WAIT_MS, fromB);
      assert.equal(atBob.id, reply.id);
      assert.equal(atBob.ts, reply.ts);

      const state = await alice.request("message", { type: "state", content: { message: "away" } });
      assert.equal(state.action, 102);

      const fromA = alice.mark();
      const err = await alice.request("message", { type: "video", content: { message: "x" } });
      assert.equal(err.action, 100);
      assert.equal(err.data.type, "state");
      assert.equal(err.data.content.error?.code, "E_BAD_TYPE");
      assert.equal(typeof err.data.content.error?.message, "string");
      alice.send({ type: "text", content: { message: "after the ack" } });
      await noneBefore(
        alice,
        fromA,
        (e) => e.action === 100,
        "after the ack",
        "error not pushed too",
      );

      alice.send({ type: "video", content: { message: "x" } });
      const pushed = await alice.waitFor((e) => e.action === 100, "pushed error", WAIT_MS, fromA);
      assert.equal(pushed.data.content.error?.code, "E_BAD_TYPE");
      bob.send({ type: "text", content: { message: "bob marker" } });
      await noneBefore(bob, fromB, (e) => e.action === 100, "bob marker", "others get no error");
    });

    it("rooms are isolated: messages, presence, state and lists stay in their room", async () => {
      const room1 = newRoom();
      const room2 = newRoom();
      const alice = await join("alice", room1);
      const bob = await join("bob", room1);
      const carol = await join("carol", room2);
      const alice2 = await join("alice", room2); // the same userId, another room
      apart(alice, bob, "room 1's users");
      apart(carol, alice2, "room 2's users");
      const inRoom = (room: string) => (e: Envelope) =>
        e.data.content.userInfo?.room === room ||
        e.data.content.userList?.some((u) => u.room === room) === true;
      const room1Clients = [alice, bob];
      const room2Clients = [carol, alice2];
      const marks1 = room1Clients.map((c) => c.mark());

      assert.deepEqual(alice2.received[1].data.content.userList, [infoOf(carol), infoOf(alice2)]);
      await carol.waitFor(about(202, "alice"), "202 for alice in room 2");
      assert.deepEqual(
        (await listOf(alice)).map((u) => u.userId),
        ["alice", "bob"],
      );
      assert.deepEqual(
        (await listOf(carol)).map((u) => `${u.userId}@${u.room}`),
        [`carol@${room2}`, `alice@${room2}`],
      );

      // Room 2 gets a newcomer, talks, types, whispers; the newcomer leaves.
      const marks2 = room2Clients.map((c) => c.mark());
      const erin = await join("erin", room2);
      carol.send({ type: "text", content: { message: "room 2 only" } });
      carol.send({ type: "state", content: { message: "typing in 2" } });
      carol.send({ type: "text", content: { message: "psst" }, to: "alice" });
      await alice2.waitFor(isText("psst"), "private in room 2", WAIT_MS, marks2[1]);
      await alice2.waitFor((e) => e.action === 102, "state in room 2", WAIT_MS, marks2[1]);
      erin.close();
      for (const [i, c] of room2Clients.entries()) {
        await c.waitFor(about(203, "erin"), "203 for erin in room 2", WAIT_MS, marks2[i]);
      }
      // A private message cannot cross rooms, by userId or by fd.
      for (const to of ["carol", carol.fd]) {
        const cross = await alice.request("message", {
          type: "text",
          content: { message: "hi carol" },
          to,
        });
        assert.equal(cross.data.content.error?.code, "E_NO_RECIPIENT");
      }

      // Markers from each room's connections (one per worker) close the windows.
      for (const [n, c] of room1Clients.entries()) {
        c.send({ type: "text", content: { message: `room 1 marker ${n}` } });
      }
      for (const [i, c] of room1Clients.entries()) {
        for (const n of [0, 1]) {
          await noneBefore(c, marks1[i], inRoom(room2), `room 1 marker ${n}`, "room 1 saw room 2");
        }
        assert.deepEqual(
          c.all((e) => e.action === 102 || e.action === 202 || e.action === 203, marks1[i]),
          [],
        );
        assert.deepEqual(c.all(isText("room 2 only"), marks1[i]), []);
        assert.deepEqual(c.all(isText("psst"), marks1[i]), []);
      }
      for (const [n, c] of room2Clients.entries()) {
        c.send({ type: "text", content: { message: `room 2 marker ${n}` } });
      }
      for (const [i, c] of room2Clients.entries()) {
        for (const n of [0, 1]) {
          await noneBefore(c, marks2[i], inRoom(room1), `room 2 marker ${n}`, "room 2 saw room 1");
        }
        assert.deepEqual(
          c.all((e) => e.data.content.message?.startsWith("room 1") === true),
          [],
        );
      }
      assert.deepEqual(
        (await listOf(bob)).map((u) => u.userId),
        ["alice", "bob"],
      );
      assert.deepEqual(
        (await listOf(alice2)).map((u) => u.userId),
        ["carol", "alice"],
      );
    });
  });
}
