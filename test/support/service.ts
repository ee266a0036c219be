import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const CLI = path.join(ROOT, "dist/cli/index.js");

export interface ServiceHandle {
  url: string;
  port: number;
  /** The primary's pid. */
  pid: number;
  pidFile: string;
  dir: string;
  proc: ChildProcess;
  /** Every log line so far (JSON strings). */
  logs: string[];
  /** Runs another CLI command against this instance (same pid file); resolves with its result. */
  cli(args: string[], env?: Record<string, string>): CliResult;
  /** Graceful stop (SIGTERM); resolves when the primary has exited. Idempotent. */
  stop(): Promise<void>;
  exited: Promise<number | null>;
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI synchronously, as a user would from a shell. */
export function runCli(
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = 60_000,
): CliResult {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    env: { ...process.env, ...env },
    encoding: "utf8",
    timeout: timeoutMs,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Runs the built CLI without blocking the test's event loop (clients keep working). */
export function runCliAsync(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/**
 * Every test client connects from 127.0.0.1, so the per-address limits (meant for the public,
 * one address per client) are lifted unless a test sets them; flags and the test's own env win.
 */
export const TEST_LIMITS_ENV: Record<string, string> = {
  WEIGOT_WS_CONNECT_RATE: "0",
  WEIGOT_WS_MAX_CONNECTIONS_PER_ADDRESS: "0",
};

/**
 * The protocol suites send bursts nobody types (dozens of messages at once): they run with the
 * chat rate limits raised, not off, so the guard still sees every event; the limits themselves
 * are tested in rate-limits*.test.ts.
 */
export const SCRIPTED_RATES = [
  "--message-rate",
  "10000/10s",
  "--user-message-rate",
  "10000/10s",
  "--state-rate",
  "10000/10s",
  "--query-rate",
  "10000/10s",
];

export function tempDir(prefix = "weigot-ws-test-"): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

/**
 * Starts the built CLI in the foreground as a child process, on a free port (port 0), with
 * 2 workers unless told otherwise, and resolves once the primary logs "ready".
 */
export async function startService(
  args: string[] = [],
  env: Record<string, string> = {},
): Promise<ServiceHandle> {
  const dir = tempDir();
  const pidFile = path.join(dir, "weigot-ws.pid");
  const full = [
    "start",
    "--port",
    "0",
    "--host",
    "127.0.0.1",
    "--workers",
    "2",
    "--pid-file",
    pidFile,
  ];
  full.push("--log-format", "json", "--log-level", "info", ...args);
  const proc = spawn(process.execPath, [CLI, ...full], {
    env: { ...process.env, ...TEST_LIMITS_ENV, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const logs: string[] = [];
  const exited = new Promise<number | null>((resolve) => proc.on("exit", (code) => resolve(code)));
  const port = await new Promise<number>((resolve, reject) => {
    let buf = "";
    const onLine = (line: string) => {
      logs.push(line);
      if (process.env.WWS_TEST_LOGS) process.stderr.write(`${line}\n`);
      try {
        const entry = JSON.parse(line) as { message?: string; port?: number; component?: string };
        if (entry.message === "ready" && entry.component === "primary" && entry.port)
          resolve(entry.port);
      } catch {
        // not JSON: a crash trace
      }
    };
    const onData = (d: Buffer) => {
      buf += d.toString();
      let i = buf.indexOf("\n");
      while (i !== -1) {
        onLine(buf.slice(0, i));
        buf = buf.slice(i + 1);
        i = buf.indexOf("\n");
      }
    };
    proc.stdout.on("data", onData);
    proc.stderr.on("data", onData);
    exited.then((code) =>
      reject(new Error(`service exited (${code}) before ready:\n${logs.join("\n")}`)),
    );
    setTimeout(
      () => reject(new Error(`service not ready in 30 s:\n${logs.join("\n")}`)),
      30_000,
    ).unref();
  });
  let stopping: Promise<void> | undefined;
  const handle: ServiceHandle = {
    url: `http://127.0.0.1:${port}`,
    port,
    pid: proc.pid ?? 0,
    pidFile,
    dir,
    proc,
    logs,
    exited,
    cli: (more, extraEnv = {}) => runCli([...more, "--pid-file", pidFile], { ...env, ...extraEnv }),
    stop: () => {
      stopping ??= (async () => {
        if (proc.exitCode === null && proc.signalCode === null) {
          proc.kill("SIGTERM");
          const timer = setTimeout(() => proc.kill("SIGKILL"), 20_000);
          await exited;
          clearTimeout(timer);
        }
        rmSync(dir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
  return handle;
}

/** Polls until `check` returns a truthy value, or fails after the deadline. */
export async function waitUntil<T>(
  check: () => T | Promise<T>,
  what: string,
  timeoutMs = 10_000,
  intervalMs = 25,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(
    `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ""}`,
  );
}

/** The service's JSON log lines with this message (other lines, e.g. stack traces, are skipped). */
export function logged(logs: string[], message: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of logs) {
    try {
      const entry = JSON.parse(line) as Record<string, unknown>;
      if (entry.message === message) out.push(entry);
    } catch {
      // not JSON (a stack trace)
    }
  }
  return out;
}
