import os from "node:os";
import path from "node:path";
import { ClientAddresses } from "../http/client-address.js";

/** Everything the service can be told. Each field is a CLI flag (kebab-case), an environment
 * variable `WEIGOT_WS_<FLAG>` and a key of the `--config` JSON file (camelCase). */
export interface Config {
  /** TCP port the primary listens on (0 = any free port). @default 9601 */
  port: number;
  /** Address to bind. @default "0.0.0.0" */
  host: string;
  /** Number of worker processes. @default os.availableParallelism() */
  workers: number;
  /** `cluster` (one machine, no Redis) or `redis` (many machines). @default "cluster" */
  adapter: "cluster" | "redis";
  /** Redis URL, required with `--adapter redis`. @default "redis://127.0.0.1:6379" */
  redisUrl: string;
  /** Prefix of every Redis key and channel, so deployments can share one Redis. @default "weigot-ws" */
  redisPrefix: string;
  /** Seconds to wait for Redis at start before failing (0 = fail at once). @default 0 */
  redisWait: number;
  /**
   * Sentinels (`host:port,…`) to find the Redis master through (Redis with Sentinel): the
   * service follows a failover by itself; `redisUrl`'s host is then not used. @default ""
   */
  redisSentinels: string;
  /** The master's name in the sentinels' config (`sentinel monitor <name> …`). @default "mymaster" */
  redisSentinelName: string;
  /** Seed nodes (`host:port,…`) of a Redis Cluster (Redis ≥ 7): the sharded layout. @default "" */
  redisCluster: string;
  /** This node's name in the cluster. @default `${hostname}-${pid}` */
  nodeId: string;
  /** Seconds after which a silent node is declared dead and its users go offline. @default 15 */
  nodeTimeout: number;
  /** PID file of the primary. @default `${os.tmpdir()}/weigot-ws.pid` */
  pidFile: string;
  /** Log file (always used with --daemon; otherwise logs go to stdout). @default "" */
  logFile: string;
  /** error | warn | info | debug. @default "info" */
  logLevel: "error" | "warn" | "info" | "debug";
  /** `json`, `pretty`, or `auto` (pretty on a TTY, JSON otherwise). @default "auto" */
  logFormat: "auto" | "json" | "pretty";
  /** HS256 secret for client JWTs; empty runs the service open (anyone may claim any name). @default "" */
  jwtSecret: string;
  /** Bearer key of the backends' HTTP API (`/api/v1/...`); empty disables the API. @default "" */
  apiKey: string;
  /** Seconds a graceful stop may take before the primary exits anyway. @default 10 */
  shutdownTimeout: number;
  /** Most characters in a text message. @default 4096 */
  maxMessageLength: number;
  /** Most bytes of an image message (the URL or data URL). @default 1_000_000 */
  maxImageBytes: number;
  /** Largest Socket.IO frame accepted, in bytes (larger frames close the connection). @default 1_500_000 */
  maxFrameBytes: number;
  /**
   * Rooms with more users than this get no 202/203 broadcasts and a connect-time 201 cut to this
   * many users (with `total`); `onlineList` pages through everyone. 0 = no limit. @default 1000
   */
  presenceLimit: number;
  /** Comma-separated `aud` values a JWT must carry one of (empty = not checked). @default "" */
  jwtAudience: string;
  /** The `iss` a JWT must carry (empty = not checked). @default "" */
  jwtIssuer: string;
  /**
   * Origins a browser page may connect from: comma-separated `scheme://host[:port]`, or `*` for
   * any. Requests without an `Origin` header (non-browser clients) are not affected. @default "*"
   */
  allowedOrigins: string;
  /**
   * Comma-separated addresses or CIDRs of reverse proxies whose `X-Forwarded-For` is believed
   * (e.g. nginx in front). Empty: the peer address is the client's. @default ""
   */
  trustedProxies: string;
  /** Most simultaneous Engine.IO sessions on this node (0 = no limit). @default 20000 */
  maxConnections: number;
  /** Most simultaneous sessions from one client address on this node (0 = no limit). @default 200 */
  maxConnectionsPerAddress: number;
  /** Most simultaneous connections of one userId on this node (0 = no limit). @default 20 */
  maxConnectionsPerUser: number;
  /** New sessions per client address: `<count>/<seconds>s` (`0` = no limit). @default "60/10s" */
  connectRate: string;
  /** Seconds a new TCP connection has to send its whole request head (a deadline, not an idle timer). @default 10 */
  requestTimeout: number;
  /** Most connections the primary holds before their request head is read (0 = no limit). @default 1000 */
  maxPendingConnections: number;
  /** Chat messages (text, img, notices) per connection: `<count>/<seconds>s` (`0` = off). @default "20/4s" */
  messageRate: string;
  /** Chat messages per user, across workers and nodes. @default "30/4s" */
  userMessageRate: string;
  /** Bytes of chat messages per connection (images weigh their size). @default "4000000/10s" */
  messageBytesRate: string;
  /** Bytes of chat messages per user, across workers and nodes. @default "6000000/10s" */
  userMessageBytesRate: string;
  /** `state` messages (typing, status) per connection. @default "20/4s" */
  stateRate: string;
  /** `info` and `onlineList` requests per connection. @default "20/10s" */
  queryRate: string;
  /**
   * Refusals (rate limits, bad frames) a connection may collect within 10 s before it is
   * disconnected with E_RATE_LIMITED (0 = never). @default 50
   */
  maxRefusals: number;
  /**
   * Bytes queued for one connection (not yet taken by the client) before it is dropped with
   * E_SLOW_CONSUMER (0 = no limit). @default 8_000_000
   */
  maxBufferedBytes: number;
  /** Most users in one `onlineList` reply; bigger rooms are paged (`{ cursor }`). @default 1000 */
  listPageSize: number;
  /**
   * Messages kept per room (and per user's private messages in a room) for replay; 0 keeps none
   * (messages are still numbered and ordered, so gaps show). @default 100
   */
  historySize: number;
  /** Seconds an idle room's history is kept. @default 86400 */
  historyTtl: number;
  /** Last messages of the room a new connection without `since` receives (0 = none). @default 20 */
  historyOnJoin: number;
  /** Bearer key of the admin API (`/api/v1/admin/...`); empty disables it. @default "" */
  adminKey: string;
  /** URL the webhook events are POSTed to; empty disables webhooks. @default "" */
  webhookUrl: string;
  /** HMAC-SHA256 secret of the `X-Weigot-Signature` header (required with --webhook-url). @default "" */
  webhookSecret: string;
  /** Also send every chat message as a webhook event. @default false */
  webhookMessages: boolean;
  /** Most webhook events kept while the receiver is failing (older ones are dropped, counted). @default 10000 */
  webhookQueueSize: number;
  /** Most users in one room (0 = no limit); a handshake into a full room gets E_ROOM_FULL. @default 0 */
  maxRoomSize: number;
  /**
   * A JSON file of apps (`[{ id, jwtSecrets, apiKey, ... }]` or `{ "apps": [...] }`), re-read by
   * `reload` and SIGHUP. Without it, apps come from the `--config` file's `apps` key. @default ""
   */
  appsFile: string;
  /** Detach and run in the background. @default false */
  daemon: boolean;
  /** The tenants besides the default app (namespace `/`): see src/apps/app-spec.ts. @default [] */
  apps: AppSpec[];
  /** The `--config` file the service started with (its `apps` are re-read by reload). @default "" */
  configFile: string;
}

