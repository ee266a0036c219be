/**
 * Nodes of a Redis-mode deployment for multi-node tests: each node is the built CLI (a primary and
 * its workers) in its own process group, so that a test can SIGKILL a whole node at once the way a
 * machine dies (`kill -9 -<pgid>`), with no process of it getting the chance to clean up.
 *
 * Also: source addresses that nginx (`hash $remote_addr consistent`) sends to a given node, and
 * socket.io-client options that connect from such an address over either transport.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import type { ClientOptions } from "./chat-client.js";
import type { NginxHandle } from "./nginx.js";
import {
  CLI,
  type CliResult,
  runCliAsync,
  TEST_LIMITS_ENV,
  tempDir,
  waitUntil,
} from "./service.js";

export interface NodeOptions {
  redisUrl: string;
  nodeId: string;
  /** --node-timeout, seconds. @default 3 */
  nodeTimeout?: number;
  /** @default 2 */
  workers?: number;
  /** --redis-prefix (default: the service's default) */
  prefix?: string;
  /** More CLI flags. */
  args?: string[];
}

export interface WorkerStatus {
  id: number;
  pid: number;
  state: string;
  connections?: number;
}

export interface NodeStatus {
  running: boolean;
  ready: boolean;
  pid: number;
  nodeId: string;
  workers: WorkerStatus[];
  connections: number;
  users: number;
}

export interface NodeHandle {
  nodeId: string;
  url: string;
  port: number;
  /** The primary's pid (also the node's process group id). */
  pid: number;
  pidFile: string;
  logs: string[];
  /** Resolves with the primary's exit code (null when killed by a signal). */
  exited: Promise<number | null>;
  /** `status --json` of this node, run without blocking the test's event loop. */
  status(): Promise<NodeStatus>;
  /** Every pid of the node: the primary's and its workers' (from `status --json`). */
  pids(): Promise<number[]>;
  /** `GET /readyz` on this node directly: the HTTP status. */
  readyz(): Promise<number>;
  /**
   * SIGKILLs the whole process group at once (primary and workers), then resolves once every one
   * of `pids` (default: the node's pids read just before) is gone.
   */
  kill(): Promise<void>;
  /** Graceful stop (SIGTERM to the primary), SIGKILL of the group after 20 s. Idempotent. */
  stop(): Promise<void>;
}

/** True while the process exists and is not a zombie. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    // A killed worker whose parent died is a zombie until init reaps it (maybe never in a container).
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** Plain HTTP GET; resolves with the status code and body. */
export function httpGet(
  url: string,
  opts: { localAddress?: string; timeoutMs?: number } = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { localAddress: opts.localAddress, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => {
        body += d;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      res.on("error", reject);
    });
    req.setTimeout(opts.timeoutMs ?? 5000, () => req.destroy(new Error(`GET ${url}: timeout`)));
    req.on("error", reject);
  });
}

/**
 * Starts a node (`start --adapter redis`) on a free port in its own process group and resolves once
 * its primary logs "ready"; rejects with its output if it exits first.
 */
