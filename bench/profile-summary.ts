/**
 * Where the service's CPU went, from the .cpuprofile files `BENCH_CPU_PROF=<dir>` leaves:
 * `node --import tsx bench/profile-summary.ts <dir> [--top n]`.
 * Each sample belongs to the innermost frame of its stack that is in a file of the service or a
 * package (dist/…, node_modules/…): Node's internals and built-ins (JSON, IPC serialization,
 * socket writes) count for the code that called them, and the code a guard hands control to
 * (next(): the chat handler) does not count for the guard. Per process: busy time (all but idle),
 * the share owned by guard files (the limits, the frame-checking parser, admission, the
 * connection ledger, rate-limiter-flexible), the guard functions owning most, and the top owners
 * overall.
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
  const url = f.url.replace(/^file:\/\//, "");
  const pkg = url.lastIndexOf("/node_modules/");
  const file = pkg >= 0 ? url.slice(pkg + 1) : url.replace(/^.*\/dist\//, "dist/");
  return `${f.functionName || "(anonymous)"} ${file}:${f.lineNumber + 1}`;
}

interface Summary {
  file: string;
  busyMs: number;
  guardMs: number;
  byGuard: Map<string, number>;
  /** Guard functions: the time they own. */
  self: Map<string, number>;
  /** Every owner (function in a file, or a root like "(garbage collector)"). */
  all: Map<string, number>;
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
    all: new Map(),
  };
  const add = (m: Map<string, number>, k: string, v: number) => m.set(k, (m.get(k) ?? 0) + v);
  for (let i = 0; i < p.samples.length; i++) {
    const node = byId.get(p.samples[i]);
    if (!node || node.callFrame.functionName === "(idle)") continue;
    const ms = (p.timeDeltas[i] ?? 0) / 1000;
    s.busyMs += ms;
    let owner: CallFrame | undefined;
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const f = byId.get(id)?.callFrame;
      if (f && /\/(dist|node_modules)\//.test(f.url)) {
        owner = f;
        break;
      }
    }
    const key = owner ? where(owner) : node.callFrame.functionName || "(anonymous)";
    add(s.all, key, ms);
    const guard = owner && guardOf(owner.url);
    if (guard) {
      s.guardMs += ms;
      add(s.byGuard, guard, ms);
      add(s.self, key, ms);
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
    if (s.self.size > 0) {
      console.log("  guard functions:");
      for (const line of top(s.self, n, s.busyMs)) console.log(line);
    }
    console.log("  top owners:");
    for (const line of top(s.all, n, s.busyMs)) console.log(line);
  }
  console.log(
    `all processes: busy ${busy.toFixed(0)} ms, guards ${guard.toFixed(0)} ms (${pct(guard, busy).trim()})`,
  );
  return 0;
}

process.exitCode = main();
