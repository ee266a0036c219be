import { livePid } from "../../cluster/pid-file.js";
import { AlreadyRunningError, Primary } from "../../cluster/primary.js";
import { loadApps } from "../../config/apps.js";
import { type Config, parseConfig } from "../../config/config.js";
import { daemonize } from "../daemonize.js";

/** `start`: foreground by default (supervisor, docker, systemd); `--daemon` detaches. */
export async function start(raw: Record<string, unknown>, argv: string[]): Promise<number> {
  const config: Config = parseConfig(raw);
  // Checked here, before anything starts (or detaches): a bad apps file is a config error.
  config.apps = loadApps(config, raw.apps ?? []);
  const running = livePid(config.pidFile);
  // Our own pid: a restarted container, where we are pid 1 again and /tmp survived.
  if (running !== undefined && running !== process.pid) {
    process.stderr.write(
      `weigot-ws is already running (pid ${running}, pid file ${config.pidFile})\n`,
    );
    return 1;
  }
  if (config.daemon) return daemonize(config, argv);
  const primary = new Primary(config);
  try {
    await primary.start();
  } catch (err) {
    process.stderr.write(`weigot-ws: ${err instanceof Error ? err.message : String(err)}\n`);
    if (!(err instanceof AlreadyRunningError))
      await primary.stop("failed to start", 1).catch(() => {});
    return 1;
  }
  // Keeps running until a signal stops the primary (which exits the process itself).
  return new Promise<number>(() => {});
}
