import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import { ChatClient } from "./support/chat-client.js";
import { type ServiceHandle, startService, waitUntil } from "./support/service.js";

const users = (e: { data: { content: { userList?: { userId: string }[] } } }) =>
  (e.data.content.userList ?? []).map((u) => u.userId);

describe("--presence-limit: big rooms stop broadcasting presence", () => {
  let service: ServiceHandle;
  const clients: ChatClient[] = [];
  const connect = async (username: string, room = "big") => {
    const c = await ChatClient.connect(
      service.url,
      { username, room },
      { transports: ["websocket"] },
    );
    clients.push(c);
    return c;
  };

  before(async () => {
    service = await startService(["--presence-limit", "2"]);
  });
  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
  });
  after(() => service.stop());

  it("announces up to the limit, then cuts the connect-time 201 and stops 202/203", async () => {
    const a = await connect("a");
    const b = await connect("b");
    await a.waitFor(
      (e) => e.action === 202 && e.data.content.userInfo?.userId === "b",
      "202 for b",
    );
    const c = await connect("c");
    const first201 = c.received.find((e) => e.action === 201);
    assert.ok(first201);
    assert.deepEqual(users(first201), ["a", "b"]);
    assert.equal(first201.data.content.total, 3);
    // onlineList is the way to see everyone in a big room.
    assert.deepEqual(users(await c.request("onlineList")), ["a", "b", "c"]);
    // No 202 for c and, when c leaves the room of 3, no 203: a marker message proves nothing came.
    c.close();
    await waitUntil(async () => users(await a.request("onlineList")).length === 2, "c gone");
    b.send({ type: "text", content: { message: "marker" } });
    await a.waitFor((e) => e.action === 300 && e.data.content.message === "marker", "marker");
    const aboutC = a.all((e) => e.data.content.userInfo?.userId === "c" && e.action !== 300);
    assert.deepEqual(aboutC, []);
    // Back within the limit, presence is announced again.
    b.close();
    await a.waitFor(
      (e) => e.action === 203 && e.data.content.userInfo?.userId === "b",
      "203 for b",
    );
  });

  it("small rooms are unaffected", async () => {
    const x = await connect("x", "small");
    const y = await connect("y", "small");
    await x.waitFor(
      (e) => e.action === 202 && e.data.content.userInfo?.userId === "y",
      "202 for y",
    );
    const first201 = y.received.find((e) => e.action === 201);
    assert.equal(first201?.data.content.total, undefined);
  });
});