/**
 * An app (a tenant: one project's namespace, keys, rooms and limits), as validated from the apps
 * file by parseApps (config/apps.ts).
 */
export interface AppSpec {
  /** The namespace is `/<id>`. */
  id: string;
  /** Shown on the chat page and in the admin API. */
  name: string;
  /** HS256 secrets; a token signed with any of them is accepted (two during a rotation). */
  jwtSecrets: string[];
  /** The config keys the app sets for itself; src/config/apps.ts APP_KEYS lists them. */
  settings: Partial<Config>;
}

/** A `<count>/<seconds>s` rate, as the rate keys take it. */
export interface Rate {
  points: number;
  seconds: number;
}

const RATE = /^(\d+)\/(\d+)s?$/;

/** Parses a rate key's value; undefined means no limit (`0`). */
export function parseRate(value: string): Rate | undefined {
  if (value.trim() === "0") return undefined;
  const m = RATE.exec(value.trim());
  if (!m) return undefined;
  const points = Number(m[1]);
  const seconds = Number(m[2]);
  return points > 0 && seconds > 0 ? { points, seconds } : undefined;
}

export const DEFAULTS: Config = {
  port: 9601,
  host: "0.0.0.0",
  workers: Math.max(1, os.availableParallelism()),
  adapter: "cluster",
  redisUrl: "redis://127.0.0.1:6379",
  redisPrefix: "weigot-ws",
  redisWait: 0,
  redisSentinels: "",
  redisSentinelName: "mymaster",
  redisCluster: "",
  nodeId: `${os.hostname()}-${process.pid}`,
  nodeTimeout: 15,
  pidFile: path.join(os.tmpdir(), "weigot-ws.pid"),
  logFile: "",
  logLevel: "info",
  logFormat: "auto",
  jwtSecret: "",
  apiKey: "",
  shutdownTimeout: 10,
  maxMessageLength: 4096,
  maxImageBytes: 1_000_000,
  maxFrameBytes: 1_500_000,
  presenceLimit: 1000,
  jwtAudience: "",
  jwtIssuer: "",
  allowedOrigins: "*",
  trustedProxies: "",
  maxConnections: 20_000,
  maxConnectionsPerAddress: 200,
  maxConnectionsPerUser: 20,
  connectRate: "60/10s",
  requestTimeout: 10,
  maxPendingConnections: 1000,
  messageRate: "20/4s",
  userMessageRate: "30/4s",
  messageBytesRate: "4000000/10s",
  userMessageBytesRate: "6000000/10s",
  stateRate: "20/4s",
  queryRate: "20/10s",
  maxRefusals: 50,
  maxBufferedBytes: 8_000_000,
  listPageSize: 1000,
  historySize: 100,
  historyTtl: 86_400,
  historyOnJoin: 20,
  adminKey: "",
  webhookUrl: "",
  webhookSecret: "",
  webhookMessages: false,
  webhookQueueSize: 10_000,
  maxRoomSize: 0,
  appsFile: "",
  daemon: false,
  apps: [],
  configFile: "",
};

