/** Memory and CPU of processes, read from /proc (Linux). */
import { readdirSync, readFileSync } from "node:fs";

/** VmRSS of a process in bytes (0 if it is gone). */
export function rssBytes(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(status);
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Open file descriptors of a process (-1 if unreadable). */
export function openFiles(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return -1;
  }
}

function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // the command name (field 2) may contain spaces: split after its closing parenthesis
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
}

/** CPU time (user + system) a process has used, in ms (clock ticks of 10 ms). */
export function cpuMs(pid: number): number {
  const f = statFields(pid);
  if (!f) return 0;
  // after the name: state(3) ppid(4) ... utime(14) stime(15) → indexes 11 and 12 here
  return (Number(f[11]) + Number(f[12])) * 10;
}

/** Direct children of a process. */
export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const f = statFields(Number(entry));
    if (f && Number(f[1]) === pid) out.push(Number(entry));
  }
  return out;
}

/** A process and all its descendants. */
export function processTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) out.push(...childrenOf(out[i]));
  return out;
}

/** Sum of CPU ms over processes. */
export function totalCpuMs(pids: number[]): number {
  return pids.reduce((s, p) => s + cpuMs(p), 0);
}

/** CPU time all CPUs of the machine spent busy (not idle or waiting for I/O), in ms. */
export function machineBusyMs(): number {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n")[0];
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
    return (total - f[3] - f[4]) * 10;
  } catch {
    return 0;
  }
}

export interface CpuUse {
  /** % of one core per group (200 % = both cores of a 2-core machine). */
  [group: string]: number;
}

/**
 * Measures the CPU used by groups of processes over an interval, as % of one core, plus
 * `busiest` (the busiest single process of the `service` group), `pid<n>` (each service
 * process, the primary first), `machine` (everything) and `other` (machine − the groups:
 * whatever else runs on the machine).
 */
export class CpuMeter {
  private start = new Map<number, number>();
  private machine0 = 0;
  private t0 = 0;

  constructor(private readonly groups: () => Record<string, number[]>) {}

  begin(): void {
    this.t0 = performance.now();
    this.machine0 = machineBusyMs();
    this.start.clear();
    for (const pids of Object.values(this.groups())) {
      for (const p of pids) this.start.set(p, cpuMs(p));
    }
  }

  end(): CpuUse {
    const wall = performance.now() - this.t0;
    const pct = (ms: number) => (wall > 0 ? Math.round((ms / wall) * 100) : 0);
    const out: CpuUse = {};
    let sum = 0;
    let busiest = 0;
    let serviceMs = 0;
    for (const [name, pids] of Object.entries(this.groups())) {
      let used = 0;
      for (const p of pids) {
        const u = cpuMs(p) - (this.start.get(p) ?? 0);
        used += u;
        if (name === "service") busiest = Math.max(busiest, u);
      }
      if (name === "service") serviceMs = used;
      out[name] = pct(used);
      sum += used;
    }
    const machine = machineBusyMs() - this.machine0;
    for (const p of this.groups().service ?? []) {
      out[`pid${p}`] = pct(cpuMs(p) - (this.start.get(p) ?? cpuMs(p)));
    }
    // unrounded, for per-delivery costs: CPU ms of the service and the interval's length
    out.serviceMs = serviceMs;
    out.wallMs = Math.round(wall);
    out.busiest = pct(busiest);
    out.machine = pct(machine);
    out.other = Math.max(0, pct(machine - sum));
    return out;
  }
}
