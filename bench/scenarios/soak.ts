/**
 * soak: N clients churning — each reconnects every `cycle` seconds (abrupt close, a new
 * connection with the same user name into the same room of 25, three chat messages within the
 * rate limits) — for minutes, while every service process's RSS and heap are sampled after a
 * forced full GC (over the inspector, bench/lib/inspector.ts). The figure is the slope over the
 * second half of the run: a process that keeps what it should free grows; "flat" is ≈ 0.
 */

import { memoryAfterGc } from "../lib/inspector.js";
import { ScenarioReport } from "../lib/report.js";
import { round } from "../lib/stats.js";
import type { Deployment } from "../lib/systems.js";
import { fmtInt, progress, sleep } from "../lib/util.js";
import { AgentPool } from "../loadgen/pool.js";
import {
  type BenchOptions,
  cpuMeter,
  declareLost,
  fmtCpu,
  reportLost,
  type Scenario,
  withSystem,
} from "./common.js";

/** One reading of one process. */
export interface SoakSample {
  /** Seconds since the churn started. */
  t: number;
  process: string;
  pid: number;
  rssMB: number;
  heapUsedMB: number;
  heapTotalMB: number;
  externalMB: number;
  /** The primary: messages queued per worker behind unacknowledged socket hand-offs. */
  handleQueues?: number[];
}

const MB = 2 ** 20;
/** Chat messages each client sends per connection (spread over the first 60 % of a cycle). */
const MESSAGES_PER_CONNECTION = 3;
const ROOM_SIZE = 25;