export class ConfigError extends Error {
  constructor(
    readonly key: string,
    /** What is wrong, without the key's names. */
    readonly detail: string,
  ) {
    super(
      key === "apps"
        ? `invalid apps (--apps-file or the config file's "apps"): ${detail}`
        : `invalid ${key} (--${kebab(key)} / ${envName(key)}): ${detail}`,
    );
    this.name = "ConfigError";
  }
}

/** `host:port,…` → the nodes, or a ConfigError naming the key. */
export function parseHostList(key: keyof Config, value: string): { host: string; port: number }[] {
  return value
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "")
    .map((item) => {
      const m = /^(\[[0-9a-fA-F:.]+\]|[^:\s]+):(\d{1,5})$/.exec(item);
      const port = Number(m?.[2]);
      if (!m || !(port > 0 && port < 65536)) {
        throw new ConfigError(key, `expected host:port[,host:port…], got ${JSON.stringify(item)}`);
      }
      return { host: m[1].replace(/^\[|\]$/g, ""), port };
    });
}

/** One Redis topology at a time; the cluster layout's hash tags need a prefix without braces. */
function checkRedisTopology(config: Config): void {
  const sentinels = parseHostList("redisSentinels", config.redisSentinels);
  const cluster = parseHostList("redisCluster", config.redisCluster);
  if (sentinels.length === 0 && cluster.length === 0) return;
  const key = sentinels.length > 0 ? "redisSentinels" : "redisCluster";
  if (config.adapter !== "redis") {
    throw new ConfigError(key, "needs --adapter redis");
  }
  if (sentinels.length > 0 && cluster.length > 0) {
    throw new ConfigError(key, "--redis-sentinels and --redis-cluster exclude each other");
  }
  if (cluster.length > 0 && /[{}]/.test(config.redisPrefix)) {
    throw new ConfigError(
      "redisPrefix",
      "must not contain { or } with --redis-cluster (the service adds its own hash tags)",
    );
  }
}

