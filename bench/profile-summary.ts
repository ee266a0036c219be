/**
 * Where the service's CPU went, from the .cpuprofile files `BENCH_CPU_PROF=<dir>` leaves:
 * `node --import tsx bench/profile-summary.ts <dir> [--top n]`.
 * Per process: busy time (samples other than idle), the share spent in guard code (any frame of
 * the sample's stack in a guard file: the limits, the frame-checking parser, admission and the
 * connection ledger, rate-limiter-flexible — callees included, so JSON and IPC done for a guard
 * count as the guard's), and the guard functions with the most self and inclusive time.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Files whose code is a guard (every guard of issue 8, on either side of the IPC channel). */
const GUARD_FILES: [label: string, re: RegExp][] = [
  ["flood guard (rate limits)", /\/dist\/limits\/(flood-guard|limiter-spec)\.js$/],
  ["outbound cap", /\/dist\/limits\/outbound-cap\.js$/],
  ["frame-checking parser", /\/dist\/chat\/guarded-parser\.js$/],
  ["admission", /\/dist\/http\/(admission|client-address|refusal)\.js$/],
  ["connection ledger", /\/dist\/cluster\/(connection-ledger|ledger-client)\.js$/],
  ["pending connections", /\/dist\/cluster\/pending-connections\.js$/],
  ["rate-limiter-flexible", /\/node_modules\/rate-limiter-flexible\//],
];

function guardOf(url: string): string | undefined {
  return GUARD_FILES.find(([, re]) => re.test(url))?.[0];
}

function where(f: CallFrame): string {
  const file = f.url.replace(/^file:\/\//, "").replace(/^.*\/(dist|node_modules)\//, "$1/");
  return `${f.functionName || "(anonymous)"} ${file}:${f.lineNumber + 1}`;
}

interface Summary {
  file: string;
  busyMs: number;
  guardMs: number;
  byGuard: Map<string, number>;
  self: Map<string, number>;
  inclusive: Map<string, number>;
}

function summarize(file: string): Summary {
  const p = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const s: Summary = {
    file: path.basename(file),
    busyMs: 0,
    guardMs: 0,
    byGuard: new Map(),
    self: new Map(),
    inclusive: new Map(),
  };
  const add = (m: Map<string, number>, k: string, v: number) => m.set(k, (m.get(k) ?? 0) + v);
  for (let i = 0; i < p.samples.length; i++) {
    const node = byId.get(p.samples[i]);
    if (!node || node.callFrame.functionName === "(idle)") continue;
    const ms = (p.timeDeltas[i] ?? 0) / 1000;
    s.busyMs += ms;
    const selfGuard = guardOf(node.callFrame.url);
    if (selfGuard) add(s.self, where(node.callFrame), ms);
    // the outermost guard frame of the stack names the guard; each function counted once
    let outer: string | undefined;
    const fns = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const f = byId.get(id)?.callFrame;
      if (!f) break;
      const g = guardOf(f.url);
      if (!g) continue;
      outer = g;
      fns.add(where(f));
    }
    if (outer) {
      s.guardMs += ms;
      add(s.byGuard, outer, ms);
      for (const fn of fns) add(s.inclusive, fn, ms);
    }
  }
  return s;
}

function top(m: Map<string, number>, n: number, busy: number): string[] {
  return [...m.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([k, v]) => `    ${v.toFixed(0).padStart(7)} ms ${pct(v, busy)}  ${k}`);
}

function pct(part: number, whole: number): string {
  return `${whole > 0 ? ((100 * part) / whole).toFixed(2) : "0.00"} %`.padStart(8);
}

function main(): number {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { top: { type: "string", default: "10" } },
  });
  const dir = positionals[0];
  if (!dir) {
    console.error("usage: node --import tsx bench/profile-summary.ts <dir> [--top n]");
    return 2;
  }
  const files = readdirSync(dir)
    .filter((f) => f.endsWith(".cpuprofile"))
    .map((f) => path.join(dir, f));
  if (files.length === 0) {
    console.error(`no .cpuprofile in ${dir}`);
    return 1;
  }
  const n = Number(values.top);
  let busy = 0;
  let guard = 0;
  for (const s of files.map(summarize).sort((a, b) => b.busyMs - a.busyMs)) {
    busy += s.busyMs;
    guard += s.guardMs;
    console.log(
      `${s.file}: busy ${s.busyMs.toFixed(0)} ms, guards ${s.guardMs.toFixed(0)} ms (${pct(s.guardMs, s.busyMs).trim()})`,
    );
    for (const line of top(s.byGuard, 10, s.busyMs)) console.log(line);
    if (s.inclusive.size > 0) {
      console.log("  guard functions, inclusive (callees included):");
      for (const line of top(s.inclusive, n, s.busyMs)) console.log(line);
      console.log("  guard functions, self:");
      for (const line of top(s.self, n, s.busyMs)) console.log(line);
    }
  }
  console.log(
    `all processes: busy ${busy.toFixed(0)} ms, guards ${guard.toFixed(0)} ms (${pct(guard, busy).trim()})`,
  );
  return 0;
}

process.exitCode = main();
