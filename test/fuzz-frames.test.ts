/**
 * Nothing a client sends crashes a process: generated frames (raw Engine.IO / Socket.IO over
 * WebSocket and long-polling, and socket.io-client emits) thrown at a running cluster leave every
 * worker pid unchanged and a bystander pair still chatting. Refused Socket.IO packets are answered
 * with E_BAD_FRAME and the connection stays open. Seeded: replay a failure with WWS_SEED=<seed>.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import fc from "fast-check";
import type { Envelope } from "../src/chat/protocol.js";
import { ChatClient, ClientPool } from "./support/chat-client.js";
import { RawPollingSession, RawWsSession } from "./support/raw-socket.js";
import { runCliAsync, type ServiceHandle, startService } from "./support/service.js";

const SEED = Number(process.env.WWS_SEED ?? Date.now() % 1_000_000);
const NOTE = `(seed ${SEED}; replay with WWS_SEED=${SEED})`;

let service: ServiceHandle;
let pidsAtStart: number[];
/** Two users chatting in a room of their own while the fuzzing goes on, one per worker. */
let bystanders: [ChatClient, ChatClient];
let sessions = 0;

async function workerPids(): Promise<number[]> {
  const r = await runCliAsync(["status", "--json", "--pid-file", service.pidFile]);
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout) as { workers: { pid: number }[] };
  return s.workers.map((w) => w.pid).sort((a, b) => a - b);
}

let reports = 0;

/** fc.assert with the run's seed, reporting it with the counterexample. */
async function check<T>(prop: fc.IAsyncPropertyWithHooks<T>, numRuns: number): Promise<void> {
  try {
    await fc.assert(prop, { seed: SEED, numRuns, endOnFailure: true });
  } catch (err) {
    // Counterexamples can be megabytes (50,000 arguments, deep nesting): keep the report short.
    const message = (err as Error).message;
    const got = message.indexOf("Got ");
    const short =
      message.length <= 4000
        ? message
        : `${message.slice(0, 2000)}… (cut)\n${got > 2000 ? message.slice(got, got + 2000) : ""}`;
    const file = path.join(os.tmpdir(), `fuzz-frames-${SEED}-${++reports}.txt`);
    writeFileSync(file, message);
    throw new Error(`${NOTE}; the whole report is in ${file}\n${short}`);
  }
}

// ---- generated frames ------------------------------------------------------------------------

const json = (v: unknown) => JSON.stringify(v);

const eventName = fc.oneof(
  fc.constantFrom(
    "message",
    "info",
    "onlineList",
    "wws:bad-frame",
    "__proto__",
    "constructor",
    "hasOwnProperty",
    "error",
    "disconnect",
    "connect",
    "newListener",
    "",
  ),
  fc.string({ maxLength: 16 }),
  fc.fullUnicodeString({ maxLength: 16 }),
  fc.string16bits({ maxLength: 16 }),
  fc.string({ minLength: 65, maxLength: 400 }),
  fc.integer(),
  fc.double(),
  fc.constant(null),
  fc.boolean(),
  fc.array(fc.nat(), { maxLength: 3 }),
  fc.object({ maxDepth: 1 }),
);

/** One argument as JSON text: values, deep nesting, binary placeholders, real chat payloads. */
const argText = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }).map(json),
  fc.constantFrom(
    json({ type: "text", content: { message: "fuzz" } }),
    json({ type: "state", content: { message: "typing" } }),
    json({ type: "img", content: { message: "https://example.com/a.png" } }),
    json({ type: "text", content: { message: "x" }, to: "nobody" }),
  ),
  fc.integer({ min: 1, max: 4000 }).map((d) => "[".repeat(d) + "]".repeat(d)),
  fc.integer({ min: 1, max: 4000 }).map((d) => `${'{"a":'.repeat(d)}1${"}".repeat(d)}`),
  fc.integer({ min: -1, max: 5 }).map((n) => json({ _placeholder: true, num: n })),
);

const body = fc
  .oneof(
    { weight: 6, arbitrary: fc.tuple(eventName, fc.array(argText, { maxLength: 6 })) },
    {
      weight: 1,
      arbitrary: fc
        .tuple(eventName, fc.constantFrom(50, 1000, 50_000))
        .map(([name, n]) => [name, Array(n).fill("1")] as [unknown, string[]]),
    },
    { weight: 2, arbitrary: fc.oneof(fc.string(), fc.fullUnicodeString(), fc.constant("")) },
    { weight: 1, arbitrary: fc.constantFrom("[]", "{}", "[", '["message"', "null", '"x"', "1") },
  )
  .map((b) => (typeof b === "string" ? b : `[${[json(b[0]), ...b[1]].join(",")}]`));

