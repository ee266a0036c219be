/**
 * Starting and stopping what the bench measures, as a user would: weigot-ws through its built CLI
 * (`node dist/cli/index.js start ...`), and the baseline (bench/baselines/server.ts, transpiled to
 * plain JavaScript first so that neither system runs under a TypeScript loader).
 */
import { type ChildProcess, spawn } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import ts from "typescript";
import { wsUrl } from "../loadgen/pool.js";
import { processTree, rssBytes } from "./procfs.js";
import { freePort, repoRoot, sleep, Tail, waitUntil } from "./util.js";

export type SystemName =
  | "weigot-ws"
  | "weigot-ws-apps"
  | "weigot-ws-rooms"
  | "weigot-ws-unguarded"
  | "weigot-ws-nohistory"
  | "baseline";
/** Every system, in the order of the table's columns. */
export const SYSTEMS: SystemName[] = [
  "weigot-ws",
  "weigot-ws-apps",
  "weigot-ws-rooms",
  "weigot-ws-unguarded",
  "weigot-ws-nohistory",
  "baseline",
];
/** What `npm run bench` measures without `--systems`. */
export const DEFAULT_SYSTEMS: SystemName[] = ["weigot-ws", "baseline"];

/** weigot-ws in either configuration (same CLI, same protocol). */
export function isWeigot(system: SystemName): boolean {
  return system !== "baseline";
}

/**
 * The load generator plays thousands of clients from a dozen 127.0.0.x addresses, where real
 * clients would each have their own: so the per-address limits (connect rate, sessions per
 * address) and the node-wide session cap (38,000 in `connections`, beyond the 20,000 default) are
 * raised far above anything the bench offers, not switched off, so that their checks still run.
 * Every other guard keeps its default: the measured weigot-ws is the guarded product.
 */
export const BENCH_ADDRESS_ARGS = [
  "--connect-rate",
  "1000000/1s",
  "--max-connections-per-address",
  "10000000",
  "--max-connections",
  "10000000",
];

/**
 * weigot-ws-unguarded: every guard that can be switched off, off (`0`). Not switchable: the
 * frame-checking socket.io parser and the request-head deadline (--request-timeout ≥ 1 s).
 */
export const UNGUARDED_ARGS = [
  ...["--connect-rate", "--message-rate", "--user-message-rate", "--message-bytes-rate"],
  ...["--user-message-bytes-rate", "--state-rate", "--query-rate", "--max-refusals"],
  ...["--max-buffered-bytes", "--max-connections", "--max-connections-per-address"],
  ...["--max-connections-per-user", "--max-pending-connections"],
].flatMap((flag) => [flag, "0"]);

/**
 * weigot-ws-nohistory: weigot-ws (guarded, same address args) with history off — no message kept
 * (`--history-size 0`: numbering and ordered delivery still happen) and no replay on join. The
 * difference to weigot-ws is the cost of storing every message.
 */
export const NOHISTORY_ARGS = [
  ...BENCH_ADDRESS_ARGS,
  ...["--history-size", "0", "--history-on-join", "0"],
];

/** The apps of weigot-ws-apps: `a0` … `a9`, open (no jwtSecrets), each at `/<id>`. */
export const BENCH_APP_IDS = Array.from({ length: 10 }, (_, i) => `a${i}`);

/**
 * The apps file weigot-ws-apps starts with. No limit is set: an app inherits the service's
 * (BENCH_ADDRESS_ARGS are per address and per node, the rest the product's defaults), so the
 * apps' connections run under exactly the guards of the default app's.
 */
export function benchAppsFile(): string {
  return `${JSON.stringify({ apps: BENCH_APP_IDS.map((id) => ({ id, name: `Bench ${id}` })) }, null, 2)}\n`;
}

/** The CLI arguments that make each weigot-ws variant. */
const VARIANT_ARGS: Record<Exclude<SystemName, "baseline">, string[]> = {
  "weigot-ws": BENCH_ADDRESS_ARGS,
  // + --apps-file (written per node, see startNode)
  "weigot-ws-apps": BENCH_ADDRESS_ARGS,
  // weigot-ws itself: only the apps scenario loads it differently (10 rooms of the default app)
  "weigot-ws-rooms": BENCH_ADDRESS_ARGS,
  "weigot-ws-unguarded": UNGUARDED_ARGS,
  "weigot-ws-nohistory": NOHISTORY_ARGS,
};

