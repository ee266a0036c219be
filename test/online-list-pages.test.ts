/**
 * `onlineList` in a room bigger than --list-page-size answers one page at a time: the old call
 * (`onlineList(ack)`) gets the first page with `total` and `next`, `onlineList({ cursor }, ack)`
 * the following ones; a small room answers as it always did.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import type { Envelope } from "../src/chat/protocol.js";
import { ClientPool } from "./support/chat-client.js";
import { type ServiceHandle, startService } from "./support/service.js";

const ids = (e: Envelope) => (e.data.content.userList ?? []).map((u) => u.userId);

describe("paged online lists", () => {
  let service: ServiceHandle;
  const pool = new ClientPool();
  before(async () => {
    service = await startService(["--list-page-size", "3"]);
  });
  afterEach(() => pool.closeAll());
  after(() => service.stop());

  it("pages a big room with cursor, next and total; every user exactly once", async () => {
    const names = Array.from({ length: 7 }, (_, i) => `user${i}`);
    for (const username of names) await pool.connect(service.url, { username, room: "big" });
    const asker = pool.clients[0];

    const first = await asker.request("onlineList");
    assert.equal(first.action, 201);
    assert.deepEqual(ids(first), names.slice(0, 3), "oldest first, as before");
    assert.equal(first.data.content.total, 7);
    assert.equal(first.data.content.next, 3);

    const second = await asker.request("onlineList", { cursor: first.data.content.next });
    assert.deepEqual(ids(second), names.slice(3, 6));
    assert.equal(second.data.content.next, 6);

    const last = await asker.request("onlineList", { cursor: 6 });
    assert.deepEqual(ids(last), names.slice(6));
    assert.equal(last.data.content.total, 7);
    assert.equal("next" in last.data.content, false, "no next page");

    // A smaller page than the cap, and a cap that wins over a bigger ask.
    assert.deepEqual(ids(await asker.request("onlineList", { cursor: 1, limit: 2 })), [
      "user1",
      "user2",
    ]);
    assert.equal(ids(await asker.request("onlineList", { limit: 100 })).length, 3);
  });

  it("answers a small room in one reply, without total or next", async () => {
    const a = await pool.connect(service.url, { username: "a", room: "small" });
    await pool.connect(service.url, { username: "b", room: "small" });
    const reply = await a.request("onlineList");
    assert.deepEqual(ids(reply), ["a", "b"]);
    assert.equal("total" in reply.data.content, false);
    assert.equal("next" in reply.data.content, false);
  });

  it("refuses a bad page request with E_BAD_PAYLOAD", async () => {
    const a = await pool.connect(service.url, { username: "a", room: "bad" });
    for (const bad of [{ cursor: -1 }, { cursor: "x" }, { limit: 0 }, { cursor: 1.5 }]) {
      const reply = await a.request("onlineList", bad);
      assert.equal(reply.data.content.error?.code, "E_BAD_PAYLOAD", JSON.stringify(bad));
    }
  });
});
