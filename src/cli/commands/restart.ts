import { writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { livePid } from "../../cluster/pid-file.js";
import { type Config, parseConfig } from "../../config/config.js";
import { callControl } from "../control-client.js";
import { daemonize } from "../daemonize.js";
import { stop } from "./stop.js";

/**
 * `restart`: stop, then start in the background with the running instance's options
 * (flags given to restart override them).
 */
export async function restart(raw: Record<string, unknown>, argv: string[]): Promise<number> {
  let config: Config = parseConfig(raw);
  let flags = argv;
  if (livePid(config.pidFile) !== undefined) {
    const running = await callControl<Config>(config.pidFile, "GET", "/config", 5000).catch(
      () => undefined,
    );
    if (running) {
      const file = path.join(os.tmpdir(), `weigot-ws-restart-${process.pid}.json`);
      // The apps are read again from where the running instance read them (its apps file, or its
      // --config file's "apps"), so that later reloads keep reading the user's own file.
      const { apps: _apps, configFile, ...options } = running;
      const appsFile = running.appsFile || configFile || "";
      writeFileSync(file, JSON.stringify({ ...options, appsFile, daemon: false }), { mode: 0o600 });
      flags = ["--config", file, ...argv];
      config = parseConfig({ ...running, ...raw });
    }
    const code = await stop(config.pidFile, config.shutdownTimeout);
    if (code !== 0) return code;
  }
  return daemonize(
    {
      ...config,
      logFile: config.logFile || path.join(path.dirname(config.pidFile), "weigot-ws.log"),
    },
    flags,
  );
}
