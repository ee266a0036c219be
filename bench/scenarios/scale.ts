/**
 * scale: 100,000 concurrent connections on one machine (rooms of 10, presence on), then chat
 * messages into those rooms at a fixed rate. Enough workers that none passes the per-process
 * file limit, the load generator over enough agents (processes) and 127.0.0.x source addresses
 * that neither files nor ephemeral ports run out. Reports the connect rate, the handshake, the
 * memory per connection (RSS of every service process, as is and after a forced GC over each
 * process's inspector), open files per process, and the messages' delivery and latency.
 */

import { readFileSync } from "node:fs";
import { memoryAfterGc } from "../lib/inspector.js";
import { openFiles, rssBytes } from "../lib/procfs.js";
import { ScenarioReport } from "../lib/report.js";
import { Latency, round } from "../lib/stats.js";
import type { Deployment } from "../lib/systems.js";
import { fmtInt, progress, sleep } from "../lib/util.js";
import type { CollectResult } from "../loadgen/messages.js";
import { AgentPool, MAX_SOCKETS_PER_AGENT } from "../loadgen/pool.js";
import {
  type BenchOptions,
  connectAll,
  cpuMeter,
  declareLost,
  fmtCpu,
  reportLost,
  type Scenario,
  sustainedRate,
  waitQuiet,
  withSystem,
} from "./common.js";

const ROOM_SIZE = 10;
/** Most connections one worker is given (of the ~20,000 files a process may open here). */
const SHARE_OF_FILE_LIMIT = 0.8;
const MB = 2 ** 20;
/**
 * Connects in flight over all agents. The 2 cores, not the offered rate, set the connect rate
 * here (~2–5 ms of service CPU per connect): a bounded number in flight keeps each handshake's
 * wait (≈ in flight / rate) far below the 20 s connect timeout instead of queueing thousands.
 */
const IN_FLIGHT = 250;

/** The soft and hard limit on open files of this process (what its children inherit). */
export function fileLimit(): { soft: number; hard: number } {
  try {
    const line = readFileSync("/proc/self/limits", "utf8")
      .split("\n")
      .find((l) => l.startsWith("Max open files"));
    const [soft, hard] = (line ?? "")
      .split(/\s{2,}/)
      .slice(1, 3)
      .map(Number);
    if (soft > 0 && hard > 0) return { soft, hard };
  } catch {
    // not Linux
  }
  return { soft: 20_000, hard: 20_000 };
}

/** Summed memory of every service process after a forced GC (over their inspectors). */
async function memoryAfterGcAll(
  dep: Deployment,
): Promise<{ rss: number; heap: number; processes: number }> {
  let rss = 0;
  let heap = 0;
  let processes = 0;
  for (const node of dep.nodes) {
    const got = await Promise.all(
      node.inspectors.map((url) => memoryAfterGc(url, 120_000).catch(() => undefined)),
    );
    for (const m of got) {
      if (!m) continue;
      rss += m.rssBytes;
      heap += m.heapUsedBytes;
      processes++;
    }
  }
  return { rss, heap, processes };
}

