/**
 * Runs Debian's real supervisord with deploy/supervisor/weigot-ws.conf as its only program.
 *
 * The program file is installed as deploy/README.md says (a conf.d file included by the main
 * supervisord.conf) after the substitutions a site makes — the paths, the Redis URL, the worker
 * count — plus a free port on 127.0.0.1, and without `user=` (supervisord can only switch users
 * as root, and the weigot-ws user does not exist here). Each substitution must match, so a
 * change to the file that these no longer fit fails loudly.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { runCommand } from "./run-command.js";
import { ROOT, tempDir, waitUntil } from "./service.js";

export const SUPERVISOR_CONF = fileURLToPath(
  new URL("../../deploy/supervisor/weigot-ws.conf", import.meta.url),
);

export interface SupervisorHandle {
  dir: string;
  /** The node's pid file (the substituted --pid-file). */
  pidFile: string;
  port: number;
  /** The program's log file (stdout_logfile). */
  logFile: string;
  /** `supervisorctl <args>`: exit code and output. */
  ctl(...args: string[]): Promise<{ code: number | null; output: string }>;
  /** supervisord's own log. */
  log(): string;
  /** Shuts supervisord down (stopping the program as configured); removes the directory. */
  stop(): Promise<void>;
}

function replaceOnce(text: string, from: string | RegExp, to: string): string {
  const re =
    typeof from === "string" ? new RegExp(from.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"), "g") : from;
  const n = [...text.matchAll(re)].length;
  if (n === 0) throw new Error(`weigot-ws.conf: ${String(from)} not found`);
  return text.replace(re, to);
}

export function renderSupervisorConf(
  source: string,
  o: { dir: string; redisUrl: string; port: number; workers: number },
): string {
  let out = replaceOnce(source, /^user=.*\n/gm, "");
  out = replaceOnce(out, "/usr/bin/node", process.execPath);
  out = replaceOnce(out, "/opt/weigot-ws", ROOT);
  out = replaceOnce(out, "/var/lib/weigot-ws", path.join(o.dir, "lib"));
  out = replaceOnce(out, "/var/log/weigot-ws", path.join(o.dir, "log"));
  out = replaceOnce(out, "redis://127.0.0.1:6379", o.redisUrl);
  out = replaceOnce(out, /--workers \d+/g, `--workers ${o.workers}`);
  out = replaceOnce(out, /^(command=.*)$/gm, `$1 --port ${o.port} --host 127.0.0.1`);
  return out;
}

export async function startSupervisor(o: {
  redisUrl: string;
  port: number;
  workers?: number;
}): Promise<SupervisorHandle> {
  const dir = tempDir("weigot-ws-supervisor-");
  for (const d of ["lib", "log", "conf.d"]) mkdirSync(path.join(dir, d));
  const program = renderSupervisorConf(readFileSync(SUPERVISOR_CONF, "utf8"), {
    dir,
    redisUrl: o.redisUrl,
    port: o.port,
    workers: o.workers ?? 2,
  });
  writeFileSync(path.join(dir, "conf.d", "weigot-ws.conf"), program);
  const main = path.join(dir, "supervisord.conf");
  writeFileSync(
    main,
    `[unix_http_server]
file=${dir}/supervisor.sock
[supervisord]
nodaemon=true
logfile=${dir}/supervisord.log
pidfile=${dir}/supervisord.pid
childlogdir=${dir}
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisorctl]
serverurl=unix://${dir}/supervisor.sock
[include]
files = ${dir}/conf.d/*.conf
`,
  );
  const proc: ChildProcess = spawn("supervisord", ["-c", main], { stdio: "ignore" });
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  const ctl = async (...args: string[]) => {
    const r = await runCommand("supervisorctl", ["-c", main, ...args]);
    return { code: r.code, output: r.stdout + r.stderr };
  };
  const log = () => {
    try {
      return readFileSync(path.join(dir, "supervisord.log"), "utf8");
    } catch {
      return "";
    }
  };
  let failed: Error | undefined;
  proc.once("error", (err) => {
    failed = new Error(`supervisord (Debian: apt-get install supervisor): ${err.message}`);
  });
  await waitUntil(
    async () => {
      if (failed) throw failed;
      return (await ctl("pid")).code === 0;
    },
    "supervisord to answer",
    15_000,
  );
  let stopping: Promise<void> | undefined;
  return {
    dir,
    pidFile: path.join(dir, "lib", "weigot-ws.pid"),
    port: o.port,
    logFile: path.join(dir, "log", "weigot-ws.log"),
    ctl,
    log,
    stop: () => {
      stopping ??= (async () => {
        if (proc.exitCode === null) {
          proc.kill("SIGTERM");
          const timer = setTimeout(() => proc.kill("SIGKILL"), 30_000);
          await exited;
          clearTimeout(timer);
        }
        rmSync(dir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
}