export async function startNode(opts: NodeOptions): Promise<NodeHandle> {
  const dir = tempDir("weigot-ws-node-");
  const pidFile = path.join(dir, "weigot-ws.pid");
  const args = [
    CLI,
    "start",
    "--adapter",
    "redis",
    "--redis-url",
    opts.redisUrl,
    "--node-id",
    opts.nodeId,
    "--node-timeout",
    String(opts.nodeTimeout ?? 3),
    "--port",
    "0",
    "--host",
    "127.0.0.1",
    "--workers",
    String(opts.workers ?? 2),
    "--pid-file",
    pidFile,
    "--log-format",
    "json",
    "--log-level",
    "info",
    ...(opts.prefix ? ["--redis-prefix", opts.prefix] : []),
    ...(opts.args ?? []),
  ];
  const proc: ChildProcess = spawn(process.execPath, args, {
    env: { ...process.env, ...TEST_LIMITS_ENV },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  const pid = proc.pid ?? 0;
  const killGroup = () => {
    try {
      process.kill(-pid, "SIGKILL");
    } catch {
      // already gone
    }
  };
  // Detached: nothing else would stop the node if this test process ended without after().
  process.once("exit", killGroup);
  const logs: string[] = [];
  const exited = new Promise<number | null>((resolve) =>
    proc.once("exit", (code) => resolve(code)),
  );
  const port = await new Promise<number>((resolve, reject) => {
    let buf = "";
    const onData = (d: Buffer) => {
      buf += d.toString();
      for (let i = buf.indexOf("\n"); i !== -1; i = buf.indexOf("\n")) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        logs.push(line);
        if (process.env.WWS_TEST_LOGS) process.stderr.write(`[${opts.nodeId}] ${line}\n`);
        try {
          const e = JSON.parse(line) as { message?: string; component?: string; port?: number };
          if (e.message === "ready" && e.component === "primary" && e.port) resolve(e.port);
        } catch {
          // not JSON (a stack trace)
        }
      }
    };
    proc.stdout?.on("data", onData);
    proc.stderr?.on("data", onData);
    exited.then((code) =>
      reject(new Error(`node ${opts.nodeId} exited (${code}) before ready:\n${logs.join("\n")}`)),
    );
    setTimeout(
      () => reject(new Error(`node ${opts.nodeId} not ready in 30 s:\n${logs.join("\n")}`)),
      30_000,
    ).unref();
  }).catch((err: unknown) => {
    killGroup();
    process.removeListener("exit", killGroup);
    rmSync(dir, { recursive: true, force: true });
    throw err;
  });

  const url = `http://127.0.0.1:${port}`;
  const status = async (): Promise<NodeStatus> => {
    const r: CliResult = await runCliAsync(["status", "--json", "--pid-file", pidFile]);
    if (r.code !== 0) throw new Error(`status of ${opts.nodeId}: exit ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout) as NodeStatus;
  };
  const pids = async () => {
    const s = await status();
    return [s.pid, ...s.workers.map((w) => w.pid)];
  };
  let stopping: Promise<void> | undefined;
  return {
    nodeId: opts.nodeId,
    url,
    port,
    pid,
    pidFile,
    logs,
    exited,
    status,
    pids,
    readyz: async () => (await httpGet(`${url}/readyz`)).status,
    kill: async () => {
      const all = await pids().catch(() => [pid]);
      killGroup();
      await exited;
      await waitUntil(
        () => all.every((p) => !processAlive(p)),
        `every process of node ${opts.nodeId} to be gone`,
      );
    },
    stop: () => {
      stopping ??= (async () => {
        if (proc.exitCode === null && proc.signalCode === null) {
          proc.kill("SIGTERM");
          const timer = setTimeout(killGroup, 20_000);
          await exited;
          clearTimeout(timer);
        }
        // Workers that outlived their primary (they should not) go with the group.
        killGroup();
        process.removeListener("exit", killGroup);
        rmSync(dir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
}

/**
 * socket.io-client options that connect from `localAddress` (127.0.0.x) over either transport:
 * engine.io-client hands `agent` to xmlhttprequest-ssl (polling) and `agent`/`localAddress` to ws.
 */
export function fromAddress(localAddress: string, opts: ClientOptions = {}): ClientOptions {
  return {
    ...opts,
    localAddress,
    agent: new http.Agent({ localAddress }) as unknown as string,
  } as ClientOptions;
}

/**
 * For each node behind nginx, a 127.0.0.x source address that nginx routes to it: probes
 * 127.0.0.2, .3, ... with a plain GET through nginx and reads the access log's `upstream=`.
 */
export async function addressesPerNode(
  nginx: NginxHandle,
  nodePorts: number[],
  candidates = 60,
): Promise<Map<number, string>> {
  const found = new Map<number, string>();
  for (let i = 2; i < 2 + candidates && found.size < nodePorts.length; i++) {
    const addr = `127.0.0.${i}`;
    const res = await httpGet(`${nginx.url}/config.json?probe=${i}`, { localAddress: addr });
    if (res.status !== 200)
      throw new Error(`GET /config.json via nginx from ${addr}: ${res.status}`);
    const line = await waitUntil(
      () =>
        nginx
          .output()
          .split("\n")
          .find((l) => l.startsWith(`${addr} `) && l.includes(`probe=${i} `)),
      `nginx access log line of the probe from ${addr}`,
    );
    const upstream = /upstream=127\.0\.0\.1:(\d+)/.exec(line)?.[1];
    const port = Number(upstream);
    if (nodePorts.includes(port) && !found.has(port)) found.set(port, addr);
  }
  if (found.size < nodePorts.length) {
    throw new Error(`no source address found for every node: ${JSON.stringify([...found])}`);
  }
  return found;
}
