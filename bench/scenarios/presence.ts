/**
 * presence (weigot-ws only; the baseline has none): time from a user's connect on node A until
 * observers on node B get 202, and from its disconnect until 203; then `onlineList` with many
 * users online in the room.
 */

import { checkerNotes, checkerProblems, startCheckers } from "../lib/checker.js";
import { RawClient } from "../lib/rawclient.js";
import { ScenarioReport } from "../lib/report.js";
import { Latency } from "../lib/stats.js";
import { fmtInt, progress, sleep } from "../lib/util.js";
import { AgentPool } from "../loadgen/pool.js";
import {
  type BenchOptions,
  connectAll,
  declareLost,
  reportLost,
  type Scenario,
  waitQuiet,
  withSystem,
} from "./common.js";

const OBSERVERS = 3;
/** Most `onlineList` requests one probe sends (--query-rate allows 20 per 10 s by default). */
const PROBE_REQUESTS = 15;
/** --list-page-size's default: users per onlineList page. */
const LIST_PAGE = 1_000;

/** Arrival times (µs) of 202/203 envelopes per `${action}:${username}`, with waiters. */
class PresenceLog {
  private arrivals = new Map<string, number[]>();
  private waiters = new Map<string, { need: number; resolve: (t: number[]) => void }>();

  onFrame = (frame: string, at: number): void => {
    const a = /"action":(20[23])/.exec(frame);
    if (!a) return;
    const u = /"username":"([^"]*)"/.exec(frame);
    if (!u) return;
    const key = `${a[1]}:${u[1]}`;
    const list = this.arrivals.get(key) ?? [];
    list.push(at);
    this.arrivals.set(key, list);
    const w = this.waiters.get(key);
    if (w && list.length >= w.need) {
      this.waiters.delete(key);
      w.resolve(list);
    }
  };

  /** Resolves with the arrival times once `need` observers saw it; undefined on timeout. */
  wait(key: string, need: number, timeoutMs: number): Promise<number[] | undefined> {
    const have = this.arrivals.get(key);
    if (have && have.length >= need) return Promise.resolve(have);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters.delete(key);
        resolve(this.arrivals.get(key));
      }, timeoutMs);
      this.waiters.set(key, {
        need,
        resolve: (t) => {
          clearTimeout(timer);
          resolve(t);
        },
      });
    });
  }
}

