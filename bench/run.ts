/**
 * The benchmark: `npm run bench [-- --scenario <name> --quick]`.
 * Starts each system as a user would, drives it with the load generator, stops everything,
 * prints a table per scenario (weigot-ws, baseline, ratio), and writes
 * bench/results/<date>-<scenario>.json (+ .svg latency chart). See bench/README.md.
 */
import os from "node:os";
import { parseArgs } from "node:util";
import { machineBusyMs } from "./lib/procfs.js";
import { machine, mergeRepeats, type ScenarioReport, table, writeResults } from "./lib/report.js";
import { DEFAULT_SYSTEMS, Deployment, SYSTEMS, type SystemName } from "./lib/systems.js";
import { repoRoot, sleep } from "./lib/util.js";
import { apps } from "./scenarios/apps.js";
import type { BenchOptions, Scenario } from "./scenarios/common.js";
import { connections } from "./scenarios/connections.js";
import { fanout } from "./scenarios/fanout.js";
import { latency } from "./scenarios/latency.js";
import { presence } from "./scenarios/presence.js";
import { scale } from "./scenarios/scale.js";
import { soak } from "./scenarios/soak.js";

const SCENARIOS: Scenario[] = [connections, fanout, apps, latency, presence, soak, scale];

const USAGE = `usage: npm run bench -- [--scenario connections|fanout|apps|latency|presence|soak|scale|all] [--quick]
  [--systems weigot-ws,weigot-ws-apps,weigot-ws-rooms,weigot-ws-unguarded,weigot-ws-nohistory,baseline]
  [--repeat n] [--adapter cluster|redis] [--redis-topology single|cluster]
  [--workers n] [--out-dir dir] [--connections n] [--rate n] [--receivers n] [--rooms n]
  [--step-seconds s] [--max-p99 ms] [--trials n] [--online-users n] [--duration s]
  --systems: default weigot-ws,baseline; apps: weigot-ws,weigot-ws-apps,weigot-ws-rooms,baseline
  --repeat n: run each scenario n times, the systems' order reversed every other time; the table
  shows the median (default 1)
  apps: fanout with 10 apps (a0…a9) of 100 receivers (weigot-ws-apps) against 1 app of 1,000
  (weigot-ws), 10 rooms of 100 in 1 app (weigot-ws-rooms) and bare socket.io (baseline);
  --receivers sets the total (default 1,000, also with --quick: quick shortens the steps)`;

function num(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`expected a number, got ${JSON.stringify(v)}`);
  return n;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      scenario: { type: "string", multiple: true },
      quick: { type: "boolean", default: false },
      systems: { type: "string" },
      repeat: { type: "string", default: "1" },
      adapter: { type: "string", default: "cluster" },
      "redis-topology": { type: "string", default: "single" },
      workers: { type: "string" },
      "out-dir": { type: "string", default: `${repoRoot}/bench/results` },
      connections: { type: "string" },
      rate: { type: "string" },
      receivers: { type: "string" },
      rooms: { type: "string" },
      "step-seconds": { type: "string" },
      "max-p99": { type: "string" },
      trials: { type: "string" },
      "online-users": { type: "string" },
      duration: { type: "string" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const names = (values.scenario ?? ["all"]).flatMap((s) => s.split(","));
  const chosen = names.includes("all")
    ? SCENARIOS
    : SCENARIOS.filter((s) => names.includes(s.name));
  const unknown = names.filter((n) => n !== "all" && !SCENARIOS.some((s) => s.name === n));
  if (unknown.length > 0 || chosen.length === 0) {
    console.error(`unknown scenario ${unknown.join(", ")}\n${USAGE}`);
    return 2;
  }
  const asked = values.systems?.split(",").map((s) => (s === "weigot" ? "weigot-ws" : s.trim()));
  const unknownSystems = (asked ?? []).filter((s) => !(SYSTEMS as string[]).includes(s));
  if (unknownSystems.length > 0) {
    console.error(`unknown system ${unknownSystems.join(", ")}\n${USAGE}`);
    return 2;
  }
  // without --systems each scenario measures its own default set
  const systemsOf = (s: Scenario) =>
    (asked as SystemName[] | undefined) ?? s.defaultSystems ?? DEFAULT_SYSTEMS;
  const repeat = num(values.repeat) ?? 1;
  if (!Number.isInteger(repeat) || repeat < 1) {
    console.error(`--repeat must be a whole number ≥ 1\n${USAGE}`);
    return 2;
  }
  if (values.adapter !== "cluster" && values.adapter !== "redis") {
    console.error(`--adapter must be cluster or redis\n${USAGE}`);
    return 2;
  }
  const topology = values["redis-topology"];
  if (topology !== "single" && topology !== "cluster") {
    console.error(`--redis-topology must be single or cluster\n${USAGE}`);
    return 2;
  }
  const opts: BenchOptions = {
    quick: values.quick,
    systems: DEFAULT_SYSTEMS,
    adapter: values.adapter,
    redisTopology: topology,
    workers: num(values.workers),
    connections: num(values.connections),
    rate: num(values.rate),
    receivers: num(values.receivers),
    rooms: num(values.rooms),
    stepSeconds: num(values["step-seconds"]),
    maxP99: num(values["max-p99"]),
    trials: num(values.trials),
    onlineUsers: num(values["online-users"]),
    durationSeconds: num(values.duration),
  };
  const m = machine();
  console.log(
    `# weigot-ws bench${opts.quick ? " (quick)" : ""}: ${m.cpus} × ${m.cpuModel}, ${m.memoryGiB} GiB, Node ${m.node}, ${m.kernel}`,
  );
  console.log(
    "(the load generator runs on the same machine and competes with the service for its CPUs)",
  );
  const busy0 = machineBusyMs();
  await sleep(2_000);
  const idleBusy = Math.round((machineBusyMs() - busy0) / 20);
  console.log(
    `machine CPU busy before the run: ${idleBusy}% of a core (load average ${os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(", ")})`,
  );
  if (idleBusy > 20) {
    console.log(
      "WARNING: other programs are using the CPUs: the figures below will be lower and noisier than on an idle machine",
    );
  }
  console.log("");
  const t0 = Date.now();
  const reports: ScenarioReport[] = [];
  let errors = 0;
  for (const scenario of chosen) {
    const runs: ScenarioReport[] = [];
    const systems = systemsOf(scenario);
    for (let i = 0; i < repeat; i++) {
      const round = repeat > 1 ? ` repeat ${i + 1}/${repeat}` : "";
      process.stderr.write(`▶ ${scenario.name}${opts.quick ? " (quick)" : ""}${round}\n`);
      // ABBA…: neither system always runs first (warm caches, a neighbour's load pattern)
      const order = i % 2 === 0 ? systems : [...systems].reverse();
      runs.push(await scenario.run({ ...opts, systems: order }));
    }
    const report = mergeRepeats(runs);
    report.finishedAt = new Date();
    reports.push(report);
    const files = writeResults(report, values["out-dir"]);
    console.log(table(report));
    console.log(`\nwritten: ${files.join(", ")}\n`);
    errors += report.errors.length;
  }
  console.log(`done in ${((Date.now() - t0) / 1000).toFixed(0)} s, ${errors} error(s)`);
  return errors > 0 ? 1 : 0;
}

// Interrupted: stop what was started (the services run detached; agents exit with this process).
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    process.stderr.write(`\n${signal}: stopping the services started by the bench…\n`);
    Deployment.stopAll().finally(() => process.exit(130));
  });
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    console.error(err);
    process.exitCode = 1;
  },
);
