/** Unit tests of src/chat/validate-message.ts: every branch, no processes. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ChatError } from "../src/chat/chat-error.js";
import type { ErrorCode } from "../src/chat/protocol.js";
import {
  checkImage,
  MAX_STATE_LENGTH,
  type MessageLimits,
  validateMessage,
} from "../src/chat/validate-message.js";

const LIMITS: MessageLimits = { maxMessageLength: 20, maxImageBytes: 200 };
const PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJ";

function fails(payload: unknown, code: ErrorCode, limits: MessageLimits = LIMITS): ChatError {
  let caught: unknown;
  try {
    validateMessage(payload, limits);
  } catch (err) {
    caught = err;
  }
  assert.ok(
    caught instanceof ChatError,
    `expected a ChatError ${code} for ${JSON.stringify(payload)}`,
  );
  assert.equal(caught.code, code, `${JSON.stringify(payload)}: ${caught.message}`);
  assert.ok(caught.message.length > 0);
  return caught;
}

function imageFails(url: string, code: ErrorCode, max = LIMITS.maxImageBytes): void {
  assert.throws(
    () => checkImage(url, max),
    (err: unknown) => err instanceof ChatError && err.code === code,
    `${url.slice(0, 60)} → ${code}`,
  );
}

const text = (message: unknown, extra: Record<string, unknown> = {}) => ({
  type: "text",
  content: { message },
  ...extra,
});

describe("validateMessage", () => {
  it("accepts text, img and state and returns only the checked fields", () => {
    assert.deepEqual(validateMessage(text("hello"), LIMITS), {
      type: "text",
      content: { message: "hello" },
    });
    assert.deepEqual(validateMessage({ type: "img", content: { message: PNG } }, LIMITS), {
      type: "img",
      content: { message: PNG },
    });
    assert.deepEqual(validateMessage({ type: "state", content: { message: "typing" } }, LIMITS), {
      type: "state",
      content: { message: "typing" },
    });
    // Extra fields (a spoofed sender, an id, an action) are dropped; the text is not trimmed.
    assert.deepEqual(
      validateMessage(
        {
          type: "text",
          content: { message: " hi ", userInfo: { userId: "admin" } },
          action: 101,
          id: "x",
          notice: false,
        },
        LIMITS,
      ),
      { type: "text", content: { message: " hi " } },
    );
  });

  it("keeps `to` when it is a non-empty string of at most 128 characters", () => {
    assert.deepEqual(validateMessage(text("hi", { to: "bob" }), LIMITS), {
      type: "text",
      content: { message: "hi" },
      to: "bob",
    });
    assert.equal(validateMessage(text("hi", { to: "t".repeat(128) }), LIMITS).to, "t".repeat(128));
    assert.equal(
      validateMessage({ type: "state", content: { message: "x" }, to: "bob" }, LIMITS).to,
      "bob",
    );
  });

  it("keeps `to` as { userId } or { fd }: the unambiguous forms", () => {
    assert.deepEqual(validateMessage(text("hi", { to: { userId: "bob" } }), LIMITS), {
      type: "text",
      content: { message: "hi" },
      to: { userId: "bob" },
    });
    assert.deepEqual(
      validateMessage(text("hi", { to: { fd: "AbC-_0123456789abcdE" } }), LIMITS).to,
      {
        fd: "AbC-_0123456789abcdE",
      },
    );
    // A numeric userId, as the handshake accepts, is the same user as its string.
    assert.deepEqual(validateMessage(text("hi", { to: { userId: 42 } }), LIMITS).to, {
      userId: "42",
    });
    assert.deepEqual(validateMessage(text("hi", { to: { userId: "u".repeat(128) } }), LIMITS).to, {
      userId: "u".repeat(128),
    });
  });

  it("E_BAD_PAYLOAD: not an object", () => {
    for (const p of [null, undefined, "hello", 42, true, [], [text("hi")]])
      fails(p, "E_BAD_PAYLOAD");
  });

  it("E_BAD_TYPE: missing, not a string, or not text/img/state (checked before content)", () => {
    for (const type of [undefined, 1, null, "", "TEXT", "video", "image", ["text"]]) {
      fails({ type, content: { message: "hi" } }, "E_BAD_TYPE");
    }
    fails({ type: "video" }, "E_BAD_TYPE");
  });

  it("E_BAD_PAYLOAD: content missing or not an object, content.message not a string", () => {
    fails({ type: "text" }, "E_BAD_PAYLOAD");
    for (const content of [
      null,
      "hi",
      5,
      ["hi"],
      {},
      { message: 5 },
      { message: null },
      { message: ["a"] },
    ]) {
      fails({ type: "text", content }, "E_BAD_PAYLOAD");
    }
  });

  it("E_BAD_PAYLOAD: `to` empty, too long, not a string, not exactly one of { userId } / { fd }", () => {
    for (const to of [
      "",
      "t".repeat(129),
      7,
      null,
      { id: "bob" },
      ["bob"],
      {},
      { userId: "" },
      { fd: "" },
      { userId: "u".repeat(129) },
      { userId: "bob", fd: "AbC-_0123456789abcdE" },
      { userId: "bob", extra: 1 },
      { userId: null },
      { fd: 1.5 },
      { userId: { userId: "bob" } },
      [{ userId: "bob" }],
    ]) {
      fails(text("hi", { to }), "E_BAD_PAYLOAD");
    }
  });

  it("notice: kept when true on a text; E_BAD_PAYLOAD when not a boolean or not on a text", () => {
    assert.deepEqual(validateMessage(text("hear ye", { notice: true }), LIMITS), {
      type: "text",
      content: { message: "hear ye" },
      notice: true,
    });
    assert.equal("notice" in validateMessage(text("hi", { notice: false }), LIMITS), false);
    for (const notice of ["yes", 1, null, {}]) fails(text("hi", { notice }), "E_BAD_PAYLOAD");
    fails({ type: "img", content: { message: PNG }, notice: true }, "E_BAD_PAYLOAD");
    fails({ type: "state", content: { message: "x" }, notice: true }, "E_BAD_PAYLOAD");
  });

  it("E_EMPTY_MESSAGE: empty or blank, for every type", () => {
    for (const type of ["text", "img", "state"]) {
      for (const message of ["", " ", "\n\t  "])
        fails({ type, content: { message } }, "E_EMPTY_MESSAGE");
    }
  });

  it("E_MESSAGE_TOO_LONG: text over maxMessageLength, state over 64; the limits themselves pass", () => {
    assert.ok(validateMessage(text("x".repeat(20)), LIMITS));
    const e = fails(text("x".repeat(21)), "E_MESSAGE_TOO_LONG");
    assert.match(e.message, /21.*20/);
    assert.equal(MAX_STATE_LENGTH, 64);
    assert.ok(validateMessage({ type: "state", content: { message: "s".repeat(64) } }, LIMITS));
    fails({ type: "state", content: { message: "s".repeat(65) } }, "E_MESSAGE_TOO_LONG");
    // The text limit does not apply to images, nor to states.
    assert.ok(validateMessage({ type: "img", content: { message: PNG } }, LIMITS));
    assert.ok(validateMessage({ type: "state", content: { message: "s".repeat(40) } }, LIMITS));
  });

  it("img: checked by checkImage with maxImageBytes", () => {
    fails({ type: "img", content: { message: "javascript:alert(1)" } }, "E_BAD_IMAGE");
    fails(
      { type: "img", content: { message: `https://x.test/${"a".repeat(300)}` } },
      "E_IMAGE_TOO_LARGE",
    );
  });
});

describe("checkImage", () => {
  it("accepts http(s) URLs and base64 data URLs of png, jpeg, gif and webp", () => {
    for (const url of [
      "https://example.com/cat.png",
      "http://127.0.0.1:8080/a.jpg?x=1#y",
      "HTTPS://EXAMPLE.COM/A.PNG",
      PNG,
      "data:image/jpeg;base64,/9j/4AAQSkZJRg==",
      "data:image/gif;base64,R0lGODlhAQABAAAAACw=",
      "data:image/webp;base64,UklGRhYAAABXRUJQ",
    ]) {
      assert.doesNotThrow(() => checkImage(url, 200), url);
    }
  });

  it("E_BAD_IMAGE: other schemes, other data types, bad base64, not a URL", () => {
    for (const url of [
      "javascript:alert(1)",
      "JavaScript:alert(1)",
      "data:text/html;base64,PHNjcmlwdD4=",
      "data:text/html,<script>alert(1)</script>",
      "data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=",
      "data:image/png,rawbytes",
      "data:image/png;base64,not base64!",
      "data:image/png;base64,",
      "data:image/png;base64,AAAA===",
      "ftp://example.com/a.png",
      "file:///etc/passwd",
      "vbscript:msgbox(1)",
      "blob:https://example.com/uuid",
      "cat.png",
      "/images/cat.png",
      "//example.com/cat.png",
      "http//missing-colon",
    ]) {
      imageFails(url, "E_BAD_IMAGE");
    }
  });

  it("E_IMAGE_TOO_LARGE: over maxBytes (checked first); exactly maxBytes passes", () => {
    const prefix = "data:image/png;base64,";
    const exact = prefix + "A".repeat(200 - prefix.length);
    assert.equal(exact.length, 200);
    assert.doesNotThrow(() => checkImage(exact, 200));
    imageFails(`${exact}A`, "E_IMAGE_TOO_LARGE");
    imageFails(`javascript:${"a".repeat(300)}`, "E_IMAGE_TOO_LARGE");
    imageFails(`https://example.com/${"a".repeat(200)}`, "E_IMAGE_TOO_LARGE");
  });
});
