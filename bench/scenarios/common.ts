/** What every scenario shares: options, running one system at a time, progress lines. */

import { CpuMeter, type CpuUse } from "../lib/procfs.js";
import { type BenchRedis, startRedis } from "../lib/redis.js";
import type { ScenarioReport } from "../lib/report.js";
import { Deployment, type DeployOptions, SkipSystem, type SystemName } from "../lib/systems.js";
import { fmtInt, progress } from "../lib/util.js";
import type { AgentPool } from "../loadgen/pool.js";

export interface BenchOptions {
  quick: boolean;
  systems: SystemName[];
  /** Adapter for the scenarios that can use either (fanout, connections). */
  adapter: "cluster" | "redis";
  /** Redis mode: one Redis, or a 3-master Redis Cluster (latency, fanout). @default "single" */
  redisTopology?: "single" | "cluster";
  /** Workers per node: 2 with the cluster adapter; per node in Redis mode (2 nodes). */
  workers?: number;
  /** connections: how many to open. */
  connections?: number;
  /** connections: connects per second (all agents). */
  rate?: number;
  /** fanout: receivers in the room (in all rooms together with `rooms`). */
  receivers?: number;
  /** fanout: spread the receivers over this many rooms (senders in each). @default 1 */
  rooms?: number;
  /** fanout / latency: seconds each step sends for. */
  stepSeconds?: number;
  /** fanout: p99 (ms) a step must stay under to count as sustained. */
  maxP99?: number;
  /** presence: trials. */
  trials?: number;
  /** presence: users online for the onlineList trials. */
  onlineUsers?: number;
  /** soak: seconds of churn. */
  durationSeconds?: number;
}

export interface Scenario {
  name: string;
  title: string;
  /** The systems it measures without `--systems`. @default DEFAULT_SYSTEMS (weigot-ws, baseline) */
  defaultSystems?: SystemName[];
  run(opts: BenchOptions): Promise<ScenarioReport>;
}

/**
 * Starts a system (and a Redis of its own in Redis mode), runs `fn`, stops everything whatever
 * happens, and records the outcome in the report.
 */
export async function withSystem(
  report: ScenarioReport,
  system: SystemName,
  deploy: Omit<DeployOptions, "redisUrl" | "redisCluster">,
  fn: (dep: Deployment, redis?: BenchRedis) => Promise<void>,
): Promise<void> {
  const run = report.run(system);
  let redis: BenchRedis | undefined;
  let dep: Deployment | undefined;
  try {
    if (deploy.adapter === "redis") redis = await startRedis(deploy.redisTopology);
    dep = await Deployment.start(system, {
      ...deploy,
      redisUrl: redis?.url,
      redisCluster: redis?.seeds,
    });
    run.deployment = dep.describe;
    progress(`${report.scenario}: ${system} up (${dep.describe})`);
    await fn(dep, redis);
    const refused = await dep.refusals();
    if (Object.keys(refused).length > 0) {
      report.error(
        system,
        `the guards refused or dropped clients (service status and log): ${JSON.stringify(refused)}`,
      );
    }
    run.refusals = refused;
    const dead = dep.nodes.filter((n) => n.child.exitCode !== null || n.child.signalCode !== null);
    if (dead.length > 0) {
      throw new Error(
        `the service exited during the run:\n${dead.map((n) => n.output).join("\n")}`,
      );
    }
  } catch (err) {
    const e = err as Error;
    if (err instanceof SkipSystem) {
      run.status = "skipped";
      run.error = e.message;
      report.error(system, `skipped: ${e.message}`);
    } else {
      run.status = "failed";
      run.error = e.message.split("\n")[0];
      report.error(system, e.stack ?? e.message);
      const tail = dep?.nodes.map((n) => n.output.toString()).join("\n");
      if (tail) process.stderr.write(`  ! ${system} output:\n${tail}\n`);
    }
  } finally {
    await dep?.stop();
    await redis?.stop();
  }
}

/** Prints connect progress every 2 s while `work` runs. */
export async function withConnectProgress<T>(
  label: string,
  pool: AgentPool,
  group: string,
  total: number,
  rate: number,
  work: Promise<T>,
): Promise<T> {
  const t0 = Date.now();
  const timer = setInterval(() => {
    let opened = 0;
    let failed = 0;
    for (const a of pool.agents) {
      const p = a.progress.get(group);
      opened += p?.opened ?? 0;
      failed += p?.failed ?? 0;
    }
    const s = (Date.now() - t0) / 1000;
    const pace = opened > 0 ? Math.min(rate, opened / s) : rate;
    const left = Math.max(0, (total - opened - failed) / pace);
    progress(
      `${label}: ${fmtInt(opened)}/${fmtInt(total)} connections open, ${failed} failed, ${fmtInt(opened / s)}/s, ~${left.toFixed(0)} s left`,
    );
  }, 2000);
  try {
    return await work;
  } finally {
    clearInterval(timer);
  }
}