export const soak: Scenario = {
  name: "soak",
  title: "memory after GC under connect/disconnect churn",
  async run(opts: BenchOptions): Promise<ScenarioReport> {
    const clients = opts.connections ?? (opts.quick ? 2_000 : 5_000);
    const durationS = opts.durationSeconds ?? (opts.quick ? 120 : 600);
    // both sizes churn ~200 connects/s (each cohort spread over one second)
    const cycleS = opts.quick ? 10 : 25;
    const sampleS = 15;
    const workers = opts.workers ?? 2;
    const report = new ScenarioReport(soak.name, soak.title, opts.quick, {
      clients,
      durationS,
      reconnectEveryS: cycleS,
      messagesPerConnection: MESSAGES_PER_CONNECTION,
      roomSize: ROOM_SIZE,
      sampleEveryS: sampleS,
      workers,
      adapter: "cluster",
      memory:
        "process.memoryUsage() after HeapProfiler.collectGarbage over each process's inspector",
    });
    const names = ["primary", ...Array.from({ length: workers }, (_, i) => `worker ${i + 1}`)];
    for (const n of names) {
      const k = n.replace(" ", "");
      report.metric(`${k}RssEnd`, `${n}: RSS after GC at the end`, "MB", 1);
      report.metric(`${k}RssSlope`, `${n}: RSS slope, second half`, "MB/min", 2, {
        op: "<=",
        value: 1,
      });
      report.metric(`${k}HeapEnd`, `${n}: heap used after GC at the end`, "MB", 1);
      report.metric(`${k}HeapSlope`, `${n}: heap slope, second half`, "MB/min", 2, {
        op: "<=",
        value: 0.5,
      });
    }
    report.metric("queueMax", "primary: most messages queued behind socket hand-offs", "", 0);
    report.metric("queueEnd", "primary: messages queued behind socket hand-offs at the end", "", 0);
    report.metric("connects", "connects", "", 0);
    report.metric("connectRate", "connects per second", "/s", 0);
    report.metric("failed", "failed connects", "", 0, { op: "<=", value: 0 });
    declareLost(report);
    report.metric("sent", "chat messages sent", "", 0);
    report.metric("overruns", "reconnects late (previous cycle of the cohort unfinished)", "", 0);
    report.metric("cpuService", "service CPU", "% of a core", 0);
    report.metric("cpuOther", "other CPU on the machine", "% of a core", 0);

    for (const system of opts.systems) {
      await withSystem(
        report,
        system,
        { adapter: "cluster", nodes: 1, workers, inspect: true },
        async (dep, redis) => {
          const pool = AgentPool.forSockets(clients);
          const samples: SoakSample[] = [];
          const labels = new Map<number, string>();
          try {
            await sleep(2_000);
            const churn = new Churn(pool, dep, clients, cycleS);
            const cpu = cpuMeter(dep, pool, redis);
            cpu.begin();
            const t0 = Date.now();
            const sample = async () => {
              const t = round((Date.now() - t0) / 1000, 1);
              const got = await sampleMemory(dep, labels, t);
              samples.push(...got);
              progress(
                `${system} soak t=${t.toFixed(0)} s: ${got
                  .map(
                    (s) =>
                      `${s.process} rss ${s.rssMB.toFixed(1)} heap ${s.heapUsedMB.toFixed(1)} MB${s.handleQueues ? ` (hand-off queues ${s.handleQueues.join("/")})` : ""}`,
                  )
                  .join(", ")}; ${fmtInt(churn.connects)} connects, ${churn.failed} failed`,
              );
            };
            await sample();
            churn.start();
            while (Date.now() - t0 < durationS * 1000) {
              await sleep(Math.min(sampleS * 1000, t0 + durationS * 1000 - Date.now()));
              await sample();
              await pool.collect(true, false); // drop the agents' delivery counters
            }
            await churn.stop();
            const cpuUse = cpu.end();
            progress(`${system} soak: ${fmtCpu(cpuUse)}`);
            for (const n of names) {
              const k = n.replace(" ", "");
              const own = samples.filter((s) => s.process === n);
              const last = own.at(-1);
              report.set(`${k}RssEnd`, system, last?.rssMB ?? null);
              report.set(`${k}HeapEnd`, system, last?.heapUsedMB ?? null);
              report.set(`${k}RssSlope`, system, secondHalfSlope(own, durationS, "rssMB"));
              report.set(`${k}HeapSlope`, system, secondHalfSlope(own, durationS, "heapUsedMB"));
            }
            const queued = samples
              .filter((s) => s.handleQueues)
              .map((s) => (s.handleQueues ?? []).reduce((a, b) => a + b, 0));
            report.set("queueMax", system, queued.length > 0 ? Math.max(...queued) : null);
            report.set("queueEnd", system, queued.at(-1) ?? null);
            report.set("connects", system, churn.connects);
            report.set("connectRate", system, churn.connects / durationS);
            report.set("failed", system, churn.failed);
            report.set("sent", system, churn.sent);
            report.set("overruns", system, churn.overruns);
            report.set("cpuService", system, cpuUse.service);
            report.set("cpuOther", system, cpuUse.other);
            await reportLost(report, system, pool);
            if (churn.failed > 0) {
              report.notes.push(
                `${system}: ${churn.failed} failed connects (${JSON.stringify(churn.reasons)})`,
              );
            }
            report.run(system).details = {
              samples,
              connects: churn.connects,
              failed: churn.failed,
              failureReasons: churn.reasons,
              sent: churn.sent,
              overruns: churn.overruns,
              cpu: cpuUse,
            };
            await pool.close();
          } finally {
            await pool.stop();
          }
        },
      );
    }
    report.notes.push(
      `${fmtInt(clients)} clients in cohorts of ${fmtInt(clients / cycleS)}: each second one cohort is closed abruptly and reconnects (same user names, rooms of ${ROOM_SIZE}), ${MESSAGES_PER_CONNECTION} messages per connection; every ${sampleS} s each process is GC'd and measured; slope = least squares over the second half (MB/min); flat = |slope| within noise (target ≤ 1 MB/min RSS, ≤ 0.5 MB/min heap)`,
    );
    return report;
  },
};

/**
 * The churn: `cycleS` cohorts; every second the next cohort's sockets are closed (terminated,
 * as a dropped client) and the cohort reconnects and sends its messages.
 */
class Churn {
  connects = 0;
  failed = 0;
  sent = 0;
  overruns = 0;
  readonly reasons: Record<string, number> = {};
  private timer?: NodeJS.Timeout;
  private tick = 0;
  private readonly busy = new Map<number, Promise<void>>();

  constructor(
    private readonly pool: AgentPool,
    private readonly dep: Deployment,
    private readonly clients: number,
    private readonly cycleS: number,
  ) {}

