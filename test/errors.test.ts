/**
 * Every error a client of an open service (no JWT secret, so nobody is admin) can hit, over WebSocket and polling:
 * refused handshakes (connect_error data), bad messages and unknown events (an error envelope:
 * action 100, type state, content.error { code, message }, the connection stays usable), and an
 * oversized frame (closes that connection only).
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import type { Envelope, ErrorCode } from "../src/chat/protocol.js";
import { ClientPool, connectError, isProtocolTime, type Transport } from "./support/chat-client.js";
import { SCRIPTED_RATES, type ServiceHandle, startService } from "./support/service.js";

const MAX_MESSAGE_LENGTH = 50;
const MAX_IMAGE_BYTES = 200;
const MAX_FRAME_BYTES = 4096;
const WAIT_MS = 8000;

const isText = (text: string) => (e: Envelope) =>
  e.action === 300 && e.data.content.message === text;

function assertError(e: Envelope, code: ErrorCode): void {
  assert.equal(e.action, 100, `an error envelope for ${code}: ${JSON.stringify(e)}`);
  assert.equal(e.data.type, "state");
  const error = e.data.content.error;
  assert.ok(error, `content.error for ${code}`);
  assert.equal(error.code, code, `code, message: ${error.message}`);
  assert.equal(typeof error.message, "string");
  assert.ok(error.message.length > 0);
  assert.ok(isProtocolTime(e.endTime));
}

/** [what, payload, expected code] for the `message` event. */
const BAD_MESSAGES: [string, unknown, ErrorCode][] = [
  ["a string payload", "hello", "E_BAD_PAYLOAD"],
  ["a null payload", null, "E_BAD_PAYLOAD"],
  ["an array payload", [{ type: "text" }], "E_BAD_PAYLOAD"],
  ["no content", { type: "text" }, "E_BAD_PAYLOAD"],
  ["content.message a number", { type: "text", content: { message: 42 } }, "E_BAD_PAYLOAD"],
  ["content a string", { type: "text", content: "hi" }, "E_BAD_PAYLOAD"],
  ["an empty `to`", { type: "text", content: { message: "hi" }, to: "" }, "E_BAD_PAYLOAD"],
  ["a numeric `to`", { type: "text", content: { message: "hi" }, to: 7 }, "E_BAD_PAYLOAD"],
  ["an unknown type", { type: "video", content: { message: "hi" } }, "E_BAD_TYPE"],
  ["no type", { content: { message: "hi" } }, "E_BAD_TYPE"],
  ["a numeric type", { type: 1, content: { message: "hi" } }, "E_BAD_TYPE"],
  ["an empty text", { type: "text", content: { message: "" } }, "E_EMPTY_MESSAGE"],
  ["a blank text", { type: "text", content: { message: "  \n\t " } }, "E_EMPTY_MESSAGE"],
  ["an empty image", { type: "img", content: { message: "" } }, "E_EMPTY_MESSAGE"],
  [
    "a text over --max-message-length",
    { type: "text", content: { message: "x".repeat(MAX_MESSAGE_LENGTH + 1) } },
    "E_MESSAGE_TOO_LONG",
  ],
  [
    "a state over 64 characters",
    { type: "state", content: { message: "s".repeat(65) } },
    "E_MESSAGE_TOO_LONG",
  ],
  [
    "a javascript: URL",
    { type: "img", content: { message: "javascript:alert(1)" } },
    "E_BAD_IMAGE",
  ],
  [
    "a data:text/html URL",
    {
      type: "img",
      content: { message: "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==" },
    },
    "E_BAD_IMAGE",
  ],
  [
    "an SVG data URL",
    { type: "img", content: { message: "data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=" } },
    "E_BAD_IMAGE",
  ],
  ["an ftp: URL", { type: "img", content: { message: "ftp://example.com/a.png" } }, "E_BAD_IMAGE"],
  ["not a URL", { type: "img", content: { message: "cat.png" } }, "E_BAD_IMAGE"],
  [
    "an image over --max-image-bytes",
    { type: "img", content: { message: `data:image/png;base64,${"A".repeat(MAX_IMAGE_BYTES)}` } },
    "E_IMAGE_TOO_LARGE",
  ],
  [
    "a notice from a non-admin",
    { type: "text", content: { message: "hear ye" }, notice: true },
    "E_FORBIDDEN",
  ],
  [
    "a notice flag not boolean",
    { type: "text", content: { message: "hi" }, notice: "yes" },
    "E_BAD_PAYLOAD",
  ],
  [
    "an img notice",
    { type: "img", content: { message: "https://x.test/a.png" }, notice: true },
    "E_BAD_PAYLOAD",
  ],
  ["`to` nobody", { type: "text", content: { message: "hi" }, to: "nobody" }, "E_NO_RECIPIENT"],
  [
    "a state `to` nobody",
    { type: "state", content: { message: "typing" }, to: "nobody" },
    "E_NO_RECIPIENT",
  ],
];

