/**
 * fanout: one room (or, with `--rooms n`, n equal rooms with senders in each), N receivers spread
 * over the workers (and over 2 nodes in Redis mode; `--redis-topology cluster`: a 3-master Redis
 * Cluster), senders at stepped rates; the highest deliveries/s sustained with ≥ 99.9 % delivered
 * and p99 under the limit (100 ms by default).
 */

import { checkerNotes, checkerProblems, startCheckers } from "../lib/checker.js";
import type { CpuUse } from "../lib/procfs.js";
import { ScenarioReport } from "../lib/report.js";
import { Latency, round } from "../lib/stats.js";
import type { SystemName } from "../lib/systems.js";
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
  waitQuiet,
  withSystem,
} from "./common.js";

/** Target deliveries/s of each step. */
const STEPS_FULL = [
  10_000, 20_000, 30_000, 40_000, 50_000, 60_000, 80_000, 100_000, 120_000, 150_000, 200_000,
  250_000, 300_000,
];
const STEPS_QUICK = [10_000, 20_000, 40_000, 60_000, 80_000, 120_000];
/** Most messages per second one sender sends (keeps clear of per-user rate limits). */
const PER_SENDER_RATE = 2;
/** The step whose service CPU per delivery is compared (one every system sustains). */
const REFERENCE_STEP = 40_000;

export interface StepResult {
  target: number;
  messagesPerS: number;
  sent: number;
  expected: number;
  delivered: number;
  deliveredPct: number;
  deliveriesPerS: number;
  latency: ReturnType<Latency["summary"]>;
  cpu: CpuUse;
  /** Service CPU per delivery over the step and its drain (µs): what the guards' cost shows in. */
  cpuUsPerDelivery: number;
  serverErrors: number;
  pass: boolean;
}

