/**
 * apps (issue 11): "the fan-out scenario with 10 apps of 100-user rooms against one app of 1,000:
 * the namespace per app must not cost more than 5 % of deliveries/s". The fanout measurement on
 * each shape, in one run on the same machine:
 * - weigot-ws: the default app (`/`), one room of 1,000;
 * - weigot-ws-apps: started with 10 open apps (a0…a9), one room of 100 in each app's namespace;
 * - weigot-ws-rooms: the default app, 10 rooms of 100 — the control: the same messages/s as
 *   10 apps (a room of 100 needs 10× the messages of a room of 1,000 for the same deliveries/s),
 *   so 10 apps / 10 rooms is what the namespaces alone cost;
 * - baseline: bare socket.io, one room of 1,000.
 */

import { startCheckers } from "../lib/checker.js";
import { ScenarioReport } from "../lib/report.js";
import { BENCH_APP_IDS, type Deployment, type SystemName } from "../lib/systems.js";
import { fmtInt } from "../lib/util.js";
import { type BenchOptions, type Scenario, withSystem } from "./common.js";
import {
  declareFanoutMetrics,
  type FanoutShape,
  PER_SENDER_RATE,
  type RoomLoad,
  runFanoutSteps,
} from "./fanout-steps.js";

/**
 * Finer than fanout's ladder (10,000/s apart up to 100,000/s): the 5 % is finer still, so
 * the table also compares service CPU per delivery at the same step.
 */
const STEPS_FULL = [
  10_000, 20_000, 30_000, 40_000, 50_000, 60_000, 70_000, 80_000, 90_000, 100_000, 120_000, 140_000,
  160_000, 200_000, 250_000, 300_000,
];
const STEPS_QUICK = [
  10_000, 20_000, 30_000, 40_000, 50_000, 60_000, 70_000, 80_000, 100_000, 120_000,
];
const REFERENCE_STEP = 40_000;
/** Also compared at these steps, measured even after the stop rule (a busy machine fails early). */
const CPU_STEPS = [10_000, 20_000];
const SPLIT = BENCH_APP_IDS.length;
/**
 * Connects per second: each join into the room of 1,000 costs O(members) of presence (a 202 to
 * each, a 201 listing them), and at 1,000/s on a busy machine half of them timed out — leaving
 * a smaller room than the shapes being compared.
 */
const CONNECT_RATE = 250;
/** Even at 250/s, 20–26 % of them timed out after 20 s while other programs held the CPUs. */
const CONNECT_TIMEOUT_MS = 60_000;