export const presence: Scenario = {
  name: "presence",
  title: "presence across 2 nodes (Redis): 202/203 propagation and onlineList",
  async run(opts: BenchOptions): Promise<ScenarioReport> {
    const trials = opts.trials ?? (opts.quick ? 50 : 1_000);
    const onlineUsers = opts.onlineUsers ?? (opts.quick ? 1_000 : 10_000);
    const listTrials = opts.quick ? 30 : 200;
    /** The join phase is O(users²): stop adding users after this long. */
    const joinBudgetS = opts.quick ? 60 : 300;
    const workers = opts.workers ?? 1;
    const report = new ScenarioReport(presence.name, presence.title, opts.quick, {
      adapter: "redis",
      nodes: 2,
      workersPerNode: workers,
      trials,
      observersOnNodeB: OBSERVERS,
      onlineUsers,
      onlineListTrials: listTrials,
      joinBudgetS,
      online: "`40{auth}` sent on node A → 202 received by each observer on node B",
      offline: "`41` + close sent on node A → 203 received by each observer on node B",
      onlineList:
        "`onlineList` emitted with an ack → ack received, first page (probes on both nodes); the length is that of every page",
    });
    report.metric("on50", "connect → 202 on the other node, p50", "ms", 2);
    report.metric("on99", "connect → 202 on the other node, p99", "ms", 2, { op: "<", value: 50 });
    report.metric("off50", "disconnect → 203 on the other node, p50", "ms", 2);
    report.metric("off99", "disconnect → 203 on the other node, p99", "ms", 2, {
      op: "<",
      value: 50,
    });
    report.metric("missed", "presence events missed (of trials × observers × 2)", "", 0, {
      op: "<=",
      value: 0,
    });
    report.metric("users", "users online for onlineList", "", 0, { op: ">=", value: onlineUsers });
    report.metric("joinS", "time to bring them online (incl. 202/201 traffic)", "s", 1);
    report.metric("list50", "onlineList p50 (first page)", "ms", 2);
    report.metric("list99", "onlineList p99 (first page)", "ms", 2, {
      op: "<",
      value: 100,
    });
    report.metric("listLen", "onlineList length (all pages)", "", 0);
    declareLost(report);

    for (const system of opts.systems) {
      if (system === "baseline") {
        const run = report.run(system);
        run.status = "n/a";
        run.deployment = "no presence in the baseline";
        for (const m of report.metrics) report.set(m.key, system, "n/a");
        continue;
      }
      await withSystem(report, system, { adapter: "redis", nodes: 2, workers }, async (dep) => {
        const [urlA, urlB] = dep.urls;
        const room = "presence";
        const log = new PresenceLog();
        const observers: RawClient[] = [];
        const clients: RawClient[] = [];
        const pool = new AgentPool(2);
        try {
          for (let i = 0; i < OBSERVERS; i++) {
            observers.push(
              await RawClient.connect(
                urlB,
                { username: `obs-${i}`, room },
                "127.0.0.3",
                log.onFrame,
              ),
            );
          }
          const checkers = await startCheckers(system, [urlB], room, "check-presence-");
          await sleep(300);
          const on = new Latency();
          const off = new Latency();
          let missed = 0;
          const t0 = Date.now();
          for (let i = 0; i < trials; i++) {
            const username = `pt-${i}`;
            const client = await RawClient.connect(urlA, { username, room }, "127.0.0.2");
            clients.push(client);
            const sentOn = client.connectSentUs;
            const arrOn = (await log.wait(`202:${username}`, OBSERVERS, 5_000)) ?? [];
            for (const t of arrOn) on.addOne(t - sentOn);
            missed += OBSERVERS - arrOn.length;
            const sentOff = client.disconnect();
            const arrOff = (await log.wait(`203:${username}`, OBSERVERS, 5_000)) ?? [];
            for (const t of arrOff) off.addOne(t - sentOff);
            missed += OBSERVERS - arrOff.length;
            if ((i + 1) % 100 === 0 || i + 1 === trials) {
              const left = ((Date.now() - t0) / (i + 1)) * (trials - i - 1);
              progress(
                `${system}: presence trial ${i + 1}/${trials}, missed ${missed}, ~${(left / 1000).toFixed(0)} s left`,
              );
            }
          }
          const onS = on.summary();
          const offS = off.summary();
          report.set("on50", system, onS.p50);
          report.set("on99", system, onS.p99);
          report.set("off50", system, offS.p50);
          report.set("off99", system, offS.p99);
          report.set("missed", system, missed);
          report.series.push({ name: `${system} online (202)`, system, points: on.curve() });
          report.series.push({ name: `${system} offline (203)`, system, points: off.curve() });

          // onlineList with many users online in one room (half on each node)
          const listRoom = "online";
          // the probes join first (they are users of the room too); enough of them, alternating
          // between the nodes, that none sends more than PROBE_REQUESTS requests (--query-rate)
          const pages = Math.ceil((onlineUsers + 1_000) / LIST_PAGE) + 1;
          const probeCount = Math.max(2, Math.ceil((listTrials + pages) / PROBE_REQUESTS));
          const probes: RawClient[] = [];
          for (let i = 0; i < probeCount; i++) {
            const [url, address] = i % 2 === 0 ? [urlA, "127.0.0.2"] : [urlB, "127.0.0.3"];
            probes.push(
              await RawClient.connect(url, { username: `probe-${i}`, room: listRoom }, address),
            );
          }
          clients.push(...probes);
          let probeTurn = 0;
          const nextProbe = () => probes[probeTurn++ % probes.length];
          const tJoin = Date.now();
          // few joins in flight: each join costs the service O(users already in the room)
          const c = await connectAll(pool, `${system} online users`, {
            group: "online",
            urls: dep.urls,
            count: onlineUsers,
            rate: 1_000,
            room: listRoom,
            usernamePrefix: "on",
            timeoutMs: 60_000,
            maxPending: 50,
            budgetMs: joinBudgetS * 1000,
          });
          progress(
            `${system}: ${fmtInt(c.opened)} users online; waiting for presence traffic to end`,
          );
          await waitQuiet(pool, 1_000, 600_000);
          const joinS = (Date.now() - tJoin) / 1000;
          const list = new Latency();
          let listLen = 0;
          let listFailures = 0;
          // timed: the first page (what onlineList answers: up to --list-page-size users)
          for (let i = 0; i < listTrials; i++) {
            const r = await nextProbe()
              .request("onlineList", 30_000)
              .catch(() => undefined);
            if (!r) listFailures++;
            else list.addOne(r.us);
          }
          // the whole list, page by page (`next` until there is none): its length is checked
          const seen = new Set<string>();
          let cursor: number | undefined = 0;
          for (let page = 0; cursor !== undefined && page < pages; page++) {
            const r = await nextProbe()
              .request("onlineList", 30_000, cursor === 0 ? undefined : { cursor })
              .catch(() => undefined);
            if (!r) {
              listFailures++;
              break;
            }
            const env = JSON.parse(r.payload)[0] as {
              data?: { content?: { userList?: { username?: string }[]; next?: number } };
            };
            const content = env?.data?.content;
            for (const u of content?.userList ?? []) seen.add(String(u.username));
            cursor = content?.next;
          }
          listLen = seen.size;
          const ls = list.summary();
          await reportLost(report, system, pool);
          const online =
            (await pool.collect(false, false)).reduce((n, x) => n + x.open, 0) + probes.length;
          report.set("users", system, online);
          report.set("joinS", system, joinS);
          report.set("list50", system, ls.p50);
          report.set("list99", system, ls.p99);
          report.set("listLen", system, listLen);
          report.series.push({ name: `${system} onlineList`, system, points: list.curve() });
          if (listFailures > 0) {
            report.error(
              system,
              `${listFailures} of ${listTrials} onlineList requests got no ack in 30 s`,
            );
          }
          if (listLen !== online) {
            report.error(system, `onlineList returned ${listLen} users, ${online} are online`);
          }
          if (c.notStarted > 0) {
            report.notes.push(
              `${system}: the join phase ran out of its ${joinBudgetS} s budget; ${c.notStarted} users never connected`,
            );
          }
          if (c.failed > 0) {
            report.notes.push(
              `${system}: ${c.failed} of ${onlineUsers} online users failed to connect (${JSON.stringify(c.reasons)})`,
            );
          }
          for (const p of checkerProblems(checkers)) report.error(system, p);
          report.notes.push(...checkerNotes(checkers));
          for (const ch of checkers) ch.close();
          report.run(system).details = {
            online: onS,
            offline: offS,
            missed,
            onlineUsers: online - probes.length,
            onlineConnected: c.opened,
            onlineConnectFailures: c.reasons,
            joinSeconds: joinS,
            onlineList: ls,
            onlineListLength: listLen,
            checkerActions: checkers.map((ch) => ch.actions),
          };
          await pool.close();
        } finally {
          for (const cl of [...observers, ...clients]) cl.ws.terminate();
          await pool.stop();
        }
      });
    }
    report.notes.push(
      `${fmtInt(onlineUsers)} users join one room: up to --presence-limit (default 1,000) users every join sends 202 to everyone there and the whole 201 list to the newcomer (O(users²)); above it, no 202/203 and a cut 201`,
    );
    return report;
  },
};
