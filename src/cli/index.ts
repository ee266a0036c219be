#!/usr/bin/env node
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { ConfigError, DEFAULTS, parseConfig } from "../config/config.js";
import { reload } from "./commands/reload.js";
import { restart } from "./commands/restart.js";
import { start } from "./commands/start.js";
import { status } from "./commands/status.js";
import { stop } from "./commands/stop.js";
import { configFromArgv, serviceOptions } from "./options.js";

const args = hideBin(process.argv);

/** Runs a command and exits with its code; a bad config is reported by key, not as a stack. */
function run(fn: () => Promise<number>): Promise<void> {
  // A config error thrown before fn's first await must end up here too, not as a stack trace.
  return Promise.resolve()
    .then(fn)
    .then(
      (code) => process.exit(code),
      (err: unknown) => {
        const message =
          err instanceof ConfigError
            ? err.message
            : err instanceof Error
              ? err.message
              : String(err);
        process.stderr.write(`weigot-ws: ${message}\n`);
        process.exit(1);
      },
    );
}

// Every command accepts every option (hidden), so that the environment a deployment sets for
// `start` (WEIGOT_WS_*) does not make `status` or `stop` refuse it as unknown.
const pidOptions = {
  ...Object.fromEntries(
    Object.entries(serviceOptions()).map(([k, o]) => [k, { ...o, hidden: true }]),
  ),
  ...serviceOptions(["pidFile", "shutdownTimeout"]),
};
const commandArgs = args.slice(1);

await yargs(args)
  .scriptName("weigot-ws")
  .usage("$0 <command> [options]")
  .env("WEIGOT_WS")
  .parserConfiguration({ "duplicate-arguments-array": false })
  .config("config", "a JSON file of options (camelCase keys, as in the README)")
  .command(
    "start",
    "start the service (foreground; -d to detach)",
    (y) => y.options(serviceOptions()),
    (argv) => run(() => start(configFromArgv(argv), commandArgs)),
  )
  .command(
    "stop",
    "stop the service gracefully",
    (y) => y.options(pidOptions),
    (argv) =>
      run(async () => {
        const c = parseConfig(configFromArgv(argv));
        return stop(c.pidFile, c.shutdownTimeout);
      }),
  )
  .command(
    "restart",
    "stop, then start in the background with the same options",
    (y) => y.options(serviceOptions()),
    (argv) => run(() => restart(configFromArgv(argv), commandArgs)),
  )
  .command(
    "reload",
    "re-read the apps, then a rolling restart of the workers (--apps: the apps only)",
    (y) =>
      y.options({
        ...pidOptions,
        apps: {
          type: "boolean",
          describe: "only re-read the apps (--apps-file / the config file), restarting nothing",
        },
      }),
    (argv) => run(() => reload(parseConfig(configFromArgv(argv)).pidFile, argv.apps === true)),
  )
  .command(
    "status",
    "show whether the service runs, its workers, connections and users (exit 3 when stopped)",
    (y) =>
      y.options({
        ...pidOptions,
        json: { type: "boolean", describe: "machine-readable output", default: false },
      }),
    (argv) => run(() => status(parseConfig(configFromArgv(argv)).pidFile, argv.json === true)),
  )
  .demandCommand(1, "name a command: start, stop, restart, reload or status")
  .strict()
  .epilogue(
    `Every option is also an environment variable: --redis-url is WEIGOT_WS_REDIS_URL. Default PID file: ${DEFAULTS.pidFile}`,
  )
  .help()
  .alias("h", "help")
  .version()
  .wrap(Math.min(110, process.stdout.columns || 100))
  .parseAsync();
