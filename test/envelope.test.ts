/** Unit tests of src/chat/envelope.ts (formatTime, envelopes) and src/chat/message-ids.ts. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { envelope, errorEnvelope, formatTime } from "../src/chat/envelope.js";
import { MessageIds } from "../src/chat/message-ids.js";

describe("formatTime", () => {
  it("formats local time as YYYY-MM-DD HH:mm:ss, zero-padded", () => {
    assert.equal(formatTime(new Date(2024, 0, 2, 3, 4, 5, 678).getTime()), "2024-01-02 03:04:05");
    assert.equal(
      formatTime(new Date(1999, 11, 31, 23, 59, 59, 999).getTime()),
      "1999-12-31 23:59:59",
    );
    assert.equal(formatTime(new Date(2030, 9, 10, 12, 0, 0).getTime()), "2030-10-10 12:00:00");
  });

  it("the per-second cache never returns another second's text", () => {
    const t = new Date(2025, 5, 15, 10, 20, 30, 0).getTime();
    assert.equal(formatTime(t), "2025-06-15 10:20:30");
    assert.equal(formatTime(t + 999), "2025-06-15 10:20:30");
    assert.equal(formatTime(t + 1000), "2025-06-15 10:20:31");
    assert.equal(formatTime(t - 1), "2025-06-15 10:20:29");
    assert.equal(formatTime(t - 86_400_000), "2025-06-14 10:20:30");
    assert.equal(formatTime(t), "2025-06-15 10:20:30");
  });

  it("defaults to now", () => {
    const before = formatTime(Date.now());
    const now = formatTime();
    const after = formatTime(Date.now());
    assert.match(now, /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/);
    assert.ok(now === before || now === after);
  });
});

describe("envelope and errorEnvelope", () => {
  it("build the protocol's envelope with endTime = sendTime", () => {
    const t = new Date(2024, 1, 29, 8, 9, 10).getTime();
    assert.deepEqual(envelope(300, "text", { message: "hi" }, t), {
      action: 300,
      data: { type: "text", content: { message: "hi" } },
      endTime: "2024-02-29 08:09:10",
      sendTime: "2024-02-29 08:09:10",
    });
    const e = errorEnvelope("E_BAD_TYPE", "type must be text");
    assert.equal(e.action, 100);
    assert.equal(e.data.type, "state");
    assert.deepEqual(e.data.content, {
      message: "type must be text",
      error: { code: "E_BAD_TYPE", message: "type must be text" },
    });
    assert.equal(e.endTime, e.sendTime);
  });
});

describe("MessageIds", () => {
  it("ids start with the 13-digit time, are unique and increase, within and across milliseconds", () => {
    const ids = new MessageIds("w1");
    const t = 1_700_000_000_000;
    const got = [
      ids.next(t),
      ids.next(t),
      ids.next(t),
      ids.next(t + 1),
      ids.next(t + 1),
      ids.next(t + 50),
    ];
    assert.equal(new Set(got).size, got.length);
    for (let i = 1; i < got.length; i++)
      assert.ok(got[i - 1] < got[i], `${got[i - 1]} < ${got[i]}`);
    assert.match(got[0], /^1700000000000-000000-w1$/);
    assert.match(got[2], /^1700000000000-000002-w1$/);
    // Many in one millisecond still sort (base-36, fixed width).
    let prev = "";
    for (let i = 0; i < 2000; i++) {
      const id = ids.next(t + 100);
      assert.ok(prev < id);
      prev = id;
    }
  });
});
