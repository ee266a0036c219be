/** Results of a scenario: the table both systems are compared in, the JSON file and the SVG chart. */
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { round } from "./stats.js";
import type { SystemName } from "./systems.js";
import { SYSTEMS } from "./systems.js";

export type Value = number | string | null;

export interface Target {
  op: ">=" | "<=" | "<" | ">";
  value: number;
  /** Compare weigot-ws / baseline instead of the weigot-ws figure. */
  ofRatio?: boolean;
  /** Compare this ratio of two systems (a VARIANT_RATIOS key) instead of the weigot-ws figure. */
  ofVariant?: VariantKey;
}

export interface Metric {
  key: string;
  label: string;
  unit: string;
  /** Digits after the decimal point in the table. */
  digits: number;
  targets: Target[];
  values: Partial<Record<SystemName, Value>>;
  /** With `--repeat`: every repeat's value (`values` holds their median). */
  repeats?: Partial<Record<SystemName, Value[]>>;
}

export interface SystemRun {
  system: SystemName;
  status: "ok" | "skipped" | "failed" | "n/a";
  deployment?: string;
  error?: string;
  /** Everything the scenario measured, for the JSON file. */
  details?: unknown;
  /** weigot-ws: the guards' refusals by code (admission counts and log); none expected. */
  refusals?: Record<string, number>;
}

export interface Series {
  name: string;
  system: SystemName;
  /** [percentile, ms] */
  points: [number, number][];
}

export interface Machine {
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  node: string;
  kernel: string;
  fileLimit: string;
}

export function machine(): Machine {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? "unknown",
    memoryGiB: round(os.totalmem() / 2 ** 30, 1),
    node: process.version,
    kernel: `${os.type()} ${os.release()}`,
    fileLimit: process.env.BENCH_FILE_LIMIT ?? "see README",
  };
}

export class ScenarioReport {
  readonly runs: SystemRun[] = [];
  readonly metrics: Metric[] = [];
  readonly series: Series[] = [];
  readonly notes: string[] = [];
  /** Things that went wrong (crashes, wrong payloads): the smoke test requires none. */
  readonly errors: string[] = [];
  /** What a system's column stands for in this scenario (e.g. "10 apps × 100"), in its header. */
  readonly labels: Partial<Record<SystemName, string>> = {};
  startedAt = new Date();
  finishedAt?: Date;

  constructor(
    readonly scenario: string,
    readonly title: string,
    readonly quick: boolean,
    readonly config: Record<string, unknown>,
  ) {}

  metric(key: string, label: string, unit: string, digits = 0, ...targets: Target[]): Metric {
    let m = this.metrics.find((x) => x.key === key);
    if (!m) {
      m = { key, label, unit, digits, targets, values: {} };
      this.metrics.push(m);
    }
    return m;
  }

  set(key: string, system: SystemName, value: Value): void {
    const m = this.metrics.find((x) => x.key === key);
    if (!m) throw new Error(`unknown metric ${key}`);
    m.values[system] = typeof value === "number" && !Number.isFinite(value) ? null : value;
  }

  run(system: SystemName): SystemRun {
    let r = this.runs.find((x) => x.system === system);
    if (!r) {
      r = { system, status: "ok" };
      this.runs.push(r);
    }
    return r;
  }

  error(system: SystemName, message: string): void {
    this.errors.push(`${system}: ${message}`);
  }

  toJSON(): Record<string, unknown> {
    return {
      scenario: this.scenario,
      title: this.title,
      quick: this.quick,
      startedAt: this.startedAt.toISOString(),
      durationS: this.finishedAt
        ? round((this.finishedAt.getTime() - this.startedAt.getTime()) / 1000, 1)
        : null,
      machine: machine(),
      config: this.config,
      labels: this.labels,
      runs: this.runs,
      metrics: this.metrics.map((m) => ({
        ...m,
        ratio: ratio(m),
        ...Object.fromEntries(VARIANT_RATIOS.map((v) => [v.key, variantRatio(m, v)])),
        targetMet: targetMet(m),
      })),
      notes: this.notes,
      errors: this.errors,
      series: this.series,
    };
  }
}

export function ratio(m: Metric): number | null {
  const a = m.values["weigot-ws"];
  const b = m.values.baseline;
  if (typeof a !== "number" || typeof b !== "number" || b === 0) return null;
  return round(a / b, 2);
}