export interface DeployOptions {
  adapter: "cluster" | "redis";
  /** Nodes (separate service instances sharing Redis); 1 with the cluster adapter. */
  nodes: number;
  /** Workers per node. */
  workers: number;
  redisUrl?: string;
  /** Redis mode: the 3-master cluster to use instead of one Redis (`single`: none). */
  redisTopology?: "single" | "cluster";
  /** Its seed nodes, for --redis-cluster. */
  redisCluster?: string;
  /**
   * Start every service process (primary and workers) with an inspector on a free port
   * (`NODE_OPTIONS=--inspect=127.0.0.1:0`, so that each process binds its own), for
   * `bench/lib/inspector.ts` to force a GC and read `process.memoryUsage()` (the soak scenario).
   */
  inspect?: boolean;
}

export interface ServiceNode {
  port: number;
  pid: number;
  child: ChildProcess;
  output: Tail;
  /** Guard error codes named in the service's log (e.g. a client dropped with E_RATE_LIMITED). */
  codes: Record<string, number>;
  /** With `inspect`: the inspector URL of each process, in the order they printed it. */
  inspectors: string[];
}

/** The guards' codes, as the service logs them when it drops or refuses a client. */
const GUARD_CODE_RE =
  /\b(E_RATE_LIMITED|E_SLOW_CONSUMER|E_TOO_MANY_CONNECTIONS|E_SERVER_BUSY|E_BAD_FRAME)\b/g;

/** What Node prints on stderr when `--inspect` opened its inspector. */
const INSPECTOR_RE = /Debugger listening on (ws:\/\/\S+)/g;

export class SkipSystem extends Error {}

export const WEIGOT_CLI = path.join(repoRoot, "dist/cli/index.js");
const SNAPSHOT = path.join(repoRoot, `.tmp/bench-dist-${process.pid}`);
let snapshotCli: string | undefined;

/**
 * The CLI every weigot-ws of this invocation runs: a copy of dist/ taken at the first start, so
 * that a rebuild by someone else sharing the tree (tests run `npm run build`) cannot change the
 * code between the systems or repeats being compared. The copy sits two levels below the repo
 * like dist/ (public/ linked beside it; packages resolve from the repo's node_modules) and is
 * removed when the bench exits.
 */
function weigotCli(): string {
  if (snapshotCli) return snapshotCli;
  mkdirSync(SNAPSHOT, { recursive: true });
  cpSync(path.join(repoRoot, "dist"), path.join(SNAPSHOT, "dist"), { recursive: true });
  symlinkSync(path.join(repoRoot, "public"), path.join(SNAPSHOT, "public"));
  process.once("exit", () => rmSync(SNAPSHOT, { recursive: true, force: true }));
  snapshotCli = path.join(SNAPSHOT, "dist/cli/index.js");
  return snapshotCli;
}
const BASELINE_OUT = path.join(repoRoot, ".tmp/bench-baseline");
const RUN_DIR = path.join(os.tmpdir(), `weigot-bench-${process.pid}`);

let baselineBuilt = false;

/** Transpiles bench/baselines/*.ts to .tmp/bench-baseline/*.js (type-only imports vanish). */
function buildBaseline(): string {
  const out = path.join(BASELINE_OUT, "server.js");
  if (baselineBuilt) return out;
  mkdirSync(BASELINE_OUT, { recursive: true });
  for (const name of ["server", "sticky"]) {
    const src = readFileSync(path.join(repoRoot, "bench/baselines", `${name}.ts`), "utf8");
    const js = ts.transpileModule(src, {
      compilerOptions: {
        module: ts.ModuleKind.ESNext,
        target: ts.ScriptTarget.ES2022,
        verbatimModuleSyntax: false,
      },
    }).outputText;
    writeFileSync(path.join(BASELINE_OUT, `${name}.js`), js);
  }
  writeFileSync(path.join(BASELINE_OUT, "package.json"), '{ "type": "module" }\n');
  baselineBuilt = true;
  return out;
}

function cmdline(pid: number): string {
  try {
    return `${readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ")} `;
  } catch {
    return "";
  }
}

function httpStatus(url: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("error", () => resolve(0));
    req.on("timeout", () => {
      req.destroy();
      resolve(0);
    });
  });
}

export class Deployment {
  /** Deployments not stopped yet (stopped on SIGINT/SIGTERM by run.ts). */
  static readonly live = new Set<Deployment>();
  readonly nodes: ServiceNode[] = [];
  private knownPids = new Set<number>();
  /** Redis key/channel prefix shared by the nodes of this deployment (and no other). */
  private readonly prefix = `bench-${process.pid}-${Date.now()}`;

  constructor(
    readonly system: SystemName,
    readonly opts: DeployOptions,
  ) {}

