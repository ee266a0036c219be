/**
 * One client flooding its room (2,000 messages/s, the measurement) must not degrade the
 * others on its worker: a probe in another room keeps its latency, new connections still get in,
 * and the flooder's room receives no more than the limits allow.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Envelope } from "../src/chat/protocol.js";
import { ClientPool } from "./support/chat-client.js";
import { type ServiceHandle, startService } from "./support/service.js";

const MEMBERS = 200;
const FLOOD_MS = 5000;
const FLOOD_PER_10MS = 20;
/** The defaults (--message-rate 20/4s): what one connection may send. */
const POINTS = 20;
const WINDOW_MS = 4000;

describe("a flood in one room", () => {
  let service: ServiceHandle;
  const pool = new ClientPool();
  // One worker: the flooder and the probe share it, as the measurement did. Flooders
  // are never disconnected here (--max-refusals 0) so that the flood lasts its whole 5 s.
  before(async () => {
    service = await startService(["--workers", "1", "--max-refusals", "0"]);
  });
  after(async () => {
    pool.closeAll();
    await service.stop();
  });

  it("keeps a probe's latency in another room and refuses what is over the limit", async (t) => {
    for (let i = 0; i < MEMBERS; i += 20) {
      await Promise.all(
        Array.from({ length: Math.min(20, MEMBERS - i) }, (_, j) =>
          pool.connect(
            service.url,
            { username: `m${i + j}`, room: "flood" },
            { transports: ["websocket"] },
          ),
        ),
      );
    }
    const watcher = pool.clients[0];
    const flooder = await pool.connect(
      service.url,
      { username: "flooder", room: "flood" },
      { transports: ["websocket"] },
    );
    // Five probe senders at 4 messages/s each stay under their own limit (5/s): 20 samples/s.
    const probeFrom = await Promise.all(
      Array.from({ length: 5 }, (_, i) =>
        pool.connect(service.url, { username: `probe-${i}`, room: "calm" }),
      ),
    );
    const probeTo = await pool.connect(service.url, { username: "probe-b", room: "calm" });

    const sentAt = new Map<string, number>();
    const latencies: number[] = [];
    probeTo.socket.on("message", (e: Envelope) => {
      const t = sentAt.get(e.data.content.message ?? "");
      if (e.action === 300 && t !== undefined) latencies.push(Date.now() - t);
    });

    const started = Date.now();
    let n = 0;
    const flood = setInterval(() => {
      for (let i = 0; i < FLOOD_PER_10MS; i++) {
        flooder.socket.emit("message", { type: "text", content: { message: `flood ${n++}` } });
      }
    }, 10);
    let p = 0;
    const probe = setInterval(() => {
      const text = `probe ${p}`;
      sentAt.set(text, Date.now());
      probeFrom[p++ % probeFrom.length].send({ type: "text", content: { message: text } });
    }, 50);
    // A newcomer during the flood gets in (on main it timed out).
    const newcomer = await pool.connect(
      service.url,
      { username: "newcomer", room: "calm" },
      { timeout: 3000 },
    );
    assert.ok(newcomer.connected);
    await new Promise((resolve) => setTimeout(resolve, FLOOD_MS - (Date.now() - started)));
    clearInterval(flood);
    clearInterval(probe);
    const floodMs = Date.now() - started;

    await probeTo.until(() => latencies.length === p, `all ${p} probes`, 10_000);
    latencies.sort((a, b) => a - b);
    const p99 = latencies[Math.floor(latencies.length * 0.99)];
    t.diagnostic(`probe p50 ${latencies[latencies.length >> 1]} ms, p99 ${p99} ms, ${p} probes`);
    assert.ok(p >= 80, `${p} probes sent`);
    assert.ok(
      p99 < 250,
      `probe p99 ${p99} ms during the flood (p50 ${latencies[latencies.length >> 1]} ms)`,
    );

    // What reached the flooder's room: at most the limit per fixed window the flood touched.
    await watcher.say("end of flood");
    const delivered = watcher.all(
      (e) => e.action === 300 && e.data.content.userInfo?.userId === "flooder",
    ).length;
    const allowed = POINTS * (Math.ceil(floodMs / WINDOW_MS) + 1);
    assert.ok(n > 5000, `${n} messages flooded`);
    assert.ok(delivered >= POINTS, `${delivered} delivered: the first ${POINTS} go through`);
    assert.ok(delivered <= allowed, `${delivered} delivered, at most ${allowed} allowed`);
    const refused = flooder.all((e) => e.data.content.error?.code === "E_RATE_LIMITED").length;
    assert.ok(refused > n / 2, `${refused} of ${n} refused with E_RATE_LIMITED`);
  });
});