/** A Socket.IO packet (without the Engine.IO "4"), never CONNECT or DISCONNECT (see below). */
const sioPacket = fc
  .record({
    // Not "" (the ack digits would make it a CONNECT or a DISCONNECT, both legitimate).
    type: fc.constantFrom("2", "2", "2", "2", "3", "4", "5", "5", "6", "7", "9", "x", "-"),
    attachments: fc.constantFrom(
      "",
      "0-",
      "1-",
      "1-",
      "2-",
      "3-",
      "11-",
      "99999999999-",
      "-",
      "a-",
    ),
    nsp: fc.constantFrom("", "", "", "", "/,", "/admin,", "/x"),
    ack: fc.oneof(
      fc.constant(""),
      fc.nat({ max: 1000 }).map(String),
      fc.constantFrom("0", "4294967296", "9007199254740993", "99999999999999999999", "007"),
    ),
    body,
  })
  .map(({ type, attachments, nsp, ack, body: b }) => {
    const binary = type === "5" || type === "6";
    return `${type}${binary ? attachments : ""}${nsp}${ack}${b}`;
  });

/** A WebSocket frame: a Socket.IO packet, maybe followed by binary attachments. */
const wsFrames = fc.array(
  fc.oneof(
    { weight: 5, arbitrary: sioPacket.map((p) => [`4${p}`] as (string | Uint8Array)[]) },
    {
      weight: 2,
      arbitrary: fc
        .tuple(sioPacket, fc.array(fc.uint8Array({ maxLength: 32 }), { maxLength: 3 }))
        .map(([p, bins]) => [`4${p}`, ...bins]),
    },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((b) => [b]) },
  ),
  { minLength: 1, maxLength: 6 },
);

/** Anything at the Engine.IO level: unknown packet types, pings from the client, junk. */
const engineFrames = fc.array(
  fc.oneof(
    fc
      .tuple(
        fc.constantFrom("", "0", "1", "2", "3", "5", "6", "7", "9", "b", "4"),
        fc.oneof(fc.string(), fc.string16bits(), fc.constantFrom("probe", "0{}", "40", "41")),
      )
      .map(([t, rest]) => t + rest),
    fc.uint8Array({ maxLength: 64 }),
  ),
  { minLength: 1, maxLength: 6 },
);

let probeId = 900_000_000;
const auth = () => ({ username: `fuzz${++sessions}`, room: "fuzz" });

// ---- the tests -----------------------------------------------------------------------------

before(async () => {
  // The rate limits are lifted so that every generated frame reaches the guard and the
  // handlers (the limits have tests of their own).
  service = await startService([], {
    WEIGOT_WS_MESSAGE_RATE: "0",
    WEIGOT_WS_USER_MESSAGE_RATE: "0",
    WEIGOT_WS_STATE_RATE: "0",
    WEIGOT_WS_QUERY_RATE: "0",
    WEIGOT_WS_MAX_REFUSALS: "0",
  });
  pidsAtStart = await workerPids();
  assert.equal(pidsAtStart.length, 2);
  const a = await ChatClient.connect(service.url, { username: "bystander-a", room: "by" });
  const b = await ChatClient.connect(
    service.url,
    { username: "bystander-b", room: "by" },
    { transports: ["polling"] },
  );
  bystanders = [a, b];
});

after(async () => {
  for (const c of bystanders ?? []) c.close();
  await service?.stop();
});