  /** One Engine.IO websocket URL per node. */
  get urls(): string[] {
    return this.nodes.map((n) => wsUrl(n.port));
  }

  /** One socket.io-client URL of an app's namespace per node: `http://127.0.0.1:<port>/<app>`. */
  appUrls(app: string): string[] {
    return this.nodes.map((n) => `http://127.0.0.1:${n.port}/${app}`);
  }

  get describe(): string {
    const o = this.opts;
    return o.adapter === "redis"
      ? `${o.nodes} nodes × ${o.workers} worker(s), Redis adapter${o.redisCluster ? " (3-master Redis Cluster, sharded adapter)" : ""}`
      : `1 node × ${o.workers} workers, cluster adapter`;
  }

  pidFile(port: number): string {
    return path.join(RUN_DIR, `weigot-${port}.pid`);
  }

  /**
   * Refusals the guards made, by code, over every node of a weigot-ws deployment: the admission
   * refusals the primaries and workers count (`weigot-ws status --json`: `refusals`,
   * `sessionRefusals`, each worker's `refusals`, whichever this build has) plus the codes in the
   * services' logs.
   * Empty for the baseline.
   */
  async refusals(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    if (!isWeigot(this.system)) return out;
    const add = (codes: Record<string, number | undefined>) => {
      for (const [k, v] of Object.entries(codes)) if (v) out[k] = (out[k] ?? 0) + v;
    };
    for (const n of this.nodes) {
      add(n.codes);
      const status = await cliStatus(this.pidFile(n.port));
      if (status === undefined) out.statusUnavailable = (out.statusUnavailable ?? 0) + 1;
      else {
        add(status.refusals ?? {});
        add(status.sessionRefusals ?? {});
        for (const w of status.workers ?? []) add(w.refusals ?? {});
      }
    }
    return out;
  }

  /** Every process of the service (primaries and workers). */
  pids(): number[] {
    const pids = this.nodes.flatMap((n) => processTree(n.pid));
    for (const p of pids) this.knownPids.add(p);
    return pids;
  }

  /** Summed VmRSS of the service's processes. */
  rss(): { total: number; perProcess: Record<number, number> } {
    const perProcess: Record<number, number> = {};
    let total = 0;
    for (const pid of this.pids()) {
      const r = rssBytes(pid);
      perProcess[pid] = r;
      total += r;
    }
    return { total, perProcess };
  }

  static async start(system: SystemName, opts: DeployOptions): Promise<Deployment> {
    const d = new Deployment(system, opts);
    Deployment.live.add(d);
    try {
      for (let i = 0; i < opts.nodes; i++) d.nodes.push(await d.startNode(i));
      d.pids();
    } catch (err) {
      await d.stop();
      throw err;
    }
    return d;
  }

  private async startNode(i: number): Promise<ServiceNode> {
    const port = await freePort();
    const output = new Tail();
    const prefix = this.prefix;
    let child: ChildProcess;
    if (isWeigot(this.system)) {
      if (!existsSync(WEIGOT_CLI)) {
        throw new SkipSystem(
          `weigot-ws is not built (${path.relative(repoRoot, WEIGOT_CLI)} missing)`,
        );
      }
      mkdirSync(RUN_DIR, { recursive: true });
      const args = [
        weigotCli(),
        "start",
        "--port",
        String(port),
        "--workers",
        String(this.opts.workers),
        "--log-level",
        "warn",
        "--pid-file",
        this.pidFile(port),
        ...VARIANT_ARGS[this.system as Exclude<SystemName, "baseline">],
      ];
      if (this.system === "weigot-ws-apps") {
        const file = path.join(RUN_DIR, `apps-${port}.json`);
        writeFileSync(file, benchAppsFile());
        args.push("--apps-file", file);
      }
      if (this.opts.adapter === "redis") {
        args.push("--adapter", "redis", "--redis-url", this.opts.redisUrl ?? "");
        args.push("--redis-prefix", prefix, "--node-id", `bench-node-${i}`);
        if (this.opts.redisCluster) args.push("--redis-cluster", this.opts.redisCluster);
      }
      child = spawn(process.execPath, [...profileArgs(), ...args], {
        cwd: repoRoot,
        env: this.env(),
        stdio: ["ignore", "pipe", "pipe"],
        detached: true,
      });
    } else {
      if (this.opts.redisCluster) {
        throw new SkipSystem("the baseline has no Redis Cluster mode (--redis-topology cluster)");
      }
      const args = [
        buildBaseline(),
        "--port",
        String(port),
        "--workers",
        String(this.opts.workers),
      ];
      args.push("--adapter", this.opts.adapter);
      if (this.opts.adapter === "redis") {
        args.push("--redis-url", this.opts.redisUrl ?? "", "--redis-prefix", prefix);
      }
      child = spawn(process.execPath, [...profileArgs(), ...args], {
        cwd: repoRoot,
        env: this.env(),
        stdio: ["ignore", "pipe", "pipe"],
        detached: true,
      });
    }
    const codes: Record<string, number> = {};
    const inspectors: string[] = [];
    const onOutput = (d: Buffer) => {
      output.push(d);
      const text = d.toString();
      for (const m of text.matchAll(GUARD_CODE_RE)) codes[m[1]] = (codes[m[1]] ?? 0) + 1;
      for (const m of text.matchAll(INSPECTOR_RE)) inspectors.push(m[1]);
    };
    child.stdout?.on("data", onOutput);
    child.stderr?.on("data", onOutput);
    let exited: string | undefined;
    child.once("exit", (code, signal) => {
      exited = `exited with code ${code} signal ${signal}`;
    });
    const node: ServiceNode = { port, pid: child.pid ?? 0, child, output, codes, inspectors };
    this.nodes.push(node); // so stop() reaches it if readiness fails
    await waitUntil(
      `${this.system} node ${i} to be ready on port ${port}`,
      async () => {
        if (exited) throw new Error(`${this.system} ${exited} before it was ready:\n${output}`);
        if (isWeigot(this.system)) {
          return (await httpStatus(`http://127.0.0.1:${port}/readyz`)) === 200 ? true : undefined;
        }
        return output.toString().includes("READY ") ? true : undefined;
      },
      30_000,
      100,
    );
    this.nodes.pop();
    return node;
  }