/**
 * One weigot-ws configuration against another (`of` / `over`): what the feature a variant
 * switches off costs, or what a load shape costs against another. Each has a column (`label`)
 * in the table when both systems ran, and a field (`key`) in the JSON.
 */
export const VARIANT_RATIOS = [
  {
    key: "ratioUnguarded",
    of: "weigot-ws",
    over: "weigot-ws-unguarded",
    label: "guarded / unguarded",
  },
  {
    key: "ratioNoHistory",
    of: "weigot-ws",
    over: "weigot-ws-nohistory",
    label: "history / no history",
  },
  // the apps scenario: 10 apps of 100 against one app's room of 1,000, and against one app's 10
  // rooms of 100 (the same message rate: what the namespaces alone cost)
  { key: "ratioApps", of: "weigot-ws-apps", over: "weigot-ws", label: "10 apps / 1 app" },
  {
    key: "ratioAppsRooms",
    of: "weigot-ws-apps",
    over: "weigot-ws-rooms",
    label: "10 apps / 10 rooms",
  },
] as const satisfies readonly { key: string; of: SystemName; over: SystemName; label: string }[];

export type VariantRatio = (typeof VARIANT_RATIOS)[number];
export type VariantKey = VariantRatio["key"];

/** `of` / `over` (null without both figures). */
export function variantRatio(m: Metric, v: VariantRatio): number | null {
  const a = m.values[v.of];
  const b = m.values[v.over];
  if (typeof a !== "number" || typeof b !== "number" || b === 0) return null;
  return round(a / b, 3);
}

/** Whether weigot-ws meets every target of the metric (null: no target, or no figure). */
export function targetMet(m: Metric): boolean | null {
  if (m.targets.length === 0) return null;
  const met = m.targets.map((t) => meets(m, t));
  if (met.includes(false)) return false;
  return met.includes(null) ? null : true;
}

function meets(m: Metric, target: Target): boolean | null {
  const variant = VARIANT_RATIOS.find((x) => x.key === target.ofVariant);
  const v = variant ? variantRatio(m, variant) : target.ofRatio ? ratio(m) : m.values["weigot-ws"];
  if (typeof v !== "number") return null;
  const t = target.value;
  switch (target.op) {
    case ">=":
      return v >= t;
    case "<=":
      return v <= t;
    case "<":
      return v < t;
    case ">":
      return v > t;
  }
}

