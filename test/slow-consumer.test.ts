/**
 * A client that stops reading its socket cannot make the service buffer without bound: once what
 * is queued for it passes --max-buffered-bytes it is dropped (its room sees it leave), the worker's
 * memory stays bounded, and the others keep chatting. Raw `ws` clients whose TCP socket is paused
 * play the client that never reads.
 */
import assert from "node:assert/strict";
import type net from "node:net";
import { after, afterEach, before, describe, it } from "node:test";
import WebSocket from "ws";
import { ClientPool } from "./support/chat-client.js";
import { type ServiceHandle, startService } from "./support/service.js";

const MAX_BUFFERED = 3_000_000;

/** A raw Engine.IO/Socket.IO client that completes its handshake, then never reads again. */
async function nonReader(port: number, auth: Record<string, unknown>): Promise<WebSocket> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`);
  await new Promise<void>((resolve, reject) => {
    ws.on("error", reject);
    ws.on("message", (data) => {
      const frame = data.toString();
      if (frame.startsWith("0")) ws.send(`40${JSON.stringify(auth)}`);
      else if (frame.startsWith('42["message",{"action":201')) resolve();
    });
  });
  ws.removeAllListeners("message");
  ws.on("error", () => {});
  (ws as unknown as { _socket: net.Socket })._socket.pause();
  return ws;
}

interface StatusJson {
  workers: { rssBytes: number }[];
}

describe("a client that does not read", () => {
  let service: ServiceHandle;
  const pool = new ClientPool();
  const raw: WebSocket[] = [];
  const rss = () =>
    (JSON.parse(service.cli(["status", "--json"]).stdout) as StatusJson).workers[0].rssBytes;
  before(async () => {
    service = await startService([
      "--workers",
      "1",
      "--max-buffered-bytes",
      String(MAX_BUFFERED),
      // The limits would stop these floods first: lifted so that the buffer cap is what acts.
      "--message-rate",
      "0",
      "--user-message-rate",
      "0",
      "--message-bytes-rate",
      "0",
      "--user-message-bytes-rate",
      "0",
      "--query-rate",
      "0",
    ]);
  });
  afterEach(() => {
    pool.closeAll();
    for (const ws of raw.splice(0)) ws.terminate();
  });
  after(() => service.stop());

  it("is dropped when its room's images pile up for it; memory stays bounded", async () => {
    const watcher = await pool.connect(service.url, { username: "watcher", room: "gallery" });
    const sender = await pool.connect(service.url, { username: "sender", room: "gallery" });
    raw.push(await nonReader(service.port, { username: "slowpoke", room: "gallery" }));
    const before = rss();
    const image = `data:image/png;base64,${"A".repeat(900_000)}`;
    // 30 images of 900 KB: 27 MB for the non-reader, far past its 3 MB cap.
    for (let i = 0; i < 30; i++) {
      const reply = await sender.request("message", { type: "img", content: { message: image } });
      assert.equal(reply.action, 300);
    }
    await watcher.waitFor(
      (e) => e.action === 203 && e.data.content.userInfo?.userId === "slowpoke",
      "203 for the client that does not read",
      10_000,
    );
    assert.ok(
      service.logs.some((l) => l.includes("E_SLOW_CONSUMER")),
      "the operator sees why in the log",
    );
    const grown = rss() - before;
    assert.ok(grown < 150_000_000, `worker grew by ${Math.round(grown / 1e6)} MB`);
    // The readers got every image and still chat.
    assert.equal(watcher.all((e) => e.action === 300 && e.data.type === "img").length, 30);
    await watcher.say("still here");
  });

  it("is dropped when it floods requests whose answers it never reads", async () => {
    const watcher = await pool.connect(service.url, { username: "watcher", room: "big" });
    // 100 users make each online list ~9 KB.
    for (let i = 0; i < 99; i += 33) {
      await Promise.all(
        Array.from({ length: 33 }, (_, j) =>
          pool.connect(
            service.url,
            { username: `u${i + j}`, room: "big" },
            { transports: ["websocket"] },
          ),
        ),
      );
    }
    const ws = await nonReader(service.port, { username: "greedy", room: "big" });
    raw.push(ws);
    const before = rss();
    // 3,000 onlineList requests: ~27 MB of answers, 15 bytes each way in. Paced in bursts of
    // 100: sent at once, the frame guard refuses all but 256 per read (E_BAD_FRAME) and the
    // answers, ~2 MB, stay under the cap; the point here is a client whose requests are served.
    for (let burst = 0; burst < 30 && ws.readyState === WebSocket.OPEN; burst++) {
      for (let i = 0; i < 100; i++) ws.send('42["onlineList"]');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await watcher.waitFor(
      (e) => e.action === 203 && e.data.content.userInfo?.userId === "greedy",
      "203 for the greedy client",
      15_000,
    );
    const grown = rss() - before;
    assert.ok(grown < 150_000_000, `worker grew by ${Math.round(grown / 1e6)} MB`);
    const reply = await watcher.request("onlineList");
    assert.equal(reply.data.content.userList?.length, 100, "the others are all still there");
  });
});
