/**
 * The fan-out measurement that `fanout` and `apps` share: receivers in one or more rooms (of one
 * or more namespaces), senders in each at stepped rates, a step sustained when ≥ 99.9 % of
 * (messages × room members) arrived within the step + the drain and p99 ≤ the limit.
 */

import { type Checker, checkerNotes, checkerProblems } from "../lib/checker.js";
import type { CpuUse } from "../lib/procfs.js";
import type { BenchRedis } from "../lib/redis.js";
import type { ScenarioReport, Target } from "../lib/report.js";
import { Latency, round } from "../lib/stats.js";
import type { Deployment, SystemName } from "../lib/systems.js";
import { fmtInt, progress, sleep } from "../lib/util.js";
import { AgentPool } from "../loadgen/pool.js";
import { connectAll, cpuMeter, declareLost, fmtCpu, reportLost, waitQuiet } from "./common.js";

/** Most messages per second one sender sends (keeps clear of per-user rate limits). */
export const PER_SENDER_RATE = 2;
/**
 * Most a sender may send when its room has too few members for PER_SENDER_RATE (the product's
 * per-connection limit is 20/4s, its per-user one 30/4s): steps that need more are not run.
 */
export const MAX_SENDER_RATE = 4;

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
  /** Run after the stop rule fired, for the CPU figures only (not a candidate for sustained). */
  afterStop?: boolean;
}

/** One room of receivers (one agent group), spread over the agents. */
export interface RoomLoad {
  /** The agents' group name of its sockets. */
  group: string;
  /** One URL per node: Engine.IO URLs (default namespace) or `http://host:port/<app>`. */
  urls: string[];
  room: string;
  receivers: number;
  usernamePrefix: string;
  /** Connects per second (all agents). @default 1_000 */
  connectRate?: number;
  /** A connect not answered by then failed. @default 20_000 (socket.io-client's) */
  connectTimeoutMs?: number;
}

export interface FanoutShape {
  rooms: RoomLoad[];
  /** Target deliveries/s of each step (over all rooms together). */
  steps: number[];
  stepSeconds: number;
  drainMs: number;
  maxP99Ms: number;
  /** Consecutive failed steps that end the run. */
  stopAfterFailures: number;
  /** The step whose service CPU per delivery and p99 are reported on their own rows. */
  referenceStep: number;
  /**
   * More steps whose service CPU per delivery gets a row (`cpuAt<step>`, declared by
   * `declareFanoutMetrics`). With any, the steps go on up to the highest of them (and the
   * reference step) after the stop rule fired, for these figures only: the sustained figures
   * count the steps before the stop. @default none
   */
  cpuSteps?: number[];
  /** Starts the payload checkers (after the receivers joined). */
  checkers: () => Promise<Checker[]>;
}

/** The figures a fan-out run sets (`best`'s targets differ per scenario). */
export function declareFanoutMetrics(
  report: ScenarioReport,
  referenceStep: number,
  targets: { best: Target[]; p99: Target[]; cpuRef?: Target[] },
  cpuSteps: number[] = [],
): void {
  report.metric("best", "highest sustained deliveries/s", "/s", 0, ...targets.best);
  report.metric("msgs", "messages/s at that rate", "/s", 1);
  report.metric("p50", "latency p50 at that rate", "ms", 2);
  report.metric("p99", "latency p99 at that rate", "ms", 2, ...targets.p99);
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
    `service CPU per delivery at the ${fmtInt(referenceStep)}/s step`,
    "µs",
    2,
    ...(targets.cpuRef ?? []),
  );
  report.metric("p99Ref", `latency p99 at the ${fmtInt(referenceStep)}/s step`, "ms", 2);
  for (const step of cpuSteps) {
    report.metric(
      `cpuAt${step}`,
      `service CPU per delivery at the ${fmtInt(step)}/s step`,
      "µs",
      2,
      ...(targets.cpuRef ?? []),
    );
  }
}