/** Opens `count` sockets in `room` over the pool's agents; returns totals and handshake samples. */
export async function connectAll(
  pool: AgentPool,
  label: string,
  args: {
    group: string;
    urls: string[];
    count: number;
    rate: number;
    room: string;
    roomSize?: number;
    usernamePrefix: string;
    /** socket.io-client's default connect timeout. @default 20_000 */
    timeoutMs?: number;
    /** Connects in flight per agent. @default 1_000 */
    maxPending?: number;
    /** Stop starting connects after this many ms. @default none */
    budgetMs?: number;
  },
) {
  const split = pool.split(args.count);
  const n = pool.agents.length;
  const work = Promise.all(
    pool.agents.map((a, i) =>
      a.connect({
        group: args.group,
        urls: args.urls,
        count: split[i],
        rate: args.rate / n,
        localAddresses: pool.localAddresses(i),
        usernamePrefix: `${args.usernamePrefix}${i}-`,
        room: args.roomSize ? `${args.room}-a${i}` : args.room,
        roomSize: args.roomSize,
        timeoutMs: args.timeoutMs ?? 20_000,
        maxPending: args.maxPending ?? 1_000,
        budgetMs: args.budgetMs,
      }),
    ),
  );
  const results = await withConnectProgress(label, pool, args.group, args.count, args.rate, work);
  const opened = results.reduce((s, r) => s + r.opened, 0);
  const failed = results.reduce((s, r) => s + r.failed, 0);
  const notStarted = results.reduce((s, r) => s + r.notStarted, 0);
  const reasons: Record<string, number> = {};
  for (const r of results) {
    for (const [k, v] of Object.entries(r.reasons)) reasons[k] = (reasons[k] ?? 0) + v;
  }
  const elapsedMs = Math.max(...results.map((r) => r.elapsedMs));
  return { results, opened, failed, notStarted, reasons, elapsedMs };
}

/** Waits until no agent has received a frame for `quietMs` (or `maxMs` passed). */
export async function waitQuiet(pool: AgentPool, quietMs: number, maxMs: number): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    const c = await pool.collect(false, false);
    const last = Math.max(0, ...c.map((x) => x.lastFrameAtMs));
    if (Date.now() - last >= quietMs || Date.now() - t0 > maxMs) return Date.now() - t0;
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** CPU meter over the service, the agents, Redis (if any) and this harness process. */
export function cpuMeter(dep: Deployment, pool: AgentPool, redis?: BenchRedis): CpuMeter {
  return new CpuMeter(() => ({
    service: dep.pids(),
    generator: pool.pids,
    ...(redis ? { redis: redis.pids } : {}),
    harness: [process.pid],
  }));
}

/** "service 63% (busiest process 50%), generator 55%, redis 10%, other 3%" */
export function fmtCpu(u: CpuUse): string {
  const parts = [
    `service ${u.service}% (busiest process ${u.busiest}%)`,
    `generator ${u.generator}%`,
  ];
  if (u.redis !== undefined) parts.push(`redis ${u.redis}%`);
  parts.push(`harness ${u.harness}%`, `other ${u.other}%`);
  return `CPU ${parts.join(", ")}`;
}

/** Connections lost after they were established, with their close codes, over all agents. */
export async function lostConnections(pool: AgentPool): Promise<{
  lost: number;
  codes: Record<string, number>;
  errorCodes: Record<string, number>;
}> {
  const codes: Record<string, number> = {};
  const errorCodes: Record<string, number> = {};
  let lost = 0;
  for (const c of await pool.collect(false, false)) {
    lost += c.disconnects;
    for (const [k, v] of Object.entries(c.closeCodes)) codes[k] = (codes[k] ?? 0) + v;
    for (const [k, v] of Object.entries(c.errorCodes)) errorCodes[k] = (errorCodes[k] ?? 0) + v;
  }
  return { lost, codes, errorCodes };
}

/**
 * An error of the run when the agents saw error codes (error envelopes, connect_error, refused
 * upgrades): a bench client is never meant to be refused, so a guard that fires is a finding.
 */
export function reportErrorCodes(
  report: ScenarioReport,
  system: SystemName,
  errorCodes: Record<string, number>,
): void {
  if (Object.keys(errorCodes).length === 0) return;
  report.error(system, `the load generator was refused: error codes ${JSON.stringify(errorCodes)}`);
}

/** Sets the `lost` metric (declare it with `declareLost`) and notes the close codes. */
export async function reportLost(
  report: ScenarioReport,
  system: SystemName,
  pool: AgentPool,
): Promise<number> {
  const { lost, codes, errorCodes } = await lostConnections(pool);
  reportErrorCodes(report, system, errorCodes);
  report.set("lost", system, lost);
  if (lost > 0)
    report.notes.push(
      `${system}: ${lost} connections lost after connecting (close codes ${JSON.stringify(codes)})`,
    );
  return lost;
}

export function declareLost(report: ScenarioReport): void {
  report.metric("lost", "connections lost after connecting", "", 0, { op: "<=", value: 0 });
}

/** Connects completed per second between 10 % and 90 % of them (the ramp without its ends). */
export function sustainedRate(doneAt: Float64Array[]): number {
  const all = doneAt.flatMap((d) => Array.from(d)).sort((a, b) => a - b);
  if (all.length < 10) return Number.NaN;
  const i10 = Math.floor(all.length * 0.1);
  const i90 = Math.floor(all.length * 0.9);
  const s = (all[i90] - all[i10]) / 1000;
  return s > 0 ? (i90 - i10) / s : Number.NaN;
}
