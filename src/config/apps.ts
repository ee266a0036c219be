import { readFileSync } from "node:fs";
import { APP_ID, DEFAULT_APP } from "../apps/app-scope.js";
import { type AppSpec, type Config, ConfigError, checkKey, parseConfig } from "./config.js";

/**
 * The config keys an app sets for itself. Keys not listed are the service's (ports, Redis, the
 * engine-level guards, frame size). An app does not inherit the default app's keys, secrets,
 * webhook or JWT claims (PRIVATE); it inherits the service's limits unless it sets its own.
 */
export const APP_KEYS = [
  "apiKey",
  "adminKey",
  "allowedOrigins",
  "jwtAudience",
  "jwtIssuer",
  "maxConnections",
  "maxConnectionsPerUser",
  "messageRate",
  "userMessageRate",
  "messageBytesRate",
  "userMessageBytesRate",
  "stateRate",
  "queryRate",
  "maxRefusals",
  "presenceLimit",
  "listPageSize",
  "maxRoomSize",
  "historySize",
  "historyOnJoin",
  "maxMessageLength",
  "maxImageBytes",
  "webhookUrl",
  "webhookSecret",
  "webhookMessages",
] as const satisfies readonly (keyof Config)[];

/** What an app starts from instead of the default app's own values. */
const PRIVATE: Partial<Config> = {
  apiKey: "",
  adminKey: "",
  jwtAudience: "",
  jwtIssuer: "",
  webhookUrl: "",
  webhookSecret: "",
  webhookMessages: false,
  // The service's --max-connections caps the node; an app's caps that app on the node.
  maxConnections: 0,
};

const MAX_APPS = 1000;
const MAX_SECRETS = 2;

/**
 * The config an app's connections and APIs run with: the service's, with the app's own keys.
 * The default app is the service config itself.
 */
export function appConfig(base: Config, app: AppSpec | undefined): Config {
  if (!app) return base;
  return {
    ...base,
    ...PRIVATE,
    ...app.settings,
    jwtSecret: app.jwtSecrets[0] ?? "",
    apps: [],
  };
}

/** Every app's config by id (the default app's is the service config itself). */
export function appConfigs(config: Config): Map<string, Config> {
  const out = new Map<string, Config>([[DEFAULT_APP, config]]);
  for (const app of config.apps) out.set(app.id, appConfig(config, app));
  return out;
}

/** An app's secrets: every one of them verifies a token (rotation). */
export function secretsOf(base: Config, app: AppSpec | undefined): string[] {
  if (!app) return base.jwtSecret === "" ? [] : [base.jwtSecret];
  return app.jwtSecrets;
}

/**
 * Validates the apps (`[...]` or `{ apps: [...] }`) against the service config `base`: ids,
 * secrets, keys, and each app's settings with the same rules as the flags. Keys and secrets
 * must be unique across apps (and the default app): a shared secret would let one project's
 * tokens into another, a shared key would make the API's app ambiguous.
 */
export function parseApps(raw: unknown, base: Config): AppSpec[] {
  // A file may hold the list itself, or an object with "apps" (a config file: none is no apps).
  const list = isObject(raw) ? (raw.apps ?? []) : raw;
  if (!Array.isArray(list)) throw new ConfigError("apps", "expected an array of apps");
  if (list.length > MAX_APPS) throw new ConfigError("apps", `at most ${MAX_APPS} apps`);
  const seen = new Set<string>();
  const owners = new Map<string, string>();
  const claim = (what: string, value: string, app: string) => {
    if (value === "") return;
    const other = owners.get(`${what}\n${value}`);
    if (other !== undefined) {
      throw new ConfigError("apps", `app "${app}": its ${what} is also app "${other}"'s`);
    }
    owners.set(`${what}\n${value}`, app);
  };
  claim("apiKey", base.apiKey, DEFAULT_APP);
  claim("adminKey", base.adminKey, DEFAULT_APP);
  claim("jwtSecret", base.jwtSecret, DEFAULT_APP);
  const apps: AppSpec[] = [];
  for (const entry of list) {
    const app = parseApp(entry, base);
    if (seen.has(app.id)) throw new ConfigError("apps", `app "${app.id}" is defined twice`);
    seen.add(app.id);
    claim("apiKey", app.settings.apiKey ?? "", app.id);
    claim("adminKey", app.settings.adminKey ?? "", app.id);
    for (const secret of app.jwtSecrets) claim("jwtSecret", secret, app.id);
    apps.push(app);
  }
  return apps;
}