export const fanout: Scenario = {
  name: "fanout",
  title: "one room, stepped send rates: highest sustained deliveries/s",
  async run(opts: BenchOptions): Promise<ScenarioReport> {
    const redis = opts.adapter === "redis";
    const receivers = opts.receivers ?? (opts.quick ? 500 : 2_000);
    const stepS = opts.stepSeconds ?? (opts.quick ? 3 : 10);
    const drainMs = opts.quick ? 1_000 : 2_000;
    const maxP99 = opts.maxP99 ?? 100;
    const steps = opts.quick ? STEPS_QUICK : STEPS_FULL;
    const workers = opts.workers ?? (redis ? 1 : 2);
    const nodes = redis ? 2 : 1;
    // Many rooms: equal rooms, an even number (each of the 2 agents holds whole rooms).
    const rooms = Math.max(1, Math.floor(opts.rooms ?? 1));
    const roomCount = rooms === 1 ? 1 : Math.ceil(rooms / 2) * 2;
    const roomSize = rooms === 1 ? receivers : Math.max(2, Math.floor(receivers / roomCount));
    const connections = rooms === 1 ? receivers : roomSize * roomCount;
    const where = [
      redis ? `Redis${opts.redisTopology === "cluster" ? " Cluster" : ""}, 2 nodes` : "",
      rooms > 1 ? `${roomCount} rooms of ${roomSize}` : "",
    ].filter((s) => s !== "");
    const report = new ScenarioReport(
      fanout.name,
      `${fanout.title}${where.length > 0 ? ` (${where.join(", ")})` : ""}`,
      opts.quick,
      {
        adapter: opts.adapter,
        nodes,
        workersPerNode: workers,
        receivers: connections,
        rooms: roomCount,
        roomSize,
        redisTopology: redis ? (opts.redisTopology ?? "single") : undefined,
        stepSeconds: stepS,
        drainMs,
        maxP99Ms: maxP99,
        stepsDeliveriesPerS: steps,
        perSenderRate: PER_SENDER_RATE,
        sustained: `≥ 99.9 % of (messages × receivers) delivered within the step + ${drainMs} ms, p99 ≤ ${maxP99} ms`,
      },
    );
    report.metric(
      "best",
      "highest sustained deliveries/s",
      "/s",
      0,
      { op: ">=", value: 40_000 },
      { op: ">=", value: 0.9, ofRatio: true },
    );
    report.metric("msgs", "messages/s at that rate", "/s", 1);
    report.metric("p50", "latency p50 at that rate", "ms", 2);
    report.metric("p99", "latency p99 at that rate", "ms", 2, { op: "<", value: 100 });
    report.metric("delivered", "delivered at that rate", "%", 3);
    declareLost(report);
    report.metric("firstFail", "first step not sustained", "deliveries/s", 0);
    report.metric("cpuService", "service CPU at that rate", "% of a core", 0);
    report.metric("cpuBusiest", "busiest service process CPU at that rate", "% of a core", 0);
    report.metric("cpuGen", "load generator CPU at that rate", "% of a core", 0);
    report.metric("cpuOther", "other CPU on the machine at that rate", "% of a core", 0);
    report.metric("cpuPerDelivery", "service CPU per delivery at that rate", "µs", 2);
    report.metric(
      "cpuRef",
      `service CPU per delivery at the ${fmtInt(REFERENCE_STEP)}/s step`,
      "µs",
      2,
    );
    report.metric("p99Ref", `latency p99 at the ${fmtInt(REFERENCE_STEP)}/s step`, "ms", 2);

    for (const system of opts.systems) {
      await withSystem(
        report,
        system,
        { adapter: opts.adapter, nodes, workers, redisTopology: opts.redisTopology },
        async (dep, redis) => {
          const pool = new AgentPool(2);
          try {
            const c = await connectAll(pool, `${system} receivers`, {
              group: "f",
              urls: dep.urls,
              count: connections,
              rate: 1_000,
              room: "fanout",
              roomSize: rooms > 1 ? roomSize : undefined,
              usernamePrefix: "f",
            });
            if (c.failed > 0) {
              report.notes.push(
                `${system}: ${c.failed} of ${receivers} receivers failed to connect`,
              );
            }
            const checkerUrls = dep.urls.length > 1 ? dep.urls : [dep.urls[0], dep.urls[0]];
            // joining one big room is O(N²) presence traffic for weigot-ws: let it finish first
            await waitQuiet(pool, 1_000, 300_000);
            // Many rooms: the checkers watch the first (agent 0's room 0: connectAll's naming).
            const checkRoom = rooms > 1 ? "fanout-a0-0" : "fanout";
            const checkers = await startCheckers(system, checkerUrls, checkRoom, "check-");
            await waitQuiet(pool, 500, 60_000);
            await pool.collect(true, false);
            const cpu = cpuMeter(dep, pool, redis);
            const results: StepResult[] = [];
            let best: StepResult | undefined;
            let bestLatency: Latency | undefined;
            let firstLatency: Latency | undefined;
            let failures = 0;
            for (let s = 0; s < steps.length; s++) {
              const tag = s + 1;
              // Each message reaches its room: everyone (one room) or roomSize receivers.
              const reach = rooms > 1 ? roomSize : c.opened;
              const rate = steps[s] / reach;
              const senders = Math.max(
                rooms > 1 ? roomCount : 2,
                Math.ceil(rate / PER_SENDER_RATE),
              );
              progress(
                `${system}: step ${tag}/${steps.length}: ${fmtInt(steps[s])} deliveries/s (${rate.toFixed(1)} msg/s from ${senders} senders), ${stepS} s`,
              );
              cpu.begin();
              const sent = await Promise.all(
                pool.agents.map((a) =>
                  a.send({
                    group: "f",
                    senders: Math.ceil(senders / pool.agents.length),
                    rate: rate / pool.agents.length,
                    durationMs: stepS * 1000,
                    tag,
                    pad: 0,
                    stride: rooms > 1 ? roomSize : undefined,
                  }),
                ),
              );
              const totalSent = sent.reduce((x, r) => x + r.sent, 0);
              const expected = totalSent * reach;
              const count = async () => {
                const col = await pool.collect(false, false);
                let n = 0;
                for (const x of col) {
                  for (const [k, v] of Object.entries(x.deliveries)) {
                    if (Math.floor(Number(k.split(":")[0]) / 16) === tag) n += v.count;
                  }
                }
                return n;
              };
              const drainUntil = Date.now() + drainMs;
              while (Date.now() < drainUntil && (await count()) < expected) await sleep(50);
              const cpuUse = cpu.end();
              const col = await pool.collect(true, true);
              const lat = new Latency();
              let delivered = 0;
              let serverErrors = 0;
              for (const x of col) {
                serverErrors += x.serverErrors;
                if (x.lastServerError)
                  report.run(system).details = { lastServerError: x.lastServerError };
                for (const [k, v] of Object.entries(x.deliveries)) {
                  if (Math.floor(Number(k.split(":")[0]) / 16) !== tag) continue;
                  delivered += v.count;
                  if (v.samples) lat.add(v.samples);
                }
              }
              const summary = lat.summary();
              const pct = expected > 0 ? (100 * delivered) / expected : 0;
              const r: StepResult = {
                target: steps[s],
                messagesPerS: round(totalSent / stepS, 1),
                sent: totalSent,
                expected,
                delivered,
                deliveredPct: round(pct, 3),
                deliveriesPerS: Math.round(delivered / stepS),
                latency: summary,
                cpu: cpuUse,
                cpuUsPerDelivery:
                  delivered > 0 ? round((cpuUse.serviceMs * 1000) / delivered, 3) : 0,
                serverErrors,
                pass: pct >= 99.9 && summary.p99 <= maxP99,
              };
              results.push(r);
              firstLatency ??= lat;
              progress(
                `${system}: ${fmtInt(r.deliveriesPerS)} deliveries/s, ${r.deliveredPct}% delivered, p50 ${summary.p50.toFixed(1)} ms, p99 ${summary.p99.toFixed(1)} ms, ${fmtCpu(cpuUse)} → ${r.pass ? "sustained" : "NOT sustained"}`,
              );
              if (r.pass) {
                failures = 0;
                if (!best || r.deliveriesPerS > best.deliveriesPerS) {
                  best = r;
                  bestLatency = lat;
                }
              } else if (++failures >= (opts.quick ? 1 : 2)) break;
              await waitQuiet(pool, 300, 10_000);
              await pool.collect(true, false);
            }
            await reportLost(report, system, pool);
            const firstFail = results.find((r) => !r.pass);
            setBest(report, system, best, firstFail);
            const shown = best ?? results[0];
            const shownLatency = bestLatency ?? firstLatency;
            if (shown && shownLatency) {
              report.series.push({
                name: `${system} @ ${fmtInt(shown.deliveriesPerS)}/s${best ? "" : " (not sustained)"}`,
                system,
                points: shownLatency.curve(),
              });
            }
            report.notes.push(
              `${system} steps: ${results
                .map(
                  (r) =>
                    `${fmtInt(r.deliveriesPerS)}/s ${r.pass ? "✓" : "✗"} (${r.deliveredPct}%, p99 ${r.latency.p99.toFixed(1)} ms, CPU svc ${r.cpu.service}%/busiest ${r.cpu.busiest}%, ${r.cpuUsPerDelivery.toFixed(2)} µs/delivery, gen ${r.cpu.generator}%, other ${r.cpu.other}%)`,
                )
                .join("; ")}`,
            );
            const otherMax = Math.max(0, ...results.map((r) => r.cpu.other));
            if (otherMax > 30) {
              report.notes.push(
                `${system}: other programs used up to ${otherMax}% of a core during the steps: its figures are unreliable`,
              );
            }
            const errs = results.reduce((x, r) => x + r.serverErrors, 0);
            if (errs > 0) {
              const example = (report.run(system).details as { lastServerError?: string })
                ?.lastServerError;
              report.error(system, `${errs} server error envelopes received (e.g. ${example})`);
            }
            const ref = results.find((r) => r.target === REFERENCE_STEP);
            report.set("cpuRef", system, ref?.cpuUsPerDelivery ?? null);
            report.set("p99Ref", system, ref?.latency.p99 ?? null);
            for (const p of checkerProblems(checkers)) report.error(system, p);
            report.notes.push(...checkerNotes(checkers));
            for (const ch of checkers) {
              if (ch.messages === 0)
                report.error(system, `checker ${ch.username} received no message`);
              ch.close();
            }
            const prev = report.run(system).details as Record<string, unknown> | undefined;
            report.run(system).details = {
              ...prev,
              receiversConnected: c.opened,
              connectFailures: c.reasons,
              steps: results,
              checkers: checkers.map((ch) => ({ user: ch.username, messages: ch.messages })),
            };
            await pool.close();
          } finally {
            await pool.stop();
          }
        },
      );
    }
    report.notes.push(
      "latency = send time written in the message by the sending agent → receipt by the receiving agent (all on this machine)",
    );
    return report;
  },
};

function setBest(
  report: ScenarioReport,
  system: SystemName,
  best: StepResult | undefined,
  firstFail: StepResult | undefined,
): void {
  report.set("best", system, best?.deliveriesPerS ?? 0);
  report.set("msgs", system, best?.messagesPerS ?? null);
  report.set("p50", system, best?.latency.p50 ?? null);
  report.set("p99", system, best?.latency.p99 ?? null);
  report.set("delivered", system, best?.deliveredPct ?? null);
  report.set("firstFail", system, firstFail ? firstFail.target : "none");
  report.set("cpuService", system, best?.cpu.service ?? null);
  report.set("cpuBusiest", system, best?.cpu.busiest ?? null);
  report.set("cpuGen", system, best?.cpu.generator ?? null);
  report.set("cpuOther", system, best?.cpu.other ?? null);
  report.set("cpuPerDelivery", system, best?.cpuUsPerDelivery ?? null);
}
