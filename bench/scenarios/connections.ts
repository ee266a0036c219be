/**
 * connections: ramp to the most concurrent connections one machine holds (2 workers) at
 * ≥ 1,000 connects/s; report the count, RSS per connection (whole service, after a settle
 * period) and the handshake latency.
 */

import { openFiles, rssBytes } from "../lib/procfs.js";
import { ScenarioReport } from "../lib/report.js";
import { Latency } from "../lib/stats.js";
import { fmtInt, progress, sleep } from "../lib/util.js";
import { AgentPool } from "../loadgen/pool.js";
import {
  type BenchOptions,
  connectAll,
  cpuMeter,
  declareLost,
  fmtCpu,
  reportLost,
  type Scenario,
  sustainedRate,
  withSystem,
} from "./common.js";

export const connections: Scenario = {
  name: "connections",
  title: "concurrent connections, memory and handshake time",
  async run(opts: BenchOptions): Promise<ScenarioReport> {
    const count = opts.connections ?? (opts.quick ? 3_000 : 38_000);
    const rate = opts.rate ?? 1_200;
    const settleMs = opts.quick ? 4_000 : 15_000;
    const roomSize = 50;
    const workers = opts.workers ?? 2;
    const report = new ScenarioReport(connections.name, connections.title, opts.quick, {
      connections: count,
      connectRate: rate,
      settleMs,
      roomSize,
      workers,
      adapter: "cluster",
      handshake:
        "ws connect → `40{sid}` (TCP + WebSocket upgrade + Engine.IO open + Socket.IO connect)",
    });
    report.metric("held", "connections held after settling", "", 0);
    report.metric("failed", "failed connects", "", 0, { op: "<=", value: 0 });
    declareLost(report);
    report.metric("beforeFailure", "connections before the first failure", "", 0, {
      op: ">=",
      value: count,
    });
    report.metric("rate", "connect rate sustained (10–90 % of the ramp)", "/s", 0, {
      op: ">=",
      value: 1_000,
    });
    report.metric("hs50", "handshake p50", "ms", 2);
    report.metric("hs99", "handshake p99", "ms", 2);
    report.metric("rssPerConn", "RSS per connection (Δ over idle)", "KB", 1, {
      op: "<=",
      value: 16,
    });
    report.metric("rssTotal", "service RSS with all connected", "MB", 0);
    report.metric("rssIdle", "service RSS idle", "MB", 0);
    report.metric("cpuService", "service CPU during ramp", "% of a core", 0);
    report.metric("cpuBusiest", "busiest service process CPU during ramp", "% of a core", 0);
    report.metric("cpuGen", "load generator CPU during ramp", "% of a core", 0);
    report.metric("cpuOther", "other CPU on the machine during ramp", "% of a core", 0);
    report.metric("cpuPerConnect", "service CPU per connect", "ms", 3);

    for (const system of opts.systems) {
      await withSystem(
        report,
        system,
        { adapter: "cluster", nodes: 1, workers },
        async (dep, redis) => {
          const pool = AgentPool.forSockets(count);
          try {
            await sleep(2_000);
            const idle = dep.rss().total;
            const cpu = cpuMeter(dep, pool, redis);
            cpu.begin();
            const c = await connectAll(pool, `${system} connections`, {
              group: "c",
              urls: dep.urls,
              count,
              rate,
              room: "conn",
              roomSize,
              usernamePrefix: "c",
            });
            const cpuUse = cpu.end();
            const hs = new Latency();
            for (const r of c.results) hs.add(r.handshakeUs);
            const firstFailure = Math.min(...c.results.flatMap((r) => Array.from(r.failedAtMs)));
            const beforeFailure = Number.isFinite(firstFailure)
              ? c.results.reduce((s, r) => s + r.doneAtMs.filter((t) => t < firstFailure).length, 0)
              : c.opened;
            progress(
              `${system}: ${fmtInt(c.opened)} open, ${c.failed} failed, ${fmtCpu(cpuUse)}; settling ${settleMs} ms`,
            );
            await sleep(settleMs);
            const rss = dep.rss();
            const collected = await pool.collect(false, false);
            const held = collected.reduce((s, x) => s + x.open, 0);
            await reportLost(report, system, pool);
            const fds = Object.fromEntries(dep.pids().map((p) => [p, openFiles(p)]));
            const perConn = held > 0 ? (rss.total - idle) / held / 1024 : Number.NaN;
            report.set("held", system, held);
            report.set("failed", system, c.failed);
            report.set("beforeFailure", system, beforeFailure);
            report.set("rate", system, sustainedRate(c.results.map((r) => r.doneAtMs)));
            report.set("hs50", system, hs.ms(50));
            report.set("hs99", system, hs.ms(99));
            report.set("rssPerConn", system, perConn);
            report.set("rssTotal", system, rss.total / 2 ** 20);
            report.set("rssIdle", system, idle / 2 ** 20);
            report.set("cpuService", system, cpuUse.service);
            report.set("cpuBusiest", system, cpuUse.busiest);
            report.set("cpuGen", system, cpuUse.generator);
            report.set("cpuOther", system, cpuUse.other);
            report.set("cpuPerConnect", system, c.opened > 0 ? cpuUse.serviceMs / c.opened : null);
            report.series.push({ name: `${system} handshake`, system, points: hs.curve() });
            report.run(system).details = {
              opened: c.opened,
              failed: c.failed,
              failureReasons: c.reasons,
              rampMs: c.elapsedMs,
              handshake: hs.summary(),
              rssIdleBytes: idle,
              rssBytesPerProcess: rss.perProcess,
              openFilesPerProcess: fds,
              lostAfterConnect: collected.reduce((s, x) => s + x.disconnects, 0),
              generatorRssBytes: pool.pids.map(rssBytes),
              cpu: cpuUse,
              agents: pool.agents.length,
            };
            if (c.failed > 0) {
              report.notes.push(
                `${system}: ${c.failed} failed connects (${Object.entries(c.reasons)
                  .map(([k, v]) => `${k}: ${v}`)
                  .join(", ")})`,
              );
            }
            await pool.close();
          } finally {
            await pool.stop();
          }
        },
      );
    }
    report.notes.push(
      `rooms of ${roomSize} users; RSS = Σ VmRSS of primary + workers after ${settleMs / 1000} s settle (no forced GC); per connection = (RSS − idle RSS) / connections held`,
    );
    report.notes.push("the load generator shares the machine's 2 cores with the service");
    return report;
  },
};
