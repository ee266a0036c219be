/**
 * /metrics against the real cluster (2 workers): one scrape from the primary holds the whole
 * node, each figure matches what the test did (summed over both workers), the text is valid
 * Prometheus exposition format, and the endpoint takes the admin key when one is set.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import type { Envelope } from "../src/chat/protocol.js";
import { type ChatClient, ClientPool, connectError } from "./support/chat-client.js";
import { type RedisServer, startRedisServer } from "./support/redis-server.js";
import {
  ROOT,
  SCRIPTED_RATES,
  type ServiceHandle,
  startService,
  waitUntil,
} from "./support/service.js";

const pool = new ClientPool();
afterEach(() => pool.closeAll());

/** One sample: metric name, labels, value. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"(,|$)/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);
const SUFFIXES = ["_bucket", "_sum", "_count", "_total", "_created", ""];

/**
 * A strict reader of the Prometheus text format (0.0.4): every line is a HELP, a TYPE before
 * its family's samples (once), or a sample of a declared family with well-formed labels and a
 * float value; no sample (name and labels) twice. Throws on the first bad line.
 */
function parseExposition(text: string): Sample[] {
  assert.ok(text.endsWith("\n"), "the exposition ends with a newline");
  const types = new Map<string, string>();
  const seen = new Set<string>();
  const samples: Sample[] = [];
  const lines = text.split("\n").slice(0, -1);
  for (const [i, line] of lines.entries()) {
    const where = `line ${i + 1}: ${JSON.stringify(line)}`;
    if (line === "") continue;
    if (line.startsWith("# HELP ")) {
      assert.match(line.split(" ")[2] ?? "", NAME, where);
      continue;
    }
    if (line.startsWith("# TYPE ")) {
      const [, , name, type, extra] = line.split(" ");
      assert.match(name ?? "", NAME, where);
      assert.ok(TYPES.has(type ?? "") && extra === undefined, where);
      assert.ok(!types.has(name), `${where}: TYPE twice`);
      types.set(name, type);
      continue;
    }
    assert.ok(!line.startsWith("#"), `${where}: unknown comment`);
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)( -?\d+)?$/.exec(line);
    assert.ok(m, where);
    const [, name, rawLabels, rawValue] = m;
    const family = SUFFIXES.map((s) =>
      name.endsWith(s) ? name.slice(0, name.length - s.length) : "",
    )
      .filter((f) => f !== "")
      .find((f) => types.has(f));
    assert.ok(family, `${where}: sample before its TYPE`);
    const labels: Record<string, string> = {};
    let rest = rawLabels ? rawLabels.slice(1, -1) : "";
    while (rest !== "") {
      const l = LABEL.exec(rest);
      assert.ok(l, `${where}: bad labels`);
      labels[l[1]] = l[2];
      rest = rest.slice(l[0].length);
    }
    const value = /^[+-]Inf$/.test(rawValue)
      ? rawValue.startsWith("-")
        ? -Infinity
        : Infinity
      : /^nan$/i.test(rawValue)
        ? Number.NaN
        : Number(rawValue);
    // prom-client writes "Nan" (a gauge with no sample yet, e.g. the primary's event-loop lag);
    // Prometheus reads NaN in any case (Go's ParseFloat).
    assert.ok(/^nan$/i.test(rawValue) || !Number.isNaN(value), `${where}: bad value`);
    const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    assert.ok(!seen.has(key), `${where}: sample twice`);
    seen.add(key);
    samples.push({ name, labels, value });
  }
  return samples;
}

/** The value of the sample with this name and exactly these labels (undefined if absent). */
function sampleValue(
  samples: Sample[],
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const want = JSON.stringify(Object.entries(labels).sort());
  return samples.find(
    (s) => s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === want,
  )?.value;
}

async function scrape(service: ServiceHandle, headers: Record<string, string> = {}) {
  const res = await fetch(`${service.url}/metrics`, { headers });
  const text = await res.text();
  return { res, text };
}

