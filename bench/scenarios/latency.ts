/**
 * latency: rooms of 100 and 1,000 across 2 nodes sharing Redis, light load; same-node and
 * cross-node delivery latency.
 */

import { checkerNotes, checkerProblems, startCheckers } from "../lib/checker.js";
import { ScenarioReport } from "../lib/report.js";
import { Latency, round } from "../lib/stats.js";
import { progress, sleep } from "../lib/util.js";
import { AgentPool } from "../loadgen/pool.js";
import {
  type BenchOptions,
  connectAll,
  cpuMeter,
  declareLost,
  fmtCpu,
  lostConnections,
  reportErrorCodes,
  type Scenario,
  waitQuiet,
  withSystem,
} from "./common.js";

/** Room size → messages per second (light: a few thousand deliveries per second). */
const ROOMS: [size: number, rate: number, p99Target: number][] = [
  [100, 20, 15],
  [1_000, 5, 50],
];

export const latency: Scenario = {
  name: "latency",
  title: "delivery latency across 2 nodes (Redis), light load",
  async run(opts: BenchOptions): Promise<ScenarioReport> {
    const durS = opts.stepSeconds ?? (opts.quick ? 4 : 20);
    const workers = opts.workers ?? 1;
    const report = new ScenarioReport(latency.name, latency.title, opts.quick, {
      adapter: "redis",
      nodes: 2,
      workersPerNode: workers,
      secondsPerRoom: durS,
      rooms: ROOMS.map(([size, rate]) => ({
        size,
        messagesPerS: rate,
        deliveriesPerS: size * rate,
      })),
      sameNode: "sender and receiver connected to the same node; cross-node: through Redis",
    });
    for (const [size, , target] of ROOMS) {
      report.metric(`s50-${size}`, `room of ${size}: same-node p50`, "ms", 2);
      report.metric(`s99-${size}`, `room of ${size}: same-node p99`, "ms", 2, {
        op: "<",
        value: target,
      });
      report.metric(`c50-${size}`, `room of ${size}: cross-node p50`, "ms", 2);
      report.metric(`c99-${size}`, `room of ${size}: cross-node p99`, "ms", 2, {
        op: "<",
        value: target,
      });
      report.metric(`del-${size}`, `room of ${size}: delivered`, "%", 3);
    }
    report.metric("cpuService", "service CPU (room of 1,000)", "% of a core", 0);
    declareLost(report);

    for (const system of opts.systems) {
      await withSystem(
        report,
        system,
        { adapter: "redis", nodes: 2, workers, redisTopology: opts.redisTopology },
        async (dep, redis) => {
          const pool = new AgentPool(2);
          const details: Record<string, unknown> = {};
          let lost = 0;
          try {
            for (const [ri, [size, rate]] of ROOMS.entries()) {
              const room = `lat-${size}`;
              const c = await connectAll(pool, `${system} room of ${size}`, {
                group: room,
                urls: dep.urls,
                count: size,
                rate: 1_000,
                room,
                usernamePrefix: `l${size}-`,
              });
              if (c.failed > 0)
                report.notes.push(`${system}: ${c.failed} connects failed in room ${size}`);
              await waitQuiet(pool, 1_000, 300_000);
              const checkers = await startCheckers(system, dep.urls, room, `check${size}-`);
              await waitQuiet(pool, 500, 60_000);
              await pool.collect(true, false);
              progress(`${system}: room of ${size}, ${rate} msg/s for ${durS} s`);
              const cpu = cpuMeter(dep, pool, redis);
              cpu.begin();
              // 4 senders per agent: its sockets 0–3, two on each node; at most 2.5 msg/s each,
              // well under the per-connection limit (--message-rate 20/4s)
              const sent = await Promise.all(
                pool.agents.map((a) =>
                  a.send({
                    group: room,
                    senders: 4,
                    rate: rate / pool.agents.length,
                    durationMs: durS * 1000,
                    tag: ri,
                    pad: 0,
                  }),
                ),
              );
              await sleep(1_000);
              const cpuUse = cpu.end();
              const col = await pool.collect(true, true);
              const same = new Latency();
              const cross = new Latency();
              let delivered = 0;
              for (const x of col) {
                for (const [k, v] of Object.entries(x.deliveries)) {
                  const [t, receiverNode] = k.split(":").map(Number);
                  if (Math.floor(t / 16) !== ri) continue;
                  delivered += v.count;
                  if (!v.samples) continue;
                  (t % 16 === receiverNode ? same : cross).add(v.samples);
                }
              }
              const totalSent = sent.reduce((s, r) => s + r.sent, 0);
              const expected = totalSent * c.opened;
              const pct = expected > 0 ? (100 * delivered) / expected : 0;
              const ss = same.summary();
              const cs = cross.summary();
              report.set(`s50-${size}`, system, ss.p50);
              report.set(`s99-${size}`, system, ss.p99);
              report.set(`c50-${size}`, system, cs.p50);
              report.set(`c99-${size}`, system, cs.p99);
              report.set(`del-${size}`, system, round(pct, 3));
              if (size === 1_000) report.set("cpuService", system, cpuUse.service);
              report.series.push({ name: `${system} ${size} same`, system, points: same.curve() });
              report.series.push({
                name: `${system} ${size} cross`,
                system,
                points: cross.curve(),
              });
              progress(
                `${system}: room ${size}: same-node p50 ${ss.p50.toFixed(2)} / p99 ${ss.p99.toFixed(2)} ms, cross-node p50 ${cs.p50.toFixed(2)} / p99 ${cs.p99.toFixed(2)} ms, ${pct.toFixed(3)}% delivered, ${fmtCpu(cpuUse)}`,
              );
              details[`room${size}`] = {
                connected: c.opened,
                sent: totalSent,
                expected,
                delivered,
                sameNode: ss,
                crossNode: cs,
                cpu: cpuUse,
                checkers: checkers.map((ch) => ({ user: ch.username, messages: ch.messages })),
              };
              for (const p of checkerProblems(checkers)) report.error(system, p);
              report.notes.push(...checkerNotes(checkers));
              for (const ch of checkers) {
                if (ch.messages === 0)
                  report.error(system, `checker ${ch.username} got no message`);
                ch.close();
              }
              const gone = await lostConnections(pool);
              lost += gone.lost;
              reportErrorCodes(report, system, gone.errorCodes);
              await pool.close(room);
              await sleep(500);
            }
            report.set("lost", system, lost);
            report.run(system).details = details;
          } finally {
            await pool.stop();
          }
        },
      );
    }
    report.notes.push(
      "each node runs its workers behind its own primary; receivers alternate between the nodes; senders on both nodes",
    );
    return report;
  },
};