export const scale: Scenario = {
  name: "scale",
  title: "100,000 connections (rooms of 10, presence on), then chat into those rooms",
  async run(opts: BenchOptions): Promise<ScenarioReport> {
    const count = opts.connections ?? (opts.quick ? 6_000 : 100_000);
    const rate = opts.rate ?? 2_000;
    const msgRate = 1_000;
    const sendS = opts.stepSeconds ?? (opts.quick ? 5 : 20);
    const settleMs = opts.quick ? 4_000 : 15_000;
    const limit = fileLimit();
    const perWorker = Math.floor(limit.soft * SHARE_OF_FILE_LIMIT);
    const workers = opts.workers ?? Math.max(2, Math.ceil(count / perWorker));
    const agentCap = Math.min(MAX_SOCKETS_PER_AGENT, perWorker);
    const agents = Math.max(2, Math.ceil(count / agentCap));
    const report = new ScenarioReport(scale.name, scale.title, opts.quick, {
      connections: count,
      connectRate: rate,
      roomSize: ROOM_SIZE,
      workers,
      agents,
      fileLimit: limit,
      messagesPerS: msgRate,
      sendSeconds: sendS,
      settleMs,
      inFlight: IN_FLIGHT,
      adapter: "cluster",
      memory:
        "Σ VmRSS of primary + workers; after GC = process.memoryUsage().rss after HeapProfiler.collectGarbage in every process",
    });
    report.metric("workers", "workers", "", 0);
    report.metric("held", "connections held after settling", "", 0, { op: ">=", value: count });
    report.metric("failed", "failed connects", "", 0, { op: "<=", value: 0 });
    declareLost(report);
    report.metric("rate", "connect rate sustained (10–90 % of the ramp)", "/s", 0, {
      op: ">=",
      value: 1,
      ofRatio: true,
    });
    report.metric("hs50", "handshake p50", "ms", 2);
    report.metric("hs99", "handshake p99", "ms", 2);
    report.metric("kbPerConnGc", "RSS per connection after GC (Δ over idle)", "KB", 1, {
      op: "<=",
      value: 0.75,
      ofRatio: true,
    });
    report.metric("heapPerConn", "heap used per connection after GC (Δ over idle)", "KB", 2);
    report.metric("kbPerConn", "RSS per connection, no GC (Δ over idle)", "KB", 1);
    report.metric("rssGc", "service RSS after GC, all connected", "MB", 0);
    report.metric("rssIdle", "service RSS after GC, idle", "MB", 0);
    report.metric("filesMax", "most open files in one service process", "", 0, {
      op: "<",
      value: limit.soft,
    });
    report.metric("cpuService", "service CPU during ramp", "% of a core", 0);
    report.metric("cpuGen", "load generator CPU during ramp", "% of a core", 0);
    report.metric("cpuOther", "other CPU on the machine during ramp", "% of a core", 0);
    report.metric("cpuPerConnect", "service CPU per connect", "ms", 3);
    report.metric("msgs", "chat messages/s sent into the rooms", "/s", 0);
    report.metric("deliveries", "deliveries/s", "/s", 0);
    report.metric("delivered", "delivered", "%", 3, { op: ">=", value: 99.9 });
    report.metric("p50", "message latency p50", "ms", 2);
    report.metric("p99", "message latency p99", "ms", 2, { op: "<", value: 100 });
    report.metric("cpuServiceMsgs", "service CPU while sending", "% of a core", 0);
    report.metric("cpuGenMsgs", "load generator CPU while sending", "% of a core", 0);

    for (const system of opts.systems) {
      await withSystem(
        report,
        system,
        { adapter: "cluster", nodes: 1, workers, inspect: process.env.BENCH_NO_INSPECT !== "1" },
        async (dep, redis) => {
          const pool = new AgentPool(agents);
          try {
            await sleep(2_000);
            const idle = await memoryAfterGcAll(dep);
            const idleRss = dep.rss().total;
            const cpu = cpuMeter(dep, pool, redis);
            cpu.begin();
            const c = await connectAll(pool, `${system} scale`, {
              group: "s",
              urls: dep.urls,
              count,
              rate,
              room: "scale",
              roomSize: ROOM_SIZE,
              usernamePrefix: "s",
              maxPending: Math.ceil(IN_FLIGHT / agents),
            });
            const cpuUse = cpu.end();
            const hs = new Latency();
            for (const r of c.results) hs.add(r.handshakeUs);
            progress(
              `${system}: ${fmtInt(c.opened)} open, ${c.failed} failed, ${fmtCpu(cpuUse)}; settling ${settleMs} ms`,
            );
            // the joins' presence traffic first, then a quiet settle
            await waitQuiet(pool, 1_000, 120_000);
            await sleep(settleMs);
            const files = Object.fromEntries(dep.pids().map((p) => [p, openFiles(p)]));
            const rss = dep.rss().total;
            const gc = await memoryAfterGcAll(dep);
            const held = (await pool.collect(false, false)).reduce((s, x) => s + x.open, 0);
            const per = (a: number, b: number) => (held > 0 ? (a - b) / held / 1024 : Number.NaN);
            report.set("workers", system, workers);
            report.set("held", system, held);
            report.set("failed", system, c.failed);
            report.set("rate", system, sustainedRate(c.results.map((r) => r.doneAtMs)));
            report.set("hs50", system, hs.ms(50));
            report.set("hs99", system, hs.ms(99));
            report.set("kbPerConnGc", system, per(gc.rss, idle.rss));
            report.set("heapPerConn", system, per(gc.heap, idle.heap));
            report.set("kbPerConn", system, per(rss, idleRss));
            report.set("rssGc", system, gc.rss / MB);
            report.set("rssIdle", system, idle.rss / MB);
            report.set("filesMax", system, Math.max(...Object.values(files)));
            report.set("cpuService", system, cpuUse.service);
            report.set("cpuGen", system, cpuUse.generator);
            report.set("cpuOther", system, cpuUse.other);
            report.set("cpuPerConnect", system, c.opened > 0 ? cpuUse.serviceMs / c.opened : null);
            report.series.push({ name: `${system} handshake`, system, points: hs.curve() });
            progress(
              `${system}: ${fmtInt(held)} held; RSS after GC ${fmtInt(gc.rss / MB)} MB (idle ${fmtInt(idle.rss / MB)}), ${round(per(gc.rss, idle.rss), 1)} KB/conn; most files ${Math.max(...Object.values(files))}`,
            );
            if (c.failed > 0) {
              report.notes.push(
                `${system}: ${c.failed} failed connects (${Object.entries(c.reasons)
                  .map(([k, v]) => `${k}: ${v}`)
                  .join(", ")})`,
              );
            }

            // chat: one sender per room, msgRate in all, spread over the agents
            await pool.collect(true, false);
            const rooms = Math.ceil(count / ROOM_SIZE);
            progress(
              `${system}: ${fmtInt(msgRate)} msg/s into ${fmtInt(rooms)} rooms for ${sendS} s`,
            );
            cpu.begin();
            const sent = await Promise.all(
              pool.agents.map((a) =>
                a.send({
                  group: "s",
                  senders: rooms,
                  every: ROOM_SIZE,
                  rate: msgRate / pool.agents.length,
                  durationMs: sendS * 1000,
                  tag: 1,
                  pad: 0,
                }),
              ),
            );
            const totalSent = sent.reduce((x, r) => x + r.sent, 0);
            const expected = sent.reduce((x, r) => x + (r.roomReach ?? 0), 0);
            // delivery keys are `${tag * 16 + senderNode}:${receiverNode}` (tag 1, one node)
            const ours = (x: CollectResult) =>
              Object.entries(x.deliveries)
                .filter(([k]) => Math.floor(Number(k.split(":")[0]) / 16) === 1)
                .map(([, v]) => v);
            const count1 = async () => {
              let n = 0;
              for (const x of await pool.collect(false, false)) {
                for (const d of ours(x)) n += d.count;
              }
              return n;
            };
            const drainUntil = Date.now() + 3_000;
            while (Date.now() < drainUntil && (await count1()) < expected) await sleep(100);
            const cpuMsgs = cpu.end();
            const lat = new Latency();
            let delivered = 0;
            for (const x of await pool.collect(true, true)) {
              for (const d of ours(x)) {
                delivered += d.count;
                if (d.samples) lat.add(d.samples);
              }
            }
            report.set("msgs", system, totalSent / sendS);
            report.set("deliveries", system, delivered / sendS);
            report.set("delivered", system, expected > 0 ? (100 * delivered) / expected : null);
            report.set("p50", system, lat.ms(50));
            report.set("p99", system, lat.ms(99));
            report.set("cpuServiceMsgs", system, cpuMsgs.service);
            report.set("cpuGenMsgs", system, cpuMsgs.generator);
            report.series.push({ name: `${system} messages`, system, points: lat.curve() });
            progress(
              `${system}: ${fmtInt(totalSent)} sent, ${fmtInt(delivered)}/${fmtInt(expected)} delivered, p50 ${lat.ms(50).toFixed(1)} ms, p99 ${lat.ms(99).toFixed(1)} ms, ${fmtCpu(cpuMsgs)}`,
            );
            await reportLost(report, system, pool);
            report.run(system).details = {
              opened: c.opened,
              failed: c.failed,
              failureReasons: c.reasons,
              rampMs: c.elapsedMs,
              handshake: hs.summary(),
              memoryIdleAfterGc: idle,
              memoryAfterGc: gc,
              rssNoGcBytes: rss,
              rssIdleNoGcBytes: idleRss,
              openFilesPerProcess: files,
              generatorRssBytes: pool.pids.map(rssBytes),
              generatorOpenFiles: pool.pids.map(openFiles),
              cpuRamp: cpuUse,
              messages: {
                sent: totalSent,
                expected,
                delivered,
                latency: lat.summary(),
                cpu: cpuMsgs,
              },
            };
            await pool.close();
          } finally {
            await pool.stop();
          }
        },
      );
    }
    report.notes.push(
      `${fmtInt(count)} connections in rooms of ${ROOM_SIZE} offered at up to ${fmtInt(rate)} connects/s with at most ${fmtInt(IN_FLIGHT)} in flight, over ${agents} agents (4 source addresses each); ${workers} workers (open files: soft limit ${limit.soft}, hard ${limit.hard}: ≤ ${fmtInt(perWorker)} connections per worker); then ${fmtInt(msgRate)} msg/s for ${sendS} s, one sender per room`,
    );
    report.notes.push(
      "memory per connection = (Σ RSS of primary + workers − the same idle) / connections held; 'after GC' forces a full GC in every process first",
    );
    return report;
  },
};
