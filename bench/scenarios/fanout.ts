/**
 * fanout: one room, N receivers spread over the workers (and over 2 nodes in Redis mode), senders
 * at stepped rates; the highest deliveries/s sustained with ≥ 99.9 % delivered and p99 under the
 * limit (100 ms by default).
 */

import { startCheckers } from "../lib/checker.js";
import { ScenarioReport } from "../lib/report.js";
import { type BenchOptions, type Scenario, withSystem } from "./common.js";
import { declareFanoutMetrics, PER_SENDER_RATE, runFanoutSteps } from "./fanout-steps.js";

/** Target deliveries/s of each step. */
const STEPS_FULL = [
  10_000, 20_000, 30_000, 40_000, 50_000, 60_000, 80_000, 100_000, 120_000, 150_000, 200_000,
  250_000, 300_000,
];
const STEPS_QUICK = [10_000, 20_000, 40_000, 60_000, 80_000, 120_000];
/** The step whose service CPU per delivery is compared (one every system sustains). */
const REFERENCE_STEP = 40_000;

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
    const report = new ScenarioReport(
      fanout.name,
      `${fanout.title}${redis ? " (Redis, 2 nodes)" : ""}`,
      opts.quick,
      {
        adapter: opts.adapter,
        nodes,
        workersPerNode: workers,
        receivers,
        stepSeconds: stepS,
        drainMs,
        maxP99Ms: maxP99,
        stepsDeliveriesPerS: steps,
        perSenderRate: PER_SENDER_RATE,
        sustained: `≥ 99.9 % of (messages × receivers) delivered within the step + ${drainMs} ms, p99 ≤ ${maxP99} ms`,
      },
    );
    declareFanoutMetrics(report, REFERENCE_STEP, {
      best: [
        { op: ">=", value: 40_000 },
        { op: ">=", value: 0.9, ofRatio: true },
      ],
      p99: [{ op: "<", value: 100 }],
    });

    for (const system of opts.systems) {
      await withSystem(
        report,
        system,
        { adapter: opts.adapter, nodes, workers },
        async (dep, redis) => {
          const checkerUrls = dep.urls.length > 1 ? dep.urls : [dep.urls[0], dep.urls[0]];
          await runFanoutSteps(report, system, dep, redis, {
            rooms: [
              {
                group: "f",
                urls: dep.urls,
                room: "fanout",
                receivers,
                usernamePrefix: "f",
              },
            ],
            steps,
            stepSeconds: stepS,
            drainMs,
            maxP99Ms: maxP99,
            stopAfterFailures: opts.quick ? 1 : 2,
            referenceStep: REFERENCE_STEP,
            checkers: () => startCheckers(system, checkerUrls, "fanout", "check-"),
          });
        },
      );
    }
    report.notes.push(
      "latency = send time written in the message by the sending agent → receipt by the receiving agent (all on this machine)",
    );
    return report;
  },
};