const BAD_HANDSHAKES: [string, Record<string, unknown>, ErrorCode][] = [
  ["no username", {}, "E_BAD_USERNAME"],
  ["an empty username", { username: "" }, "E_BAD_USERNAME"],
  ["a blank username", { username: "   " }, "E_BAD_USERNAME"],
  ["a username of 33 characters", { username: "u".repeat(33) }, "E_BAD_USERNAME"],
  ["a username with a control character", { username: "a\u0007b" }, "E_BAD_USERNAME"],
  ["a numeric username", { username: 12 }, "E_BAD_USERNAME"],
  ["a userId with a space", { username: "ann", userId: "a b" }, "E_BAD_USERNAME"],
  ["a userId object", { username: "ann", userId: { id: 1 } }, "E_BAD_USERNAME"],
  ["a room with a space", { username: "ann", room: "my room" }, "E_BAD_ROOM"],
  ["a room with a slash", { username: "ann", room: "a/b" }, "E_BAD_ROOM"],
  ["a room of 65 characters", { username: "ann", room: "r".repeat(65) }, "E_BAD_ROOM"],
  ["a numeric room", { username: "ann", room: 5 }, "E_BAD_ROOM"],
];

let service: ServiceHandle;

before(async () => {
  service = await startService([
    "--max-message-length",
    String(MAX_MESSAGE_LENGTH),
    "--max-image-bytes",
    String(MAX_IMAGE_BYTES),
    "--max-frame-bytes",
    String(MAX_FRAME_BYTES),
    ...SCRIPTED_RATES,
  ]);
});

after(async () => {
  await service?.stop();
});

