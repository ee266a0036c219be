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
  redisSentinels: "Redis Sentinels host:port,… to find the master through (follows failovers)",
  redisSentinelName: "the master's name in the sentinels' config",
  redisCluster: "Redis Cluster (Redis >= 7) seed nodes host:port,…",
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
  jwtAudience: "comma-separated aud values a JWT must carry one of",
  jwtIssuer: "the iss a JWT must carry",
  allowedOrigins: "origins browser pages may connect from (comma-separated, * = any)",
  trustedProxies: "addresses/CIDRs of proxies whose X-Forwarded-For is believed",
  maxConnections: "most sessions on this node (0 = no limit)",
  maxConnectionsPerAddress: "most sessions from one client address (0 = no limit)",
  maxConnectionsPerUser: "most connections of one userId on this node (0 = no limit)",
  connectRate: "new sessions per client address, <count>/<seconds>s (0 = no limit)",
  requestTimeout: "seconds a connection has to send its whole request head",
  maxPendingConnections: "connections held before their request head is read (0 = no limit)",
  messageRate: "chat messages per connection, <count>/<seconds>s (0 = off)",
  userMessageRate: "chat messages per user across nodes, <count>/<seconds>s (0 = off)",
  messageBytesRate: "chat message bytes per connection, <bytes>/<seconds>s (0 = off)",
  userMessageBytesRate: "chat message bytes per user across nodes, <bytes>/<seconds>s (0 = off)",
  stateRate: "state messages per connection, <count>/<seconds>s (0 = off)",
  queryRate: "info/onlineList requests per connection, <count>/<seconds>s (0 = off)",
  maxRefusals: "refusals within 10 s before a connection is dropped (0 = never)",
  maxBufferedBytes: "bytes queued for one slow connection before it is dropped (0 = no limit)",
  listPageSize: "most users in one onlineList reply (bigger rooms are paged)",
  historySize: "messages kept per room for replay",
  historyTtl: "seconds an idle room's history is kept",
  historyOnJoin: "last messages a new connection without since receives (0 = none)",
  adminKey: "bearer key of the admin API; empty = admin API off",
  webhookUrl: "URL webhook events are POSTed to; empty = webhooks off",
  webhookSecret: "HMAC-SHA256 secret signing webhook bodies (X-Weigot-Signature)",
  webhookMessages: "also send every chat message as a webhook event",
  webhookQueueSize: "most webhook events kept while the receiver fails",
  maxRoomSize: "most users in one room (0 = no limit)",
  appsFile: "JSON file of apps (tenants), re-read by reload and SIGHUP",
  daemon: "run in the background",
  apps: "",
  configFile: "",
};

/** The yargs options of every config key, built from the one rules table. Raw strings are
 * kept (no yargs coercion) so that parseConfig can name a bad value as the user typed it. */
export function serviceOptions(
  keys = Object.keys(RULES) as (keyof Config)[],
): Record<string, Options> {
  const out: Record<string, Options> = {};
  for (const key of keys) {
    const rule = RULES[key];
    if (rule.kind === "internal") continue;
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
  // The --config file's `apps` (not a flag: strict mode must not refuse it).
  if (keys.includes("apps")) out.apps = { hidden: true };
  return out;
}

/** The keys of a parsed argv that are config keys (yargs adds both spellings and aliases). */
export function configFromArgv(argv: Record<string, unknown>): Record<string, unknown> {
  const raw: Record<string, unknown> = {};
  for (const key of Object.keys(RULES)) {
    if (RULES[key as keyof typeof RULES].kind !== "internal" && argv[key] !== undefined) {
      raw[key] = argv[key];
    }
  }
  // The --config file's own keys arrive merged into argv by yargs: its apps, and its path, so
  // that reload can read it again.
  if (argv.apps !== undefined) raw.apps = argv.apps;
  if (typeof argv.config === "string") raw.configFile = argv.config;
  return raw;
}