function fmt(v: Value | undefined, digits: number): string {
  if (v === undefined || v === null) return "–";
  if (typeof v === "string") return v;
  return v.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

function fmtTarget(m: Metric): string {
  return m.targets
    .map((t) => {
      const variant = VARIANT_RATIOS.find((x) => x.key === t.ofVariant);
      const what = variant
        ? `${variant.label} ${t.op} ${t.value}`
        : t.ofRatio
          ? `ratio ${t.op} ${t.value}`
          : `${t.op} ${t.value.toLocaleString("en-US")}`;
      const met = meets(m, t);
      return `${what} ${met === null ? "?" : met ? "✓" : "✗"}`;
    })
    .join(", ");
}

/** The comparison table, as Markdown (readable in a terminal, pasteable in the README). */
export function table(r: ScenarioReport): string {
  const lines: string[] = [];
  lines.push(`### ${r.scenario}${r.quick ? " (quick)" : ""}: ${r.title}`);
  for (const run of r.runs) {
    const state = run.status === "ok" ? "" : ` — ${run.status}${run.error ? `: ${run.error}` : ""}`;
    lines.push(`- ${run.system}: ${run.deployment ?? ""}${state}`);
  }
  lines.push("");
  // The systems measured (all of them when none ran), in SYSTEMS order.
  const measured = SYSTEMS.filter((s) => r.runs.some((x) => x.system === s));
  const shown = measured.length > 0 ? measured : SYSTEMS;
  // "ratio" is weigot-ws / baseline; "guarded / unguarded" etc. need both of their systems.
  const variants = VARIANT_RATIOS.filter((v) => shown.includes(v.of) && shown.includes(v.over));
  const withRatio = shown.includes("baseline") || !shown.some((s) => s.startsWith("weigot-ws-"));
  const extra = [...(withRatio ? ["ratio"] : []), ...variants.map((v) => v.label)];
  const heads = shown.map((s) => (r.labels[s] ? `${s} (${r.labels[s]})` : s));
  lines.push(`| figure | ${[...heads, ...extra].join(" | ")} | target (weigot-ws) |`);
  lines.push(`|---|${[...shown, ...extra].map(() => "---:").join("|")}|---|`);
  for (const m of r.metrics) {
    const cells = shown.map((s) => {
      const v = m.values[s];
      const run = r.runs.find((x) => x.system === s);
      if (v === undefined && run?.status === "n/a") return "n/a";
      return fmt(v, m.digits);
    });
    const rt = ratio(m);
    if (withRatio) cells.push(rt === null ? "–" : rt.toFixed(2));
    for (const v of variants) {
      const vr = variantRatio(m, v);
      cells.push(vr === null ? "–" : vr.toFixed(3));
    }
    lines.push(
      `| ${m.label}${m.unit ? ` (${m.unit})` : ""} | ${cells.join(" | ")} | ${fmtTarget(m)} |`,
    );
  }
  for (const n of r.notes) lines.push(`- ${n}`);
  if (r.errors.length > 0) {
    lines.push("");
    lines.push("ERRORS:");
    for (const e of r.errors) lines.push(`- ${e}`);
  }
  return lines.join("\n");
}

const COLORS: Record<SystemName, string[]> = {
  "weigot-ws": ["#1f5fbf", "#4f9be8", "#0b2f6b", "#7fb8f0"],
  "weigot-ws-apps": ["#c0392b", "#e57368", "#7b1d14", "#f2aaa3"],
  "weigot-ws-rooms": ["#16878c", "#55c1c5", "#0a4f52", "#9adfe1"],
  "weigot-ws-unguarded": ["#2e8b3a", "#6cc070", "#145a1e", "#a3d9a0"],
  "weigot-ws-nohistory": ["#7b3fa8", "#b07fd6", "#4a1d6e", "#d3b5ea"],
  baseline: ["#d9661a", "#f0a35e", "#8a3a05", "#f5c08f"],
};

/** Percentile-distribution chart: x = percentile (log scale of 1/(1-p)), y = latency (log ms). */
export function svg(r: ScenarioReport): string | undefined {
  const series = r.series.filter((s) => s.points.length > 0);
  if (series.length === 0) return undefined;
  const W = 760;
  const H = 420;
  const L = 70;
  const R = 230;
  const T = 40;
  const B = 50;
  const xOf = (p: number) => {
    const q = Math.min(p, 99.999);
    const v = Math.log10(1 / (1 - q / 100)); // 0 … 5
    return L + (v / 5) * (W - L - R);
  };
  const all = series.flatMap((s) => s.points.map((pt) => pt[1])).filter((v) => v > 0);
  const lo = 10 ** Math.floor(Math.log10(Math.max(0.01, Math.min(...all))));
  const hi = 10 ** Math.ceil(Math.log10(Math.max(...all, lo * 10)));
  const yOf = (ms: number) => {
    const v = Math.log10(Math.max(ms, lo));
    return T + (1 - (v - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * (H - T - B);
  };
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
  );
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(
    `<text x="${L}" y="22" font-size="14" font-weight="bold">${esc(`${r.scenario}${r.quick ? " (quick)" : ""}: latency distribution`)}</text>`,
  );
  for (const p of [0, 50, 90, 99, 99.9, 99.99]) {
    const x = xOf(p);
    out.push(`<line x1="${x}" y1="${T}" x2="${x}" y2="${H - B}" stroke="#ddd"/>`);
    out.push(`<text x="${x}" y="${H - B + 16}" text-anchor="middle">p${p}</text>`);
  }
  for (let v = lo; v <= hi * 1.0001; v *= 10) {
    const y = yOf(v);
    out.push(`<line x1="${L}" y1="${y}" x2="${W - R}" y2="${y}" stroke="#ddd"/>`);
    out.push(
      `<text x="${L - 6}" y="${y + 4}" text-anchor="end">${v >= 1 ? v : v.toFixed(2)} ms</text>`,
    );
  }
  out.push(`<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">percentile</text>`);
  const used: Record<string, number> = {};
  series.forEach((s, i) => {
    const k = used[s.system] ?? 0;
    used[s.system] = k + 1;
    const color = COLORS[s.system][k % 4];
    const d = s.points
      .map(([p, ms], j) => `${j === 0 ? "M" : "L"}${xOf(p).toFixed(1)},${yOf(ms).toFixed(1)}`)
      .join(" ");
    const dash = s.system === "baseline" ? ' stroke-dasharray="6 3"' : "";
    out.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="2"${dash}/>`);
    const ly = T + 10 + i * 18;
    out.push(
      `<line x1="${W - R + 15}" y1="${ly}" x2="${W - R + 40}" y2="${ly}" stroke="${color}" stroke-width="2"${dash}/>`,
    );
    out.push(`<text x="${W - R + 46}" y="${ly + 4}">${esc(s.name)}</text>`);
  });
  out.push("</svg>");
  return out.join("\n");
}

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** Writes `<dir>/<date>-<scenario>.json` (and `.svg` when there are latencies); returns the paths. */
export function writeResults(r: ScenarioReport, dir: string): string[] {
  mkdirSync(dir, { recursive: true });
  const d = r.startedAt;
  const pad = (n: number) => String(n).padStart(2, "0");
  const stamp = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}-${pad(d.getHours())}${pad(d.getMinutes())}`;
  const base = path.join(dir, `${stamp}-${r.scenario}${r.quick ? "-quick" : ""}`);
  const files = [`${base}.json`];
  writeFileSync(`${base}.json`, `${JSON.stringify(r.toJSON(), null, 2)}\n`);
  const chart = svg(r);
  if (chart) {
    writeFileSync(`${base}.svg`, chart);
    files.push(`${base}.svg`);
  }
  return files;
}

function median(values: number[]): number {
  const v = [...values].sort((a, b) => a - b);
  const mid = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

/**
 * One report out of `--repeat` runs of a scenario: each figure is the median of the repeats
 * (every repeat's value kept in `repeats`), notes and errors are tagged with their repeat, and
 * the per-repeat guarded / unguarded ratios are listed so that one noisy repeat shows.
 */
export function mergeRepeats(reports: ScenarioReport[]): ScenarioReport {
  const [first] = reports;
  if (reports.length === 1) return first;
  const out = new ScenarioReport(first.scenario, first.title, first.quick, {
    ...first.config,
    repeats: reports.length,
  });
  out.startedAt = first.startedAt;
  Object.assign(out.labels, first.labels);
  for (const system of SYSTEMS) {
    const runs = reports.flatMap((r) => r.runs.filter((x) => x.system === system));
    if (runs.length === 0) continue;
    const run = out.run(system);
    run.deployment = runs[0].deployment;
    const bad = runs.find((x) => x.status !== "ok");
    run.status = bad?.status ?? "ok";
    if (bad?.error) run.error = bad.error;
    run.details = runs.map((x) => x.details);
    const refusals: Record<string, number> = {};
    for (const x of runs) {
      for (const [k, v] of Object.entries(x.refusals ?? {})) refusals[k] = (refusals[k] ?? 0) + v;
    }
    run.refusals = refusals;
  }
  for (const m of first.metrics) {
    const merged = out.metric(m.key, m.label, m.unit, m.digits, ...m.targets);
    merged.repeats = {};
    for (const system of SYSTEMS) {
      const all = reports.map((r) => r.metrics.find((x) => x.key === m.key)?.values[system]);
      if (all.every((v) => v === undefined)) continue;
      const values = all.map((v) => v ?? null);
      merged.repeats[system] = values;
      const nums = values.filter((v): v is number => typeof v === "number");
      merged.values[system] = nums.length > 0 ? median(nums) : values[0];
    }
  }
  reports.forEach((r, i) => {
    out.notes.push(...r.notes.map((n) => `[repeat ${i + 1}] ${n}`));
    out.errors.push(...r.errors.map((e) => `[repeat ${i + 1}] ${e}`));
    out.series.push(...r.series.map((x) => ({ ...x, name: `${x.name} #${i + 1}` })));
  });
  const perRepeat = VARIANT_RATIOS.map((v) => {
    const figures = first.metrics
      .map((m) => {
        const ratios = reports.map((r) => {
          const x = r.metrics.find((y) => y.key === m.key);
          return x ? variantRatio(x, v) : null;
        });
        return ratios.every((x) => x === null)
          ? undefined
          : `${m.label}: ${ratios.map((x) => (x === null ? "–" : x.toFixed(3))).join(", ")}`;
      })
      .filter((x): x is string => x !== undefined);
    return figures.length > 0 ? `${v.label} per repeat — ${figures.join("; ")}` : undefined;
  }).filter((x): x is string => x !== undefined);
  out.notes.unshift(
    `median of ${reports.length} repeats (systems interleaved: their order reversed on every other repeat)`,
    ...perRepeat,
  );
  return out;
}