for (const transport of ["websocket", "polling"] as Transport[]) {
  describe(`errors over ${transport}`, { timeout: 120_000 }, () => {
    const pool = new ClientPool();
    let roomSeq = 0;
    const newRoom = () => `errors-${transport}-${++roomSeq}`;
    const opts = { transports: [transport] };
    const join = (username: string, room: string) =>
      pool.connect(service.url, { username, room }, opts);

    afterEach(() => pool.closeAll());

    it("refused handshakes answer connect_error with { code, message }", async () => {
      for (const [what, auth, code] of BAD_HANDSHAKES) {
        const data = await connectError(service.url, auth, opts);
        assert.equal(data.code, code, what);
        assert.equal(typeof data.message, "string", what);
        assert.ok(data.message.length > 0, what);
      }
      // The service still takes good handshakes.
      await join("ann", newRoom());
    });

    it("each bad message is answered with its error; nothing is broadcast; the connection stays usable", async () => {
      const room = newRoom();
      const alice = await join("alice", room);
      const bob = await join("bob", room);
      assert.notEqual(alice.worker, bob.worker);
      const fromB = bob.mark();
      for (const [i, [what, payload, code]] of BAD_MESSAGES.entries()) {
        // Pushed as a "message" without an ack...
        const from = alice.mark();
        alice.send(payload);
        const pushed = await alice.waitFor(
          (e) => e.action === 100,
          `pushed ${what}`,
          WAIT_MS,
          from,
        );
        assertError(pushed, code);
        // ...and to the ack when there is one.
        const acked = await alice.request("message", payload);
        assertError(acked, code);
        // Still usable: a good message comes back as 300.
        const good = await alice.say(`still here ${i}`);
        assert.equal(good.action, 300, what);
        assert.equal(alice.all((e) => e.action === 100, from).length, 1, `one error for ${what}`);
      }
      await bob.waitFor(
        isText(`still here ${BAD_MESSAGES.length - 1}`),
        "alice's last good message",
      );
      assert.deepEqual(
        bob.all((e) => e.action === 100 || e.action === 102, fromB),
        [],
        "bob saw no error and no state of alice's bad messages",
      );
      assert.deepEqual(
        bob.all((e) => e.action === 300, fromB).map((e) => e.data.content.message),
        BAD_MESSAGES.map((_, i) => `still here ${i}`),
        "bob got exactly alice's good messages",
      );
    });

    it("a private message to an fd of another room is E_NO_RECIPIENT", async () => {
      const alice = await join("alice", newRoom());
      const zed = await join("zed", newRoom());
      const reply = await alice.request("message", {
        type: "text",
        content: { message: "hi" },
        to: zed.fd,
      });
      assertError(reply, "E_NO_RECIPIENT");
      await alice.say("usable");
    });

    it("an unknown event is E_UNKNOWN_EVENT, pushed or acked; the connection stays usable", async () => {
      const alice = await join("alice", newRoom());
      const from = alice.mark();
      alice.socket.emit("hack", { x: 1 });
      const pushed = await alice.waitFor((e) => e.action === 100, "pushed error", WAIT_MS, from);
      assertError(pushed, "E_UNKNOWN_EVENT");
      alice.socket.emit("join");
      await alice.until(
        () => alice.all((e) => e.action === 100, from).length === 2,
        "second error",
      );
      assertError(alice.all((e) => e.action === 100, from)[1], "E_UNKNOWN_EVENT");
      const acked = (await alice.socket.timeout(5000).emitWithAck("kick", "bob")) as Envelope;
      assertError(acked, "E_UNKNOWN_EVENT");
      await alice.say("still fine");
      assert.equal(alice.connected, true);
    });

    it("an oversized frame closes only that connection; others and the service carry on", async () => {
      const room = newRoom();
      const alice = await join("alice", room);
      const bob = await join("bob", room);
      const carol = await join("carol", room);
      assert.notEqual(alice.worker, bob.worker);
      const fromB = bob.mark();
      const fromC = carol.mark();
      const huge = "x".repeat(MAX_FRAME_BYTES * 2);
      alice.send({ type: "text", content: { message: huge } });
      const reason = await alice.waitDisconnect("alice's connection to close", WAIT_MS);
      assert.match(reason, /transport (close|error)/);
      // alice is gone for the others (her only connection), the others stay.
      for (const [c, from] of [
        [bob, fromB],
        [carol, fromC],
      ] as const) {
        await c.waitFor(
          (e) => e.action === 203 && e.data.content.userInfo?.userId === "alice",
          "203 for alice",
          WAIT_MS,
          from,
        );
        assert.equal(c.connected, true);
        assert.deepEqual(c.disconnects, []);
        assert.deepEqual(
          c.all((e) => e.data.content.message === huge, from),
          [],
        );
      }
      bob.send({ type: "text", content: { message: "bob after" } });
      await carol.waitFor(isText("bob after"), "bob's message at carol", WAIT_MS, fromC);
      const list = await carol.request("onlineList");
      assert.deepEqual(
        list.data.content.userList?.map((u) => u.userId),
        ["bob", "carol"],
      );
      // The same user can come back.
      const again = await join("alice", room);
      await again.say("alice is back");
      const status = service.cli(["status", "--json"]);
      assert.equal(status.code, 0, status.stderr);
      assert.equal((JSON.parse(status.stdout) as { workers: unknown[] }).workers.length, 2);
    });

    it("a frame just under the limit is not refused for its size", async () => {
      const alice = await join("alice", newRoom());
      // Within the frame limit, over the message limit: an error, not a closed connection.
      const reply = await alice.request("message", {
        type: "text",
        content: { message: "y".repeat(MAX_FRAME_BYTES - 200) },
      });
      assertError(reply, "E_MESSAGE_TOO_LONG");
      await alice.say("ok");
      assert.equal(alice.connected, true);
    });
  });
}