export function kebab(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

export function envName(key: string): string {
  return `WEIGOT_WS_${kebab(key).replace(/-/g, "_").toUpperCase()}`;
}

type Rule =
  | { kind: "int"; min: number; max: number }
  | { kind: "enum"; values: readonly string[] }
  | { kind: "string"; nonEmpty?: boolean }
  | { kind: "bool" }
  | { kind: "rate" }
  /** Not a flag: set from files (apps) or by the CLI itself (configFile). */
  | { kind: "internal" };

/** How each key is checked; the CLI builds its options from the same table. */
export const RULES: { [K in keyof Config]: Rule } = {
  port: { kind: "int", min: 0, max: 65535 },
  host: { kind: "string", nonEmpty: true },
  workers: { kind: "int", min: 1, max: 256 },
  adapter: { kind: "enum", values: ["cluster", "redis"] },
  redisUrl: { kind: "string", nonEmpty: true },
  redisPrefix: { kind: "string", nonEmpty: true },
  redisWait: { kind: "int", min: 0, max: 3600 },
  redisSentinels: { kind: "string" },
  redisSentinelName: { kind: "string", nonEmpty: true },
  redisCluster: { kind: "string" },
  nodeId: { kind: "string", nonEmpty: true },
  nodeTimeout: { kind: "int", min: 2, max: 3600 },
  pidFile: { kind: "string", nonEmpty: true },
  logFile: { kind: "string" },
  logLevel: { kind: "enum", values: ["error", "warn", "info", "debug"] },
  logFormat: { kind: "enum", values: ["auto", "json", "pretty"] },
  jwtSecret: { kind: "string" },
  apiKey: { kind: "string" },
  shutdownTimeout: { kind: "int", min: 1, max: 3600 },
  maxMessageLength: { kind: "int", min: 1, max: 1_000_000 },
  maxImageBytes: { kind: "int", min: 100, max: 50_000_000 },
  maxFrameBytes: { kind: "int", min: 1024, max: 100_000_000 },
  presenceLimit: { kind: "int", min: 0, max: 10_000_000 },
  jwtAudience: { kind: "string" },
  jwtIssuer: { kind: "string" },
  allowedOrigins: { kind: "string", nonEmpty: true },
  trustedProxies: { kind: "string" },
  maxConnections: { kind: "int", min: 0, max: 10_000_000 },
  maxConnectionsPerAddress: { kind: "int", min: 0, max: 10_000_000 },
  maxConnectionsPerUser: { kind: "int", min: 0, max: 1_000_000 },
  connectRate: { kind: "rate" },
  requestTimeout: { kind: "int", min: 1, max: 3600 },
  maxPendingConnections: { kind: "int", min: 0, max: 10_000_000 },
  messageRate: { kind: "rate" },
  userMessageRate: { kind: "rate" },
  messageBytesRate: { kind: "rate" },
  userMessageBytesRate: { kind: "rate" },
  stateRate: { kind: "rate" },
  queryRate: { kind: "rate" },
  maxRefusals: { kind: "int", min: 0, max: 1_000_000 },
  maxBufferedBytes: { kind: "int", min: 0, max: 10_000_000_000 },
  listPageSize: { kind: "int", min: 1, max: 1_000_000 },
  historySize: { kind: "int", min: 0, max: 100_000 },
  historyTtl: { kind: "int", min: 1, max: 31_536_000 },
  historyOnJoin: { kind: "int", min: 0, max: 100_000 },
  adminKey: { kind: "string" },
  webhookUrl: { kind: "string" },
  webhookSecret: { kind: "string" },
  webhookMessages: { kind: "bool" },
  webhookQueueSize: { kind: "int", min: 1, max: 10_000_000 },
  maxRoomSize: { kind: "int", min: 0, max: 10_000_000 },
  appsFile: { kind: "string" },
  daemon: { kind: "bool" },
  apps: { kind: "internal" },
  configFile: { kind: "internal" },
};

/** Checks one key's value as a flag's would be (strings are accepted for numbers and booleans). */
export function checkKey(key: keyof Config, value: unknown): unknown {
  return check(key, RULES[key], value);
}

function check(key: keyof Config, rule: Rule, value: unknown): unknown {
  const shown = JSON.stringify(value);
  switch (rule.kind) {
    case "int": {
      const n = typeof value === "string" && value.trim() !== "" ? Number(value) : value;
      if (typeof n !== "number" || !Number.isInteger(n)) {
        throw new ConfigError(key, `expected an integer, got ${shown}`);
      }
      if (n < rule.min || n > rule.max) {
        throw new ConfigError(key, `expected ${rule.min}..${rule.max}, got ${n}`);
      }
      return n;
    }
    case "enum":
      if (typeof value !== "string" || !rule.values.includes(value)) {
        throw new ConfigError(key, `expected one of ${rule.values.join(", ")}, got ${shown}`);
      }
      return value;
    case "string":
      if (typeof value !== "string") throw new ConfigError(key, `expected a string, got ${shown}`);
      if (rule.nonEmpty && value.trim() === "") throw new ConfigError(key, "must not be empty");
      return value;
    case "bool":
      if (value === true || value === "true" || value === "1") return true;
      if (value === false || value === "false" || value === "0") return false;
      throw new ConfigError(key, `expected true or false, got ${shown}`);
    case "rate":
      if (typeof value !== "string" || (value.trim() !== "0" && !parseRate(value))) {
        throw new ConfigError(key, `expected <count>/<seconds>s (e.g. 20/4s) or 0, got ${shown}`);
      }
      return value.trim();
    case "internal":
      return value;
  }
}

/**
 * Builds the validated config from raw values (flags, environment and file already merged by the
 * CLI; strings are accepted for numbers and booleans). Unknown keys are ignored here: the CLI
 * refuses unknown flags itself.
 */
export function parseConfig(raw: Record<string, unknown>): Config {
  const out: Record<string, unknown> = { ...DEFAULTS };
  for (const key of Object.keys(RULES) as (keyof Config)[]) {
    const value = raw[key];
    if (value === undefined) continue;
    out[key] = check(key, RULES[key], value);
  }
  const config = out as unknown as Config;
  if (config.adapter === "redis" && !/^rediss?:\/\//.test(config.redisUrl)) {
    throw new ConfigError(
      "redisUrl",
      `expected redis://host:port, got ${JSON.stringify(config.redisUrl)}`,
    );
  }
  checkRedisTopology(config);
  try {
    new ClientAddresses(config.trustedProxies);
  } catch (err) {
    throw new ConfigError(
      "trustedProxies",
      `${(err as Error).message.replace(/^--trusted-proxies: /, "")} (expected IPs, CIDRs or loopback, comma-separated)`,
    );
  }
  for (const origin of config.allowedOrigins.split(",").map((o) => o.trim())) {
    if (origin === "*" || origin === "") continue;
    let url: URL | undefined;
    try {
      url = new URL(origin);
    } catch {
      url = undefined;
    }
    const bare = url && url.pathname === "/" && url.search === "" && url.hash === "";
    if (!url || !bare || !/^https?:$/.test(url.protocol) || url.username !== "") {
      throw new ConfigError(
        "allowedOrigins",
        `${JSON.stringify(origin)} is not an origin: expected scheme://host[:port] (e.g. https://chat.example.com) or *`,
      );
    }
  }
  for (const key of ["messageBytesRate", "userMessageBytesRate"] as const) {
    const rate = parseRate(config[key]);
    if (rate && rate.points < config.maxImageBytes && raw[key] === undefined) {
      // A default sized for the default images grows with --max-image-bytes.
      const scale = Math.ceil(config.maxImageBytes / DEFAULTS.maxImageBytes);
      config[key] = `${rate.points * scale}/${rate.seconds}s`;
    } else if (rate && rate.points < config.maxImageBytes) {
      throw new ConfigError(
        key,
        `${rate.points} bytes would refuse every image of up to --max-image-bytes (${config.maxImageBytes})`,
      );
    }
  }
  if (raw.maxBufferedBytes === undefined && config.maxBufferedBytes < 4 * config.maxFrameBytes) {
    config.maxBufferedBytes = Math.max(DEFAULTS.maxBufferedBytes, 4 * config.maxFrameBytes);
  }
  if (config.maxBufferedBytes > 0 && config.maxBufferedBytes < config.maxFrameBytes) {
    throw new ConfigError(
      "maxBufferedBytes",
      `must be 0 or at least --max-frame-bytes (${config.maxFrameBytes}): one message would drop its receivers`,
    );
  }
  if (config.webhookUrl !== "") {
    let url: URL | undefined;
    try {
      url = new URL(config.webhookUrl);
    } catch {
      url = undefined;
    }
    if (!url || !/^https?:$/.test(url.protocol)) {
      throw new ConfigError(
        "webhookUrl",
        `expected an http(s) URL, got ${JSON.stringify(config.webhookUrl)}`,
      );
    }
    if (config.webhookSecret === "") {
      throw new ConfigError(
        "webhookSecret",
        "is required with --webhook-url (receivers check the signature)",
      );
    }
  }
  if (config.daemon && !config.logFile) {
    config.logFile = `${config.pidFile.replace(/\.pid$/, "")}.log`;
  }
  return config;
}
