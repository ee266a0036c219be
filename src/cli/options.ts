import type { Options } from "yargs";
import { type Config, DEFAULTS, kebab, RULES } from "../config/config.js";

const DESCRIBE: { [K in keyof Config]: string } = {
  port: "TCP port to listen on (0 = any free port)",
  host: "address to bind",
  workers: "number of worker processes (default: number of CPUs)",
  adapter: "cluster (one machine, no Redis) or redis (many machines)",
  redisUrl: "Redis URL for --adapter redis",
  redisPrefix: "prefix of every Redis key and channel",
  redisWait: "seconds to wait for Redis at start",
  nodeId: "this node's name (default: hostname-pid)",
  nodeTimeout: "seconds before a silent node's users go offline",
  pidFile: "PID file of the primary",
  logFile: "log file (default with --daemon: beside the PID file)",
  logLevel: "error | warn | info | debug",
  logFormat: "auto | json | pretty",
  jwtSecret: "HS256 secret for client tokens; empty = open service",
  apiKey: "bearer key of the backends' HTTP push API; empty = API off",
  shutdownTimeout: "seconds a graceful stop may take",
  maxMessageLength: "most characters in a text message",
  maxImageBytes: "most bytes in an image message",
  maxFrameBytes: "largest Socket.IO frame accepted, in bytes",
  presenceLimit: "rooms above this many users: no 202/203, connect-time 201 cut (0 = no limit)",
  daemon: "run in the background",
};

/** The yargs options of every config key, built from the one rules table. Raw strings are
 * kept (no yargs coercion) so that parseConfig can name a bad value as the user typed it. */
export function serviceOptions(
  keys = Object.keys(RULES) as (keyof Config)[],
): Record<string, Options> {
  const out: Record<string, Options> = {};
  for (const key of keys) {
    const rule = RULES[key];
    const dflt =
      key === "workers" || key === "nodeId" || key === "pidFile" ? undefined : DEFAULTS[key];
    out[kebab(key)] = {
      describe: DESCRIBE[key],
      type: rule.kind === "bool" ? "boolean" : "string",
      choices: rule.kind === "enum" ? [...rule.values] : undefined,
      requiresArg: rule.kind !== "bool",
      defaultDescription: dflt === undefined || dflt === "" ? undefined : String(dflt),
      group: "Service options:",
    };
  }
  if (out.daemon) out.daemon.alias = "d";
  return out;
}

/** The keys of a parsed argv that are config keys (yargs adds both spellings and aliases). */
export function configFromArgv(argv: Record<string, unknown>): Record<string, unknown> {
  const raw: Record<string, unknown> = {};
  for (const key of Object.keys(RULES)) if (argv[key] !== undefined) raw[key] = argv[key];
  return raw;
}