/** Connects the rooms' receivers, runs the steps, and sets the figures of `system`. */
export async function runFanoutSteps(
  report: ScenarioReport,
  system: SystemName,
  dep: Deployment,
  redis: BenchRedis | undefined,
  shape: FanoutShape,
): Promise<void> {
  const { steps, stepSeconds: stepS, drainMs, maxP99Ms: maxP99 } = shape;
  const pool = new AgentPool(2);
  try {
    const opened: number[] = [];
    const reasons: Record<string, number>[] = [];
    for (const room of shape.rooms) {
      const c = await connectAll(
        pool,
        `${system} receivers${shape.rooms.length > 1 ? ` (${room.group})` : ""}`,
        {
          group: room.group,
          urls: room.urls,
          count: room.receivers,
          rate: room.connectRate ?? 1_000,
          timeoutMs: room.connectTimeoutMs,
          room: room.room,
          usernamePrefix: room.usernamePrefix,
        },
      );
      if (c.failed > 0) {
        report.notes.push(
          `${system}: ${c.failed} of ${room.receivers} receivers${shape.rooms.length > 1 ? ` of ${room.group}` : ""} failed to connect`,
        );
      }
      opened.push(c.opened);
      reasons.push(c.reasons);
    }
    const totalOpened = opened.reduce((a, b) => a + b, 0);
    // joining one big room is O(N²) presence traffic for weigot-ws: let it finish first
    await waitQuiet(pool, 1_000, 300_000);
    const checkers = await shape.checkers();
    await waitQuiet(pool, 500, 60_000);
    await pool.collect(true, false);
    const cpu = cpuMeter(dep, pool, redis);
    const results: StepResult[] = [];
    let best: StepResult | undefined;
    let bestLatency: Latency | undefined;
    let firstLatency: Latency | undefined;
    let failures = 0;
    // past the stop rule, steps run only for the CPU figures (none counts as sustained)
    let stopped = false;
    const cpuSteps = shape.cpuSteps ?? [];
    const lastCpuStep = cpuSteps.length > 0 ? Math.max(shape.referenceStep, ...cpuSteps) : 0;
    const groups = shape.rooms.map((r) => r.group);
    for (let s = 0; s < steps.length; s++) {
      if (stopped && steps[s] > lastCpuStep) break;
      const tag = s + 1;
      // every room sends at the same rate: Σ rate × members = the step's deliveries/s
      const rate = steps[s] / totalOpened;
      const fewest = Math.min(...opened);
      if (rate / fewest > MAX_SENDER_RATE) {
        report.notes.push(
          `${system}: steps from ${fmtInt(steps[s])}/s not run: ${rate.toFixed(1)} msg/s per room from ${fewest} members is over ${MAX_SENDER_RATE} msg/s per sender (the per-connection limit is 20/4s)`,
        );
        break;
      }
      const senders = Math.max(2, Math.ceil(rate / PER_SENDER_RATE));
      const per = groups.length > 1 ? ` in each of ${groups.length} rooms` : "";
      progress(
        `${system}: step ${tag}/${steps.length}: ${fmtInt(steps[s])} deliveries/s (${rate.toFixed(1)} msg/s from ${senders} senders${per}), ${stepS} s`,
      );
      cpu.begin();
      const sent = await Promise.all(
        pool.agents.map((a) =>
          a.send({
            group: groups[0],
            groups: groups.length > 1 ? groups : undefined,
            senders: Math.ceil(senders / pool.agents.length),
            rate: (rate * groups.length) / pool.agents.length,
            durationMs: stepS * 1000,
            tag,
            pad: 0,
          }),
        ),
      );
      const totalSent = sent.reduce((x, r) => x + r.sent, 0);
      // each message reaches every receiver of its room (on every agent)
      const expected = groups.reduce(
        (x, _, g) => x + sent.reduce((y, r) => y + (r.sentByGroup[g] ?? 0), 0) * opened[g],
        0,
      );
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
        if (x.lastServerError) report.run(system).details = { lastServerError: x.lastServerError };
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
        cpuUsPerDelivery: delivered > 0 ? round((cpuUse.serviceMs * 1000) / delivered, 3) : 0,
        serverErrors,
        pass: pct >= 99.9 && summary.p99 <= maxP99,
        afterStop: stopped || undefined,
      };
      results.push(r);
      firstLatency ??= lat;
      progress(
        `${system}: ${fmtInt(r.deliveriesPerS)} deliveries/s, ${r.deliveredPct}% delivered, p50 ${summary.p50.toFixed(1)} ms, p99 ${summary.p99.toFixed(1)} ms, ${fmtCpu(cpuUse)} → ${r.pass ? "sustained" : "NOT sustained"}`,
      );
      if (stopped) {
        // measured for its CPU only
      } else if (r.pass) {
        failures = 0;
        if (!best || r.deliveriesPerS > best.deliveriesPerS) {
          best = r;
          bestLatency = lat;
        }
      } else if (++failures >= shape.stopAfterFailures) {
        if (steps[s] >= lastCpuStep) break;
        stopped = true;
      }
      await waitQuiet(pool, 300, 10_000);
      await pool.collect(true, false);
    }
    await reportLost(report, system, pool);
    const firstFail = results.find((r) => !r.pass && !r.afterStop);
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
            `${fmtInt(r.deliveriesPerS)}/s ${r.afterStop ? "(after the stop, CPU only)" : r.pass ? "✓" : "✗"} (${r.deliveredPct}%, p99 ${r.latency.p99.toFixed(1)} ms, CPU svc ${r.cpu.service}%/busiest ${r.cpu.busiest}%, ${r.cpuUsPerDelivery.toFixed(2)} µs/delivery, gen ${r.cpu.generator}%, other ${r.cpu.other}%)`,
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
      const example = (report.run(system).details as { lastServerError?: string })?.lastServerError;
      report.error(system, `${errs} server error envelopes received (e.g. ${example})`);
    }
    const ref = results.find((r) => r.target === shape.referenceStep);
    report.set("cpuRef", system, ref?.cpuUsPerDelivery ?? null);
    report.set("p99Ref", system, ref?.latency.p99 ?? null);
    for (const step of cpuSteps) {
      report.set(
        `cpuAt${step}`,
        system,
        results.find((r) => r.target === step)?.cpuUsPerDelivery ?? null,
      );
    }
    for (const p of checkerProblems(checkers)) report.error(system, p);
    report.notes.push(...checkerNotes(checkers));
    for (const ch of checkers) {
      if (ch.messages === 0) report.error(system, `checker ${ch.username} received no message`);
      ch.close();
    }
    const prev = report.run(system).details as Record<string, unknown> | undefined;
    report.run(system).details = {
      ...prev,
      receiversConnected: shape.rooms.length > 1 ? opened : opened[0],
      connectFailures: shape.rooms.length > 1 ? reasons : reasons[0],
      steps: results,
      checkers: checkers.map((ch) => ({ user: ch.username, messages: ch.messages })),
    };
    await pool.close();
  } finally {
    await pool.stop();
  }
}

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