  /** The service's environment: the harness's, plus an inspector per process with `inspect`. */
  private env(): NodeJS.ProcessEnv {
    if (!this.opts.inspect) return process.env;
    const prev = process.env.NODE_OPTIONS ?? "";
    return { ...process.env, NODE_OPTIONS: `${prev} --inspect=127.0.0.1:0`.trim() };
  }

  /** SIGTERM to every primary, then SIGKILL to whatever of the service is still alive. */
  static async stopAll(): Promise<void> {
    await Promise.all([...Deployment.live].map((d) => d.stop()));
  }

  async stop(): Promise<void> {
    Deployment.live.delete(this);
    this.pids();
    await Promise.all(
      this.nodes.map(async (n) => {
        if (n.child.exitCode !== null || n.child.signalCode !== null) return;
        const exited = new Promise<void>((resolve) => n.child.once("exit", () => resolve()));
        n.child.kill("SIGTERM");
        const timedOut = await Promise.race([
          exited.then(() => false),
          sleep(15_000).then(() => true),
        ]);
        if (timedOut) {
          process.stderr.write(`  ! ${this.system} on port ${n.port} ignored SIGTERM for 15 s\n`);
          n.child.kill("SIGKILL");
          await exited;
        }
      }),
    );
    // Workers that outlived their primary (only ours: same port in the command line).
    await sleep(200);
    const ports = this.nodes.map((n) => `--port ${n.port} `);
    for (const pid of this.knownPids) {
      const cmd = cmdline(pid);
      if (!ports.some((p) => cmd.includes(p))) continue;
      process.stderr.write(`  ! ${this.system}: process ${pid} outlived its primary; killing it\n`);
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone meanwhile
      }
    }
  }
}

/** `weigot-ws status --json` of the node with this PID file (undefined if it does not answer). */
function cliStatus(pidFile: string): Promise<
  | {
      refusals?: Record<string, number>;
      sessionRefusals?: Record<string, number>;
      workers?: { refusals?: Record<string, number> }[];
    }
  | undefined
> {
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      [weigotCli(), "status", "--json", "--pid-file", pidFile],
      {
        cwd: repoRoot,
        stdio: ["ignore", "pipe", "ignore"],
      },
    );
    let out = "";
    child.stdout?.on("data", (d) => {
      out += d;
    });
    child.once("error", () => resolve(undefined));
    child.once("exit", (code) => {
      try {
        resolve(code === 0 ? JSON.parse(out) : undefined);
      } catch {
        resolve(undefined);
      }
    });
  });
}

/**
 * `BENCH_CPU_PROF=<dir>` runs every service process (primary and workers: cluster passes the
 * primary's execArgv on) under `node --cpu-prof`, writing .cpuprofile files there.
 */
function profileArgs(): string[] {
  const dir = process.env.BENCH_CPU_PROF;
  return dir ? ["--cpu-prof", `--cpu-prof-dir=${dir}`] : [];
}
