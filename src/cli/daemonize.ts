import { spawn } from "node:child_process";
import { openSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Status } from "../cluster/primary.js";
import type { Config } from "../config/config.js";
import { callControl } from "./control-client.js";

const CLI = fileURLToPath(new URL("./index.js", import.meta.url));

/**
 * Starts the service in the background and returns once it is ready (exit 0) or has failed
 * (exit 1, with the end of its log). `argv` are the user's own flags, passed on unchanged.
 */
export async function daemonize(config: Config, argv: string[]): Promise<number> {
  const out = openSync(config.logFile, "a");
  const flags = withoutFlags(argv, ["--pid-file", "--log-file"], ["-d", "--daemon", "--no-daemon"]);
  const child = spawn(
    process.execPath,
    [
      CLI,
      "start",
      ...flags,
      "--no-daemon",
      "--log-file",
      config.logFile,
      "--pid-file",
      config.pidFile,
    ],
    { detached: true, stdio: ["ignore", out, out], env: process.env },
  );
  let exited: number | null = null;
  child.on("exit", (code) => {
    exited = code ?? 1;
  });
  child.unref();
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (exited !== null) {
      process.stderr.write(`weigot-ws failed to start (exit ${exited}); see ${config.logFile}\n`);
      return 1;
    }
    try {
      const status = await callControl<Status>(config.pidFile, "GET", "/status", 2000);
      if (status.pid === child.pid) {
        process.stdout.write(
          `weigot-ws started (pid ${status.pid}) on ${status.host}:${status.port}, ${status.workers.length} workers, log ${config.logFile}\n`,
        );
        return 0;
      }
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  process.stderr.write(`weigot-ws did not become ready within 60 s; see ${config.logFile}\n`);
  return 1;
}

/** argv minus the named options (`--x v` and `--x=v`) and switches, which the caller sets itself. */
function withoutFlags(argv: string[], options: string[], switches: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const name = arg.split("=")[0];
    if (switches.includes(name)) continue;
    if (options.includes(name)) {
      if (!arg.includes("=")) i++;
      continue;
    }
    out.push(arg);
  }
  return out;
}