async function metrics(service: ServiceHandle, key?: string): Promise<Sample[]> {
  const { res, text } = await scrape(service, key ? { Authorization: `Bearer ${key}` } : {});
  assert.equal(res.status, 200, text);
  assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  return parseExposition(text);
}

const text = (message: string) => ({ type: "text", content: { message } });

describe("metrics, open (no admin key)", () => {
  let service: ServiceHandle;
  before(async () => {
    service = await startService([...SCRIPTED_RATES]);
  });
  after(() => service.stop());

  it("counts connections by transport, handshakes, messages and deliveries over both workers", async () => {
    const room = "metrics";
    const clients: ChatClient[] = [];
    for (let i = 0; i < 5; i++) {
      const transport = i < 3 ? "websocket" : "polling";
      clients.push(
        await pool.connect(service.url, { username: `m${i}`, room }, { transports: [transport] }),
      );
    }
    assert.equal(new Set(clients.map((c) => c.worker)).size, 2, "clients on both workers");

    let s = await metrics(service);
    assert.equal(
      sampleValue(s, "weigot_ws_connections", { transport: "websocket", app: "default" }),
      3,
    );
    assert.equal(
      sampleValue(s, "weigot_ws_connections", { transport: "polling", app: "default" }),
      2,
    );
    assert.equal(
      sampleValue(s, "weigot_ws_handshakes_total", { result: "accepted", app: "default" }),
      5,
    );
    assert.equal(sampleValue(s, "weigot_ws_handshake_seconds_count"), 5);
    assert.equal(sampleValue(s, "weigot_ws_handshake_seconds_bucket", { le: "+Inf" }), 5);
    assert.ok((sampleValue(s, "weigot_ws_handshake_seconds_sum") ?? 0) > 0);
    assert.equal(sampleValue(s, "weigot_ws_presence_users"), 5);
    assert.equal(sampleValue(s, "weigot_ws_presence_connections"), 5);
    // One room, with members on each of the two workers.
    assert.equal(sampleValue(s, "weigot_ws_rooms"), 2);
    assert.equal(sampleValue(s, "weigot_ws_backend_up", { backend: "cluster" }), 1);
    assert.equal(sampleValue(s, "weigot_ws_workers_scraped", { answered: "yes" }), 2);
    assert.equal(sampleValue(s, "weigot_ws_workers_scraped", { answered: "no" }), 0);

    // M = 4 messages, from clients on both workers: each reaches the 5 connections.
    const M = 4;
    for (let i = 0; i < M; i++) await clients[i].say(`hello ${i}`);
    for (const c of clients) {
      await c.until(() => c.all((e) => e.action === 300).length === M, "every message");
    }
    s = await metrics(service);
    assert.equal(
      sampleValue(s, "weigot_ws_messages_received_total", { type: "text", app: "default" }),
      M,
    );
    assert.equal(sampleValue(s, "weigot_ws_history_appends_total", { result: "ok" }), M);
    assert.equal(sampleValue(s, "weigot_ws_history_append_seconds_count"), M);
    assert.equal(sampleValue(s, "weigot_ws_messages_delivered_total"), M * clients.length);
    // Observed once per message on each worker with receivers: both have some.
    assert.equal(sampleValue(s, "weigot_ws_delivery_seconds_count"), M * 2);
    const buckets = s.filter((x) => x.name === "weigot_ws_delivery_seconds_bucket");
    assert.equal(buckets.find((b) => b.labels.le === "+Inf")?.value, M * 2);
    assert.ok(
      buckets.every((b, i) => i === 0 || b.value >= buckets[i - 1].value),
      "cumulative",
    );

    // `status` shows the same per worker.
    const status = JSON.parse(service.cli(["status", "--json"]).stdout) as {
      workers: { connections: number; historyAppends: number }[];
    };
    assert.equal(
      status.workers.reduce((n, w) => n + w.historyAppends, 0),
      M,
    );
    assert.equal(
      status.workers.reduce((n, w) => n + w.connections, 0),
      clients.length,
    );
    const human = service.cli(["status"]).stdout;
    assert.match(human, /\d+ connections, 0 rate-limited, \d+ history appends, rss [\d.]+ MB/);

    // Errors by code; a client going away leaves the gauges.
    const reply = (await clients[0].request("message", {
      type: "img",
      content: { message: "ftp://example.com/x.png" },
    })) as Envelope;
    assert.equal(reply.data.content.error?.code, "E_BAD_IMAGE");
    clients[4].close();
    await waitUntil(async () => {
      const now = await metrics(service);
      return sampleValue(now, "weigot_ws_connections", { transport: "polling", app: "default" }) ===
        1 && sampleValue(now, "weigot_ws_presence_connections") === 4
        ? now
        : undefined;
    }, "the polling client gone from the gauges");
    s = await metrics(service);
    assert.equal(sampleValue(s, "weigot_ws_errors_total", { code: "E_BAD_IMAGE" }), 1);
    // Rejected messages are not counted as received, stored or delivered.
    assert.equal(sampleValue(s, "weigot_ws_history_appends_total", { result: "ok" }), M);
  });

  it("has the default process metrics of the primary and of each worker, apart", async () => {
    const s = await metrics(service);
    const processes = new Set(
      s.filter((x) => x.name === "process_cpu_user_seconds_total").map((x) => x.labels.process),
    );
    assert.deepEqual([...processes].sort(), ["primary", "worker-1", "worker-2"]);
    for (const p of processes) {
      assert.ok((sampleValue(s, "process_resident_memory_bytes", { process: p }) ?? 0) > 1e6, p);
      assert.ok(sampleValue(s, "nodejs_eventloop_lag_seconds", { process: p }) !== undefined, p);
      assert.ok(sampleValue(s, "nodejs_heap_size_used_bytes", { process: p }) !== undefined, p);
    }
  });

  it("is open without an admin key, GET only, and not routed to a worker", async () => {
    const { res, text } = await scrape(service);
    assert.equal(res.status, 200);
    assert.match(text, /^# HELP /m);
    const post = await fetch(`${service.url}/metrics`, { method: "POST" });
    assert.equal(post.status, 405);
    await post.text();
    const query = await scrape(service);
    assert.equal(query.res.status, 200);
  });
});

describe("metrics, with an admin key and limits", () => {
  let service: ServiceHandle;
  const key = "metrics-admin-key-0123456789";
  before(async () => {
    service = await startService([
      "--admin-key",
      key,
      "--message-rate",
      "2/30s",
      "--max-refusals",
      "0",
      "--max-connections-per-user",
      "1",
    ]);
  });
  after(() => service.stop());

  it("asks for the admin key as a Bearer token", async () => {
    const attempts: Record<string, string>[] = [
      {},
      { Authorization: "Bearer nope" },
      { Authorization: `Basic ${key}` },
      { Authorization: `Bearer ${key}x` },
    ];
    for (const headers of attempts) {
      const { res, text } = await scrape(service, headers);
      assert.equal(res.status, 401, JSON.stringify(headers));
      assert.equal(res.headers.get("www-authenticate"), 'Bearer realm="metrics"');
      assert.doesNotMatch(text, /weigot_ws_/);
    }
    const s = await metrics(service, key);
    assert.ok(s.length > 0);
  });

  it("counts refused handshakes by code, in the primary and in the workers, and rate limits", async () => {
    const alice = await pool.connect(service.url, { username: "alice", room: "r" });
    // The ledger (primary) refuses a second connection of the user; a worker refuses a bad room.
    const second = await connectError(service.url, { username: "alice", room: "r" });
    assert.equal(second.code, "E_TOO_MANY_CONNECTIONS");
    const badRoom = await connectError(service.url, { username: "bob", room: "no spaces" });
    assert.equal(badRoom.code, "E_BAD_ROOM");
    // 2 messages per 30 s per connection: the third is refused.
    const replies: Envelope[] = [];
    for (let i = 0; i < 3; i++) replies.push(await alice.request("message", text(`m${i}`)));
    assert.deepEqual(
      replies.map((r) => r.data.content.error?.code ?? "ok"),
      ["ok", "ok", "E_RATE_LIMITED"],
    );
    const s = await metrics(service, key);
    assert.equal(
      sampleValue(s, "weigot_ws_handshakes_total", { result: "accepted", app: "default" }),
      1,
    );
    assert.equal(
      sampleValue(s, "weigot_ws_handshakes_total", { result: "E_TOO_MANY_CONNECTIONS" }),
      1,
    );
    assert.equal(
      sampleValue(s, "weigot_ws_handshakes_total", { result: "E_BAD_ROOM", app: "default" }),
      1,
    );
    assert.equal(
      sampleValue(s, "weigot_ws_rate_limited_total", { kind: "message", app: "default" }),
      1,
    );
    assert.equal(sampleValue(s, "weigot_ws_errors_total", { code: "E_RATE_LIMITED" }), 1);
    assert.equal(
      sampleValue(s, "weigot_ws_messages_received_total", { type: "text", app: "default" }),
      2,
    );
    // status --json's refusals say the same.
    const status = JSON.parse(service.cli(["status", "--json"]).stdout) as {
      refusals: Record<string, number>;
      sessionRefusals: Record<string, number>;
    };
    assert.equal(status.refusals.E_TOO_MANY_CONNECTIONS, 1);
    assert.equal(status.sessionRefusals.E_RATE_LIMITED, 1);
  });
});

describe("metrics, Redis mode", () => {
  let redis: RedisServer;
  let service: ServiceHandle;
  before(async () => {
    redis = await startRedisServer();
    service = await startService([
      "--adapter",
      "redis",
      "--redis-url",
      redis.url,
      ...SCRIPTED_RATES,
    ]);
  });
  after(async () => {
    await service?.stop();
    await redis?.stop();
  });

  it("has every metric the Grafana dashboard queries", async () => {
    const dashboard = readFileSync(path.join(ROOT, "deploy/grafana/weigot-ws.json"), "utf8");
    const used = new Set(dashboard.match(/\b(?:weigot_ws|process|nodejs)_[a-z0-9_]+/g));
    assert.ok(used.size >= 15, `${used.size} metrics in the dashboard`);
    // Families, declared by TYPE even before a labelled counter has its first sample.
    const { text: body } = await scrape(service);
    const families = new Set([...body.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]));
    for (const name of used) {
      const family = name.replace(/_(bucket|sum|count)$/, "");
      assert.ok(families.has(name) || families.has(family), `${name} is not in the scrape`);
    }
  });

  it("reports Redis up with its PING time, then down while it is stopped", async () => {
    const a = await pool.connect(service.url, { username: "ra", room: "redis" });
    await a.say("stored in redis");
    let s = await metrics(service);
    assert.equal(sampleValue(s, "weigot_ws_backend_up", { backend: "redis" }), 1);
    const ping = sampleValue(s, "weigot_ws_redis_ping_seconds") ?? -1;
    assert.ok(ping > 0 && ping < 1, `ping ${ping}`);
    assert.equal(sampleValue(s, "weigot_ws_history_append_seconds_count"), 1);
    assert.equal(sampleValue(s, "weigot_ws_presence_users"), 1);
    await redis.kill();
    s = await waitUntil(async () => {
      const now = await metrics(service);
      return sampleValue(now, "weigot_ws_backend_up", { backend: "redis" }) === 0 ? now : undefined;
    }, "backend_up 0 while Redis is down");
    assert.equal(sampleValue(s, "weigot_ws_redis_ping_seconds"), 10);
  });
});