export const apps: Scenario = {
  name: "apps",
  title: "fan-out in 10 apps of 100 against 1 app of 1,000: what a namespace per app costs",
  defaultSystems: ["weigot-ws", "weigot-ws-apps", "weigot-ws-rooms", "baseline"],
  async run(opts: BenchOptions): Promise<ScenarioReport> {
    const redis = opts.adapter === "redis";
    // the shape in both sizes: --quick only shortens the steps
    const perRoom = Math.max(1, Math.floor((opts.receivers ?? 1_000) / SPLIT));
    const receivers = perRoom * SPLIT;
    const stepS = opts.stepSeconds ?? (opts.quick ? 3 : 10);
    const drainMs = opts.quick ? 1_000 : 2_000;
    const maxP99 = opts.maxP99 ?? 100;
    const steps = opts.quick ? STEPS_QUICK : STEPS_FULL;
    const workers = opts.workers ?? (redis ? 1 : 2);
    const nodes = redis ? 2 : 1;
    const report = new ScenarioReport(
      apps.name,
      `${apps.title}${redis ? " (Redis, 2 nodes)" : ""}`,
      opts.quick,
      {
        adapter: opts.adapter,
        nodes,
        workersPerNode: workers,
        receivers,
        apps: BENCH_APP_IDS,
        receiversPerApp: perRoom,
        stepSeconds: stepS,
        drainMs,
        maxP99Ms: maxP99,
        stepsDeliveriesPerS: steps,
        perSenderRate: PER_SENDER_RATE,
        sustained: `≥ 99.9 % of (messages × room members) delivered within the step + ${drainMs} ms, p99 ≤ ${maxP99} ms`,
      },
    );
    const big = `1 × ${fmtInt(receivers)}`;
    const small = `${SPLIT} × ${fmtInt(perRoom)}`;
    Object.assign(report.labels, {
      "weigot-ws": `1 app, ${big}`,
      "weigot-ws-apps": `${SPLIT} apps, ${small}`,
      "weigot-ws-rooms": `1 app, ${small} rooms`,
      baseline: big,
    } satisfies Partial<Record<SystemName, string>>);
    report.metric("receivers", "receivers connected (all rooms)", "", 0);
    declareFanoutMetrics(
      report,
      REFERENCE_STEP,
      {
        best: [{ op: ">=", value: 0.95, ofVariant: "ratioApps" }],
        p99: [],
        // at most 5 % more service CPU per delivery at the same rate
        cpuRef: [{ op: "<=", value: 1.05, ofVariant: "ratioApps" }],
      },
      CPU_STEPS,
    );

    for (const system of opts.systems) {
      await withSystem(
        report,
        system,
        { adapter: opts.adapter, nodes, workers },
        async (dep, redis) => {
          const shape = shapeOf(system, dep, receivers, perRoom);
          for (const room of shape.rooms) {
            room.connectRate = CONNECT_RATE;
            room.connectTimeoutMs = CONNECT_TIMEOUT_MS;
          }
          await runFanoutSteps(report, system, dep, redis, {
            ...shape,
            steps,
            stepSeconds: stepS,
            drainMs,
            maxP99Ms: maxP99,
            stopAfterFailures: opts.quick ? 1 : 2,
            referenceStep: REFERENCE_STEP,
            cpuSteps: CPU_STEPS,
          });
          const details = report.run(system).details as { receiversConnected?: number | number[] };
          const connected = [details?.receiversConnected ?? 0].flat().reduce((a, b) => a + b, 0);
          report.set("receivers", system, connected);
          if (connected < receivers) {
            report.notes.push(
              `${system}: only ${fmtInt(connected)} of ${fmtInt(receivers)} receivers connected: its rooms are smaller than the other shapes', so its figures do not compare`,
            );
          }
        },
      );
    }
    report.notes.push(
      `${SPLIT} rooms of ${fmtInt(perRoom)} need ${SPLIT}× the messages/s of one room of ${fmtInt(receivers)} for the same deliveries/s: "10 apps / 10 rooms" (same messages/s, one namespace) is what the namespaces alone cost`,
      "latency = send time written in the message by the sending agent → receipt by the receiving agent (all on this machine)",
    );
    return report;
  },
};

/** The rooms each system is loaded with, and where its two payload checkers sit. */
function shapeOf(
  system: SystemName,
  dep: Deployment,
  receivers: number,
  perRoom: number,
): Pick<FanoutShape, "rooms" | "checkers"> {
  const last = (urls: string[]) => urls[urls.length - 1];
  if (system === "weigot-ws-apps") {
    const rooms: RoomLoad[] = BENCH_APP_IDS.map((id, i) => ({
      group: `f${i}`,
      urls: dep.appUrls(id),
      room: "fanout",
      receivers: perRoom,
      usernamePrefix: "f",
    }));
    // the first and the last app (on the first and the last node)
    const urls = [rooms[0].urls[0], last(rooms[rooms.length - 1].urls)];
    return { rooms, checkers: () => startCheckers(system, urls, "fanout", "check-") };
  }
  if (system === "weigot-ws-rooms") {
    const rooms: RoomLoad[] = BENCH_APP_IDS.map((_, i) => ({
      group: `f${i}`,
      urls: dep.urls,
      room: `fanout-${i}`,
      receivers: perRoom,
      usernamePrefix: `f${i}-`,
    }));
    const first = rooms[0];
    const lastRoom = rooms[rooms.length - 1];
    return {
      rooms,
      checkers: async () => [
        ...(await startCheckers(system, [first.urls[0]], first.room, "check-a")),
        ...(await startCheckers(system, [last(lastRoom.urls)], lastRoom.room, "check-b")),
      ],
    };
  }
  const urls = [dep.urls[0], last(dep.urls)];
  return {
    rooms: [{ group: "f", urls: dep.urls, room: "fanout", receivers, usernamePrefix: "f" }],
    checkers: () => startCheckers(system, urls, "fanout", "check-"),
  };
}