describe("frames no client should send", { timeout: 120_000 }, () => {
  const pool = new ClientPool();
  const raw: (RawWsSession | RawPollingSession)[] = [];
  afterEach(async () => {
    pool.closeAll();
    for (const s of raw.splice(0)) {
      if (s instanceof RawWsSession) s.close();
      else await s.close();
    }
  });

  const openWs = async () => {
    const s = await RawWsSession.open(service.url);
    raw.push(s);
    await s.connect(auth());
    return s;
  };
  const openPolling = async () => {
    const s = await RawPollingSession.open(service.url);
    raw.push(s);
    await s.connect(auth());
    return s;
  };

  /** The envelope in a `42["message",…]` push or a `43<id>[…]` ack. */
  const envelopeOf = (packet: string): Envelope | undefined => {
    const m = /^4(?:2|3\d+)(\[.*)$/s.exec(packet);
    if (!m) return undefined;
    const data = JSON.parse(m[1]) as unknown[];
    return (packet.startsWith("42") ? data[1] : data[0]) as Envelope;
  };
  const isBadFrame = (packet: string) =>
    envelopeOf(packet)?.data?.content?.error?.code === "E_BAD_FRAME";

  it("the issue's repro: 50,000 arguments over WebSocket get E_BAD_FRAME; the worker lives", async () => {
    const s = await openWs();
    const args = Array(50_000).fill("1").join(",");
    for (const name of ["message", "info", "onlineList", "nope"]) {
      const from = s.texts.length;
      s.send(`42["${name}",${args}]`);
      const pushed = await s.waitFor(isBadFrame, `E_BAD_FRAME pushed for ${name}`, 5000, from);
      assert.match(envelopeOf(pushed)?.data.content.error?.message ?? "", /arguments/);
      const id = ++probeId;
      s.send(`42${id}["${name}",${args}]`);
      const acked = await s.waitFor((t) => t.startsWith(`43${id}[`), `ack ${id}`, 5000, from);
      assert.ok(isBadFrame(acked), acked.slice(0, 200));
    }
    // Still open, still served.
    const id = ++probeId;
    s.send(`42${id}["info"]`);
    const info = await s.waitFor((t) => t.startsWith(`43${id}[`), "info after the repro");
    assert.equal(envelopeOf(info)?.action, 200);
    assert.deepEqual(await workerPids(), pidsAtStart);
  });

  it("the issue's repro: 50,000 arguments over polling get E_BAD_FRAME; the worker lives", async () => {
    const s = await openPolling();
    const args = Array(50_000).fill("1").join(",");
    const id = ++probeId;
    const from = s.packets.length;
    assert.equal((await s.post(`42["message",${args}]`)).status, 200);
    assert.equal((await s.post(`42${id}["info",${args}]`)).status, 200);
    await s.until(isBadFrame, "E_BAD_FRAME pushed", 5000, from);
    const acked = await s.until((p) => p.startsWith(`43${id}[`), `ack ${id}`, 5000, from);
    assert.ok(isBadFrame(acked), acked.slice(0, 200));
    // 200 refused packets in one POST: 20 answered, the rest counted in the next answer, so
    // that a small request cannot make the server queue megabytes of replies.
    const many = Array.from({ length: 200 }, () => `42["message",${Array(50).fill(1).join(",")}]`);
    const before = s.packets.length;
    assert.equal((await s.post(many)).status, 200);
    const probe = ++probeId;
    await s.post(`42${probe}["info"]`);
    const info = await s.until(
      (p) => p.startsWith(`43${probe}[`),
      "info after the flood",
      5000,
      before,
    );
    assert.equal(envelopeOf(info)?.action, 200);
    assert.equal(s.packets.slice(before).filter(isBadFrame).length, 20);
    const next = s.packets.length;
    await s.post("42junk");
    const counted = await s.until(isBadFrame, "the next refusal", 5000, next);
    assert.match(envelopeOf(counted)?.data.content.error?.message ?? "", /and 180 earlier/);
    // 127,000 valid packets fit in one 1.4 MB POST: 256 are taken, the rest refused undecoded.
    const flood = s.packets.length;
    assert.equal((await s.post(Array(127_000).fill('42["info"]'))).status, 200);
    const last = ++probeId;
    await s.post(`42${last}["info"]`);
    await s.until((p) => p.startsWith(`43${last}[`), "info after 127,000 packets", 10_000, flood);
    const infos = s.packets.slice(flood).filter((p) => envelopeOf(p)?.action === 200);
    assert.equal(infos.length, 256 + 1);
    const refused = s.packets.slice(flood).filter(isBadFrame);
    assert.ok(refused.length >= 1 && refused.length <= 20, `${refused.length} refusals answered`);
    assert.match(
      envelopeOf(refused[0])?.data.content.error?.message ?? "",
      /more than 256 packets/,
    );
    assert.deepEqual(await workerPids(), pidsAtStart);
  });

  it("answers a refused packet with E_BAD_FRAME, to its ack or pushed, and keeps the connection", async () => {
    const s = await openWs();
    const cases: [string, RegExp][] = [
      ["42junk", /malformed/],
      ['42["message"', /malformed/],
      ['42[7,{"type":"text"}]', /event name/],
      [`42["${"e".repeat(65)}"]`, /event name/],
      [`42["message",${"[".repeat(100)}${"]".repeat(100)}]`, /nested/],
      ['44{"message":"x"}', /packet type 4/],
      ['4299999999999999999999["info"]', /ack id/],
      ['42/admin,["info"]', /namespace/],
      ['453-["message",{}]', /attachments/],
      ['40{"username":"again"}', /already connected/],
      ["40{junk", /already connected/],
    ];
    for (const [frame, reason] of cases) {
      const from = s.texts.length;
      s.send(frame);
      const got = await s.waitFor(isBadFrame, `E_BAD_FRAME for ${frame.slice(0, 40)}`, 5000, from);
      assert.match(envelopeOf(got)?.data.content.error?.message ?? "", reason, frame);
      assert.equal(envelopeOf(got)?.action, 100);
    }
    // With an ack id the reply goes to the ack.
    const id = ++probeId;
    s.send(`42${id}["message",1,2,3,4,5]`);
    const acked = await s.waitFor((t) => t.startsWith(`43${id}[`), "E_BAD_FRAME to the ack");
    assert.ok(isBadFrame(acked));
    // A binary attachment nobody announced.
    const from = s.texts.length;
    s.send(Buffer.from([1, 2, 3]));
    await s.waitFor(isBadFrame, "E_BAD_FRAME for a stray attachment", 5000, from);
    // Still open: a chat message goes through.
    const sent = s.texts.length;
    s.send('42["message",{"type":"text","content":{"message":"still here"}}]');
    await s.waitFor(
      (t) => t.includes('"still here"') && t.includes('"action":300'),
      "own 300",
      5000,
      sent,
    );
    assert.equal(s.closed, false);
  });

  it("refuses an oversized handshake with a coded connect_error, not a silent close", async () => {
    const s = await RawWsSession.open(service.url);
    raw.push(s);
    s.send(`40{"username":"deep","x":${"[".repeat(100)}${"]".repeat(100)}}`);
    const refused = await s.waitFor((t) => t.startsWith("44"), "connect_error");
    assert.equal(
      (JSON.parse(refused.slice(2)) as { data: { code: string } }).data.code,
      "E_BAD_FRAME",
    );
    // The same connection may try again.
    await s.connect({ username: "deep" });
  });

  it("socket.io-client: too many arguments or attachments get E_BAD_FRAME to the ack", async () => {
    const c = await pool.connect(service.url, auth(), { transports: ["websocket"] });
    const ask = (...args: unknown[]) =>
      c.socket.timeout(5000).emitWithAck(...(args as [string])) as Promise<Envelope>;
    const tooMany = await ask("message", 1, 2, 3, 4, 5);
    assert.equal(tooMany.data.content.error?.code, "E_BAD_FRAME");
    const buffers = await ask("message", Buffer.from("a"), Buffer.from("b"), Buffer.from("c"));
    assert.equal(buffers.data.content.error?.code, "E_BAD_FRAME");
    const ok = await ask("info");
    assert.equal(ok.action, 200);
  });

  it("fuzz: generated Socket.IO packets over WebSocket never close the connection nor kill a worker", async () => {
    await check(
      fc.asyncProperty(wsFrames, async (frames) => {
        const s = await openWs();
        for (const group of frames) for (const f of group) s.send(f);
        const id = ++probeId;
        s.send(`42${id}["info"]`);
        await s.waitFor((t) => t.startsWith(`43${id}[`), "a reply to info after the frames", 5000);
        s.close();
      }),
      300,
    );
    assert.deepEqual(await workerPids(), pidsAtStart);
  });

  it("fuzz: generated Engine.IO junk over WebSocket kills no worker", async () => {
    await check(
      fc.asyncProperty(engineFrames, async (frames) => {
        const s = await openWs();
        for (const f of frames) s.send(f);
        // Whatever the engine made of it (it may close the session), a new session is served.
        const probe = await RawWsSession.open(service.url);
        probe.close();
        s.close();
      }),
      200,
    );
    assert.deepEqual(await workerPids(), pidsAtStart);
  });

  it("fuzz: generated payloads over HTTP long-polling (many packets per POST) kill no worker", async () => {
    const packet = fc.oneof(
      { weight: 4, arbitrary: sioPacket.map((p) => `4${p}`) },
      {
        weight: 1,
        arbitrary: fc
          .uint8Array({ maxLength: 32 })
          .map((b) => `b${Buffer.from(b).toString("base64")}`),
      },
    );
    const payload = fc.oneof(
      fc.array(packet, { minLength: 1, maxLength: 8 }),
      fc.tuple(packet, fc.integer({ min: 2, max: 3000 })).map(([p, n]) => Array<string>(n).fill(p)),
    );
    await check(
      fc.asyncProperty(payload, async (packets) => {
        const s = await openPolling();
        const res = await s.post(packets);
        // Over --max-frame-bytes (default 1.5 MB) a POST is refused by Engine.IO itself.
        const size = Buffer.byteLength(packets.join("\x1e"));
        assert.equal(
          res.status,
          size > 1_500_000 ? 413 : 200,
          `POST answered ${res.status} ${res.text}`,
        );
        const id = ++probeId;
        await s.post(`42${id}["info"]`);
        await s.until((p) => p.startsWith(`43${id}[`), "a reply to info after the payload", 5000);
        await s.close();
      }),
      60,
    );
    assert.deepEqual(await workerPids(), pidsAtStart);
  });

  it("fuzz: socket.io-client emits of generated events and arguments leave the connection served", async () => {
    const c = await pool.connect(service.url, auth(), { transports: ["websocket"] });
    const deep = fc.integer({ min: 1, max: 2000 }).map((d) => {
      let v: unknown = "leaf";
      for (let i = 0; i < d; i++) v = i % 2 ? [v] : { v };
      return v;
    });
    const arg = fc.oneof(
      fc.jsonValue({ maxDepth: 3 }),
      deep,
      fc.uint8Array({ maxLength: 16 }).map((b) => Buffer.from(b)),
      fc.constant({ type: "text", content: { message: "from the fuzzer" } }),
    );
    const args = fc.oneof(
      { weight: 5, arbitrary: fc.array(arg, { maxLength: 6 }) },
      { weight: 1, arbitrary: fc.constantFrom(100, 5000).map((n) => Array<number>(n).fill(1)) },
    );
    await check(
      fc.asyncProperty(eventName, args, fc.boolean(), async (name, list, withAck) => {
        try {
          // The handlers take their ack at a fixed place, so with extra arguments a reply may
          // be pushed instead, or (a delivered state) not come at all: what must hold is that
          // the connection is still served, in order.
          const emitted = [name, ...list] as [string, ...unknown[]];
          if (withAck) c.socket.emit(...emitted, () => {});
          else c.socket.emit(...emitted);
        } catch (err) {
          // socket.io-client itself refuses its reserved names ("connect", "disconnect", …), and
          // throws on a name it cannot even compare (an object whose toString is not a function):
          // thrown synchronously by emit, so nothing left the client. Raw frames (above) carry
          // such names to the server anyway.
          if (/reserved event name/.test(String(err))) return;
          if (err instanceof TypeError && typeof name === "object" && name !== null) return;
          throw err;
        }
        const info = await c.request("info");
        assert.equal(info.action, 200);
        assert.ok(c.connected, "still connected");
      }),
      300,
    );
    assert.deepEqual(await workerPids(), pidsAtStart);
  });

  it("afterwards: every worker pid is unchanged and the bystander pair still chats", async () => {
    assert.deepEqual(await workerPids(), pidsAtStart, "a worker was replaced");
    const [a, b] = bystanders;
    assert.ok(a.connected && b.connected, "the bystanders were never disconnected");
    assert.deepEqual(a.disconnects, []);
    assert.deepEqual(b.disconnects, []);
    const fromB = b.mark();
    a.send({ type: "text", content: { message: "still chatting" } });
    await b.waitFor(
      (e) => e.action === 300 && e.data.content.message === "still chatting",
      "a's message at b",
      5000,
      fromB,
    );
    const fromA = a.mark();
    b.send({ type: "text", content: { message: "me too" } });
    await a.waitFor(
      (e) => e.action === 300 && e.data.content.message === "me too",
      "b's message at a",
      5000,
      fromA,
    );
    assert.ok(
      !service.logs.some((l) => /Maximum call stack|uncaught|worker died/i.test(l)),
      "no crash in the logs",
    );
  });
});