  start(): void {
    this.timer = setInterval(() => this.next(), 1000);
    this.next();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await Promise.all(this.busy.values());
  }

  private next(): void {
    const k = this.tick++ % this.cycleS;
    if (this.busy.has(k)) {
      this.overruns++;
      return;
    }
    const run = this.cycle(k).finally(() => this.busy.delete(k));
    this.busy.set(k, run);
  }

  private async cycle(k: number): Promise<void> {
    const group = `k${k}`;
    const pool = this.pool;
    // cohort k's share of the clients, split over the agents
    const cohort =
      Math.floor(this.clients / this.cycleS) + (k < this.clients % this.cycleS ? 1 : 0);
    const split = pool.split(cohort);
    await Promise.all(pool.agents.map((a) => a.close(group)));
    const results = await Promise.all(
      pool.agents.map((a, i) =>
        a.connect({
          group,
          urls: this.dep.urls,
          count: split[i],
          rate: split[i] / 0.9, // the cohort connects within ~0.9 s, not in a burst
          localAddresses: pool.localAddresses(i),
          usernamePrefix: `s${k}-${i}-`,
          room: `soak-${k}-a${i}`,
          roomSize: ROOM_SIZE,
          timeoutMs: 20_000,
          maxPending: 1_000,
        }),
      ),
    );
    for (const r of results) {
      this.connects += r.opened;
      this.failed += r.failed;
      for (const [why, n] of Object.entries(r.reasons))
        this.reasons[why] = (this.reasons[why] ?? 0) + n;
    }
    // each sender is picked round-robin: one message every ~2 s per client, well within 20/4s
    const sendMs = this.cycleS * 600;
    const sent = await Promise.all(
      pool.agents.map((a, i) =>
        a.send({
          group,
          // the connections that opened: fewer senders must not mean more messages each
          senders: results[i].opened,
          rate: (results[i].opened * MESSAGES_PER_CONNECTION * 1000) / sendMs,
          durationMs: sendMs,
          tag: 1,
          pad: 0,
        }),
      ),
    );
    for (const s of sent) this.sent += s.sent;
  }
}

/** Every service process after a forced GC; processes named primary, worker 1, worker 2, … */
async function sampleMemory(
  dep: Deployment,
  labels: Map<number, string>,
  t: number,
): Promise<SoakSample[]> {
  const out: SoakSample[] = [];
  for (const node of dep.nodes) {
    for (const url of node.inspectors) {
      let m: Awaited<ReturnType<typeof memoryAfterGc>>;
      try {
        m = await memoryAfterGc(url);
      } catch {
        continue; // a process that is gone (a worker replaced)
      }
      let label = labels.get(m.pid);
      if (!label) {
        const workersSeen = [...labels.values()].filter((l) => l !== "primary").length;
        label = m.pid === node.pid ? "primary" : `worker ${workersSeen + 1}`;
        labels.set(m.pid, label);
      }
      out.push({
        t,
        process: label,
        pid: m.pid,
        rssMB: round(m.rssBytes / MB, 2),
        heapUsedMB: round(m.heapUsedBytes / MB, 2),
        heapTotalMB: round(m.heapTotalBytes / MB, 2),
        externalMB: round(m.externalBytes / MB, 2),
        ...(m.handleQueues ? { handleQueues: m.handleQueues } : {}),
      });
    }
  }
  if (out.length === 0) throw new Error("no service process answered on its inspector");
  return out;
}

/** Least-squares slope (MB/min) of `field` over the samples in the second half of the run. */
export function secondHalfSlope(
  samples: SoakSample[],
  durationS: number,
  field: "rssMB" | "heapUsedMB",
): number | null {
  const pts = samples.filter((s) => s.t >= durationS / 2);
  if (pts.length < 2) return null;
  const n = pts.length;
  const mx = pts.reduce((a, s) => a + s.t, 0) / n;
  const my = pts.reduce((a, s) => a + s[field], 0) / n;
  let num = 0;
  let den = 0;
  for (const s of pts) {
    num += (s.t - mx) * (s[field] - my);
    den += (s.t - mx) ** 2;
  }
  return den > 0 ? round((num / den) * 60, 3) : null;
}