function parseApp(entry: unknown, base: Config): AppSpec {
  if (!isObject(entry)) throw new ConfigError("apps", "each app is an object { id, ... }");
  const id = entry.id;
  if (typeof id !== "string" || !APP_ID.test(id)) {
    throw new ConfigError(
      "apps",
      `app id ${JSON.stringify(id)}: expected 1-64 of a-z 0-9 _ - (starting with a letter or digit)`,
    );
  }
  if (id === DEFAULT_APP) {
    throw new ConfigError("apps", `app id "${DEFAULT_APP}" is the namespace / (the flags' app)`);
  }
  const where = `app "${id}"`;
  const allowed = new Set<string>([...APP_KEYS, "id", "name", "jwtSecret", "jwtSecrets"]);
  for (const key of Object.keys(entry)) {
    if (!allowed.has(key)) {
      throw new ConfigError(
        "apps",
        `${where}: unknown key "${key}" (keys: ${[...allowed].join(", ")})`,
      );
    }
  }
  const name = entry.name ?? id;
  if (typeof name !== "string" || name.trim() === "" || name.length > 100) {
    throw new ConfigError("apps", `${where}: name must be 1-100 characters`);
  }
  const secrets =
    entry.jwtSecrets !== undefined
      ? entry.jwtSecrets
      : entry.jwtSecret !== undefined
        ? [entry.jwtSecret]
        : [];
  if (
    !Array.isArray(secrets) ||
    secrets.length > MAX_SECRETS ||
    secrets.some((s) => typeof s !== "string" || s.length < 16)
  ) {
    throw new ConfigError(
      "apps",
      `${where}: jwtSecrets must be a list of at most ${MAX_SECRETS} secrets of 16+ characters (two during a rotation)`,
    );
  }
  const settings: Partial<Config> = {};
  for (const key of APP_KEYS) {
    if (entry[key] === undefined) continue;
    try {
      (settings as Record<string, unknown>)[key] = checkKey(key, entry[key]);
    } catch (err) {
      throw appError(where, err);
    }
  }
  if ((settings.historySize ?? 0) > base.historySize) {
    throw new ConfigError(
      "apps",
      `${where}: historySize ${settings.historySize} is above the service's --history-size (${base.historySize})`,
    );
  }
  if ((settings.maxImageBytes ?? 0) > base.maxImageBytes) {
    throw new ConfigError(
      "apps",
      `${where}: maxImageBytes ${settings.maxImageBytes} is above the service's --max-image-bytes (${base.maxImageBytes})`,
    );
  }
  const spec: AppSpec = { id, name: name.trim(), jwtSecrets: secrets as string[], settings };
  // The cross-key rules of the flags (webhook secret with a URL, origins, byte rates vs images).
  try {
    const effective = appConfig(base, spec);
    parseConfig({ ...effective, apps: undefined, configFile: undefined });
  } catch (err) {
    throw appError(where, err);
  }
  return spec;
}

function appError(where: string, err: unknown): ConfigError {
  if (err instanceof ConfigError)
    return new ConfigError("apps", `${where}: ${err.key}: ${err.detail}`);
  return new ConfigError("apps", `${where}: ${String(err)}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * The apps the service runs with, read from where they are kept: `--apps-file`, else the
 * `--config` file's `apps` key, else those given (raw, validated here), else the config's own.
 * Called at start and by every reload, so that an edited file takes effect without a restart.
 */
export function loadApps(config: Config, given?: unknown): AppSpec[] {
  if (config.appsFile !== "") return parseApps(readJson(config.appsFile), config);
  if (config.configFile !== "") {
    const file = readJson(config.configFile);
    return parseApps(isObject(file) && file.apps !== undefined ? file.apps : [], config);
  }
  return given === undefined ? config.apps : parseApps(given, config);
}

function readJson(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError("apps", `cannot read ${file}: ${(err as Error).message}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new ConfigError("apps", `${file} is not JSON: ${(err as Error).message}`);
  }
}
