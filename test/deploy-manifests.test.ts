/**
 * The deployment files (docker/, compose.yaml, deploy/) against the service they deploy.
 *
 * Every file is parsed (YAML with `yaml`; nginx.conf, the Dockerfile and the supervisor/systemd
 * ini files with the small parsers below), never grepped. Each command they run must name a CLI
 * subcommand and only flags the CLI has; each WEIGOT_WS_* variable must be one the service reads;
 * the values go through parseConfig(). Flags and variables are derived from RULES in
 * src/config/config.ts, the CLI's own source of options. Ports, probe paths and stop timeouts must
 * agree across the files. nginx.conf is also run through the real nginx (`nginx -t`, and a live
 * proxy in front of two stand-in servers) with test/support/nginx.ts.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { WebSocket, WebSocketServer } from "ws";
import YAML from "yaml";
import {
  type Config,
  ConfigError,
  DEFAULTS,
  envName,
  kebab,
  parseConfig,
  RULES,
} from "../src/config/config.js";
import {
  checkNginxConf,
  freePort,
  NGINX_CONF,
  renderNginxConf,
  startNginx,
} from "./support/nginx.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const at = (...p: string[]) => path.join(ROOT, ...p);
const read = (...p: string[]) => readFileSync(at(...p), "utf8");

/** Socket.IO pingInterval + pingTimeout (25 s + 20 s): the longest silence of a live client. */
const PING_SILENCE_S = 45;
/** The CLI's subcommands (src/cli/index.ts; `weigot-ws <command>`). */
const COMMANDS = ["start", "stop", "restart", "reload", "status"] as const;

// ---------------------------------------------------------------------------------------------
// What the service accepts, derived from src/config/config.ts.

type Key = keyof Config;
const KEYS = Object.keys(RULES) as Key[];
const FLAG_TO_KEY = new Map(KEYS.map((k) => [kebab(k), k]));
const ENV_TO_KEY = new Map(KEYS.map((k) => [envName(k), k]));
/** Flags yargs adds or the CLI defines beside the Config keys. */
const EXTRA_FLAGS = new Set(["config", "help", "version"]);
const SHORT_FLAGS = new Map<string, Key>([["d", "daemon"]]);
/** Which Config keys each subcommand takes as flags (src/cli/index.ts; yargs runs strict). The
 * "management commands" test below runs the real CLI to catch any drift from this table. */
const PID_KEYS: Key[] = ["pidFile", "shutdownTimeout"];
const COMMAND_KEYS: Record<(typeof COMMANDS)[number], Key[]> = {
  start: KEYS,
  restart: KEYS,
  stop: PID_KEYS,
  reload: PID_KEYS,
  status: PID_KEYS,
};
const COMMAND_EXTRA_FLAGS: Partial<Record<(typeof COMMANDS)[number], string[]>> = {
  status: ["json"],
};

type Raw = Partial<Record<Key, string | boolean>>;

interface CliCall {
  command: (typeof COMMANDS)[number];
  flags: Raw;
}

/**
 * Finds the weigot-ws invocation in argv (`node .../dist/cli/index.js <cmd> ...` or
 * `weigot-ws <cmd> ...`) and checks its subcommand and flags. Throws with `where` on anything the
 * CLI would refuse.
 */
function parseCli(argv: readonly string[], where: string): CliCall {
  const i = argv.findIndex(
    (a) => /(^|\/)dist\/cli\/index\.js$/.test(a) || path.posix.basename(a) === "weigot-ws",
  );
  assert.ok(i >= 0, `${where}: runs no weigot-ws CLI: ${JSON.stringify(argv)}`);
  const command = argv[i + 1] as CliCall["command"];
  assert.ok(
    COMMANDS.includes(command),
    `${where}: "${command}" is not a weigot-ws subcommand (${COMMANDS.join(", ")})`,
  );
  const flags: Raw = {};
  const rest = argv.slice(i + 2);
  for (let j = 0; j < rest.length; j++) {
    const arg = rest[j];
    const short = /^-([a-zA-Z])$/.exec(arg);
    if (short) {
      const key = SHORT_FLAGS.get(short[1]);
      assert.ok(key, `${where}: unknown short flag ${arg}`);
      flags[key] = true;
      continue;
    }
    const long = /^--([a-z][a-z0-9-]*)(?:=(.*))?$/s.exec(arg);
    assert.ok(long, `${where}: unexpected argument ${JSON.stringify(arg)} (only --flags follow)`);
    let [, name, value] = long as unknown as [string, string, string | undefined];
    const negated = name.startsWith("no-") && RULES[FLAG_TO_KEY.get(name.slice(3)) as Key];
    if (negated) name = name.slice(3);
    if (EXTRA_FLAGS.has(name) || COMMAND_EXTRA_FLAGS[command]?.includes(name)) {
      if (name === "config" && value === undefined) j++;
      continue;
    }
    const key = FLAG_TO_KEY.get(name);
    assert.ok(key, `${where}: --${name} is not a weigot-ws flag`);
    assert.ok(
      COMMAND_KEYS[command].includes(key),
      `${where}: \`${command}\` does not take --${name} (only ${COMMAND_KEYS[command].map(kebab).join(", ")})`,
    );
    if (RULES[key].kind === "bool") {
      flags[key] = negated ? false : (value ?? true);
      continue;
    }
    assert.ok(!negated, `${where}: --no-${name} on a non-boolean flag`);
    if (value === undefined) {
      value = rest[j + 1];
      j++;
      assert.ok(
        value !== undefined && !value.startsWith("--"),
        `${where}: --${name} needs a value`,
      );
    }
    flags[key] = value;
  }
  return { command, flags };
}

/** The WEIGOT_WS_* variables of an environment, checked against the ones the service reads. */
function envToRaw(env: Record<string, string>, where: string): Raw {
  const raw: Raw = {};
  for (const [name, value] of Object.entries(env)) {
    if (!/^WEIGOT/i.test(name)) continue;
    const key = ENV_TO_KEY.get(name);
    assert.ok(
      key,
      `${where}: ${name} is not read by weigot-ws (${[...ENV_TO_KEY.keys()].join(", ")})`,
    );
    assert.equal(typeof value, "string", `${where}: ${name} must be a string`);
    raw[key] = value;
  }
  return raw;
}

/** The config a deployment produces: environment first, flags override (as the CLI merges). */
function configOf(env: Raw, flags: Raw, where: string): Config {
  try {
    return parseConfig({ ...env, ...flags });
  } catch (err) {
    if (err instanceof ConfigError) assert.fail(`${where}: ${err.message}`);
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// Small structured parsers.

/** Shell-like word splitting: quotes, backslash escapes, whitespace. No expansions. */
function splitWords(s: string): string[] {
  const out: string[] = [];
  let cur = "";
  let inWord = false;
  let quote: string | null = null;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (quote) {
      if (c === quote) quote = null;
      else if (c === "\\" && quote === '"' && i + 1 < s.length) cur += s[++i];
      else cur += c;
      continue;
    }
    if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (c === "\\" && i + 1 < s.length) {
      cur += s[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) out.push(cur);
      cur = "";
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  assert.equal(quote, null, `unterminated quote in ${JSON.stringify(s)}`);
  if (inWord) out.push(cur);
  return out;
}

/** Durations: Go/compose ("1m30s"), nginx ("75s", "75"), systemd ("1min 30s", "20"). Seconds. */
function seconds(value: string | number, where: string): number {
  if (typeof value === "number") return value;
  const v = value.trim();
  if (v === "infinity") return Number.POSITIVE_INFINITY;
  if (/^\d+(\.\d+)?$/.test(v)) return Number(v);
  const units: Record<string, number> = {
    ms: 0.001,
    msec: 0.001,
    s: 1,
    sec: 1,
    second: 1,
    seconds: 1,
    m: 60,
    min: 60,
    minute: 60,
    minutes: 60,
    h: 3600,
    hr: 3600,
    hour: 3600,
    hours: 3600,
    d: 86400,
    day: 86400,
    days: 86400,
  };
  let total = 0;
  let rest = v;
  while (rest !== "") {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]+)/.exec(rest);
    assert.ok(
      m && units[m[2]] !== undefined,
      `${where}: cannot read duration ${JSON.stringify(value)}`,
    );
    total += Number(m[1]) * units[m[2]];
    rest = rest.slice(m[0].length).trimStart();
  }
  return total;
}

/** nginx sizes: "2m", "512k", "1g", bytes. */
function bytes(value: string, where: string): number {
  const m = /^(\d+)([kKmMgG]?)$/.exec(value);
  assert.ok(m, `${where}: cannot read size ${JSON.stringify(value)}`);
  const mult = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2].toLowerCase()] as number;
  return Number(m[1]) * mult;
}

// nginx.conf ---------------------------------------------------------------------------------

interface Ngx {
  name: string;
  args: string[];
  line: number;
  block?: Ngx[];
}

function parseNginx(text: string): Ngx[] {
  const tokens: { v: string; line: number; quoted: boolean }[] = [];
  let line = 1;
  for (let i = 0; i < text.length; ) {
    const c = text[i];
    if (c === "\n") {
      line++;
      i++;
    } else if (/\s/.test(c)) {
      i++;
    } else if (c === "#") {
      while (i < text.length && text[i] !== "\n") i++;
    } else if (c === "{" || c === "}" || c === ";") {
      tokens.push({ v: c, line, quoted: false });
      i++;
    } else if (c === '"' || c === "'") {
      let j = i + 1;
      let v = "";
      const start = line;
      while (j < text.length && text[j] !== c) {
        if (text[j] === "\\" && j + 1 < text.length) j++;
        if (text[j] === "\n") line++;
        v += text[j++];
      }
      assert.ok(j < text.length, `nginx.conf:${start}: unterminated quote`);
      tokens.push({ v, line: start, quoted: true });
      i = j + 1;
    } else {
      let j = i;
      while (j < text.length && !/[\s;{}]/.test(text[j])) {
        // ${var} inside a word
        if (text[j] === "$" && text[j + 1] === "{") j = text.indexOf("}", j) + 1;
        else j++;
      }
      tokens.push({ v: text.slice(i, j), line, quoted: false });
      i = j;
    }
  }
  let pos = 0;
  const block = (top: boolean): Ngx[] => {
    const out: Ngx[] = [];
    while (pos < tokens.length) {
      const t = tokens[pos++];
      if (!t.quoted && t.v === "}") {
        assert.ok(!top, `nginx.conf:${t.line}: unexpected }`);
        return out;
      }
      assert.ok(t.quoted || !"{;".includes(t.v), `nginx.conf:${t.line}: unexpected ${t.v}`);
      const args: string[] = [];
      for (;;) {
        const a = tokens[pos++];
        assert.ok(a, `nginx.conf:${t.line}: ${t.v} is not terminated`);
        if (!a.quoted && a.v === ";") {
          out.push({ name: t.v, args, line: t.line });
          break;
        }
        if (!a.quoted && a.v === "{") {
          out.push({ name: t.v, args, line: t.line, block: block(false) });
          break;
        }
        assert.ok(a.quoted || a.v !== "}", `nginx.conf:${a.line}: unexpected }`);
        args.push(a.v);
      }
    }
    assert.ok(top, "nginx.conf: missing }");
    return out;
  };
  return block(true);
}

/** nginx inheritance: the innermost level that has the directive wins (all of its entries). */
function effective(scopes: Ngx[][], name: string): Ngx[] {
  for (let i = scopes.length - 1; i >= 0; i--) {
    const found = scopes[i].filter((d) => d.name === name);
    if (found.length > 0) return found;
  }
  return [];
}

function only(scope: Ngx[], name: string, args?: string[]): Ngx {
  const found = scope.filter(
    (d) => d.name === name && (!args || JSON.stringify(d.args) === JSON.stringify(args)),
  );
  assert.equal(found.length, 1, `nginx.conf: expected one ${name} ${args?.join(" ") ?? ""}`);
  return found[0];
}

interface NginxModel {
  main: Ngx[];
  http: Ngx[];
  upstream: Ngx;
  server: Ngx[];
  listenPort: number;
  /** host:port of each upstream server */
  servers: { host: string; port: number }[];
  location(...args: string[]): Ngx[][];
}

function nginxModel(text: string): NginxModel {
  const main = parseNginx(text);
  const http = only(main, "http").block ?? [];
  const upstreams = http.filter((d) => d.name === "upstream");
  assert.equal(upstreams.length, 1, "nginx.conf: expected one upstream");
  const upstream = upstreams[0];
  const server = only(http, "server").block ?? [];
  const listen = only(server, "listen").args[0];
  const servers = (upstream.block ?? [])
    .filter((d) => d.name === "server")
    .map((d) => {
      const m = /^(.+):(\d+)$/.exec(d.args[0]);
      return m ? { host: m[1], port: Number(m[2]) } : { host: d.args[0], port: 80 };
    });
  return {
    main,
    http,
    upstream,
    server,
    listenPort: Number(/(\d+)$/.exec(listen)?.[1]),
    servers,
    location: (...args) => [main, http, server, only(server, "location", args).block ?? []],
  };
}

// Dockerfile ---------------------------------------------------------------------------------

interface DockerInstruction {
  op: string;
  args: string;
  line: number;
}
interface DockerStage {
  from: string;
  name?: string;
  instructions: DockerInstruction[];
}

function parseDockerfile(text: string): { args: Map<string, string>; stages: DockerStage[] } {
  const lines = text.split("\n");
  const instructions: DockerInstruction[] = [];
  for (let i = 0; i < lines.length; i++) {
    const first = lines[i].trim();
    if (first === "" || first.startsWith("#")) continue;
    const line = i + 1;
    let joined = first;
    while (joined.endsWith("\\")) {
      joined = joined.slice(0, -1);
      // Comment lines inside a continuation are dropped by Docker.
      do i++;
      while (i < lines.length && lines[i].trim().startsWith("#"));
      joined += ` ${lines[i]?.trim() ?? ""}`;
    }
    const m = /^([A-Za-z]+)\s+(.*)$/s.exec(joined);
    assert.ok(m, `Dockerfile:${line}: cannot read ${JSON.stringify(joined)}`);
    instructions.push({ op: m[1].toUpperCase(), args: m[2].trim(), line });
  }
  const args = new Map<string, string>();
  const stages: DockerStage[] = [];
  for (const ins of instructions) {
    if (ins.op === "ARG" && stages.length === 0) {
      const [k, v = ""] = ins.args.split("=");
      args.set(k, v);
    } else if (ins.op === "FROM") {
      const words = splitWords(ins.args).filter((w) => !w.startsWith("--"));
      const from = words[0].replace(/\$\{?(\w+)\}?/g, (_, k: string) => args.get(k) ?? "");
      stages.push({ from, name: words[2]?.toLowerCase(), instructions: [] });
    } else {
      assert.ok(stages.length > 0, `Dockerfile:${ins.line}: ${ins.op} before FROM`);
      stages[stages.length - 1].instructions.push(ins);
    }
  }
  return { args, stages };
}

/** The last instruction of a stage that matches (Docker: the last CMD, USER, ... wins). */
function lastOf(
  list: DockerInstruction[],
  match: (i: DockerInstruction) => boolean,
): DockerInstruction | undefined {
  return list.filter(match).pop();
}

/** An exec-form (JSON array) argument; fails on shell form. */
function execForm(args: string, where: string): string[] {
  assert.ok(args.startsWith("["), `${where}: must be exec form (a JSON array), got ${args}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(args);
  } catch {
    // Docker silently falls back to shell form on invalid JSON.
    assert.fail(`${where}: not valid JSON, Docker would run it through a shell: ${args}`);
  }
  assert.ok(
    Array.isArray(parsed) && parsed.every((w) => typeof w === "string"),
    `${where}: must be a JSON array of strings`,
  );
  return parsed as string[];
}

/** ENV instructions of a stage (both `ENV k=v k2=v2` and legacy `ENV k v`). */
function dockerEnv(stage: DockerStage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const ins of stage.instructions.filter((i) => i.op === "ENV")) {
    const words = splitWords(ins.args);
    if (!words[0].includes("=")) {
      env[words[0]] = words.slice(1).join(" ");
      continue;
    }
    for (const w of words) {
      const eq = w.indexOf("=");
      assert.ok(eq > 0, `Dockerfile:${ins.line}: cannot read ENV ${w}`);
      env[w.slice(0, eq)] = w.slice(eq + 1);
    }
  }
  return env;
}

/** The commands of a RUN line (shell form split on && ; ||). */
function runCommands(args: string): string[][] {
  return args
    .split(/&&|\|\||;/)
    .map((c) => splitWords(c.trim()))
    .filter((w) => w.length > 0);
}

// ini (supervisor, systemd) -----------------------------------------------------------------

type Ini = Map<string, Map<string, string[]>>;

/**
 * Sections of `key=value` lines. Comment lines start with # or ;. supervisor (Python
 * configparser) continues a value on indented lines; systemd continues it after a trailing \.
 */
function parseIni(text: string, flavour: "supervisor" | "systemd"): Ini {
  const ini: Ini = new Map();
  let section: Map<string, string[]> | undefined;
  let last: { values: string[] } | undefined;
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i];
    const where = `line ${i + 1}`;
    if (/^\s*[#;]/.test(line) || line.trim() === "") {
      if (line.trim() === "") last = undefined;
      continue;
    }
    if (flavour === "supervisor" && /^\s/.test(line) && last) {
      last.values[last.values.length - 1] += ` ${line.trim()}`;
      continue;
    }
    if (flavour === "systemd") {
      while (line.endsWith("\\") && i + 1 < lines.length)
        line = `${line.slice(0, -1)} ${lines[++i]}`;
    }
    const sec = /^\s*\[([^\]]+)\]\s*$/.exec(line);
    if (sec) {
      assert.ok(!ini.has(sec[1]), `${where}: section [${sec[1]}] twice`);
      section = new Map();
      ini.set(sec[1], section);
      last = undefined;
      continue;
    }
    const kv = /^\s*([A-Za-z_][\w.-]*)\s*=\s*(.*?)\s*$/.exec(line);
    assert.ok(kv && section, `${where}: cannot read ${JSON.stringify(line)}`);
    let value = kv[2];
    // supervisor: inline comments need whitespace before ';'.
    if (flavour === "supervisor") value = value.replace(/\s+;.*$/, "");
    const values = section.get(kv[1]) ?? [];
    values.push(value);
    section.set(kv[1], values);
    last = { values };
  }
  return ini;
}

function iniOne(ini: Ini, sectionName: string, key: string): string | undefined {
  const values = ini.get(sectionName)?.get(key);
  if (!values) return undefined;
  assert.equal(values.length, 1, `[${sectionName}] ${key} is set ${values.length} times`);
  return values[0];
}

/** supervisor's %(name)s expansions (ini string interpolation). */
function supervisorExpand(value: string, program: string): string {
  const known: Record<string, string> = {
    program_name: program,
    group_name: program,
    host_node_name: "vm-host-1",
    here: "/etc/supervisor/conf.d",
    process_num: "0",
    numprocs: "1",
  };
  return value.replace(/%\(([\w]+)\)[sd]/g, (_, name: string) => {
    if (name.startsWith("ENV_")) return `$${name.slice(4)}`;
    assert.ok(known[name] !== undefined, `supervisor: unknown expansion %(${name})s`);
    return known[name];
  });
}

/** supervisor `environment=KEY="val",KEY2=val2`. */
function supervisorEnvironment(value: string): Record<string, string> {
  const env: Record<string, string> = {};
  const re = /\s*([A-Za-z_]\w*)=("(?:[^"\\]|\\.)*"|'[^']*'|[^,]*)\s*(?:,|$)/gy;
  let end = 0;
  while (end < value.length) {
    const m = re.exec(value);
    if (!m) break;
    env[m[1]] = /^["']/.test(m[2]) ? m[2].slice(1, -1) : m[2];
    end = re.lastIndex;
  }
  assert.equal(end, value.length, `supervisor: cannot read environment=${value}`);
  return env;
}

/** systemd specifiers used in the unit (%H host name, %% a percent sign, ...). */
function systemdExpand(value: string): string {
  const known: Record<string, string> = {
    "%": "%",
    H: "vm-host-1",
    l: "vm-host-1",
    n: "weigot-ws.service",
    N: "weigot-ws",
    p: "weigot-ws",
    t: "/run",
    u: "weigot-ws",
  };
  return value.replace(/%(.)/g, (_, c: string) => {
    assert.ok(known[c] !== undefined, `systemd: unexpected specifier %${c}`);
    return known[c];
  });
}

/** Exec lines: strip systemd's prefixes (-, @, +, !, :) and split like systemd does. */
function systemdExec(value: string): string[] {
  return splitWords(systemdExpand(value.replace(/^[-@+!:]+/, "")));
}

// YAML helpers -------------------------------------------------------------------------------

type Obj = Record<string, unknown>;
const isObj = (x: unknown): x is Obj => typeof x === "object" && x !== null && !Array.isArray(x);
function obj(x: unknown, where: string): Obj {
  assert.ok(isObj(x), `${where}: expected a mapping, got ${JSON.stringify(x)}`);
  return x;
}
function arr(x: unknown, where: string): unknown[] {
  assert.ok(Array.isArray(x), `${where}: expected a list, got ${JSON.stringify(x)}`);
  return x;
}
function str(x: unknown, where: string): string {
  assert.equal(typeof x, "string", `${where}: expected a string, got ${JSON.stringify(x)}`);
  return x as string;
}

/** Compose interpolation with no variables set: ${VAR:-default} / ${VAR-default} / $$. */
function interpolate(x: unknown): unknown {
  if (typeof x === "string") {
    return x
      .replace(/\$\{(\w+)(?::?-([^}]*))?\}|\$\$/g, (all, _name, def: string | undefined) =>
        all === "$$" ? "$" : (def ?? ""),
      )
      .replace(/\$(\w+)/g, "");
  }
  if (Array.isArray(x)) return x.map(interpolate);
  if (isObj(x)) return Object.fromEntries(Object.entries(x).map(([k, v]) => [k, interpolate(v)]));
  return x;
}

function composeEnv(x: unknown, where: string): Record<string, string> {
  if (x === undefined) return {};
  if (Array.isArray(x)) {
    return Object.fromEntries(
      x.map((e) => {
        const s = str(e, where);
        const eq = s.indexOf("=");
        return eq < 0 ? [s, ""] : [s.slice(0, eq), s.slice(eq + 1)];
      }),
    );
  }
  return Object.fromEntries(
    Object.entries(obj(x, where)).map(([k, v]) => [k, v === null ? "" : String(v)]),
  );
}

/** A command in compose/k8s: a list, or a string split like a shell. */
function argvOf(x: unknown, where: string): string[] {
  if (typeof x === "string") return splitWords(x);
  return arr(x, where).map((w) => str(w, where));
}

// ---------------------------------------------------------------------------------------------
// The deployment, loaded once.

const dockerfile = parseDockerfile(read("docker", "Dockerfile"));
const buildStage = dockerfile.stages[0];
const runtimeStage = dockerfile.stages[dockerfile.stages.length - 1];
const imageEnv = dockerEnv(runtimeStage);
const imageCmd = execForm(
  lastOf(runtimeStage.instructions, (i) => i.op === "CMD")?.args ?? "",
  "Dockerfile CMD",
);
const imageConfig = configOf(
  envToRaw(imageEnv, "Dockerfile ENV"),
  parseCli(imageCmd, "Dockerfile CMD").flags,
  "Dockerfile",
);

const COMPOSE_FILE = at("docker", "docker-compose.yml");
const compose = obj(
  interpolate(YAML.parse(readFileSync(COMPOSE_FILE, "utf8"), { merge: true })),
  "compose",
);
const services = obj(compose.services, "compose services");
const nodeServices = Object.entries(services).filter(
  ([, s]) => isObj(s) && isObj(s.build) && s.build.dockerfile === "docker/Dockerfile",
) as [string, Obj][];

const nginx = nginxModel(read("deploy", "nginx.conf"));

const K8S_DIR = at("deploy", "k8s");
const k8sFiles = readdirSync(K8S_DIR).filter((f) => /\.ya?ml$/.test(f));
const k8sDocs = k8sFiles.flatMap((file) =>
  YAML.parseAllDocuments(readFileSync(path.join(K8S_DIR, file), "utf8")).map((doc) => {
    assert.deepEqual(doc.errors, [], `${file}: YAML errors`);
    return { file, doc: obj(doc.toJS(), file) };
  }),
);
const k8s = (kind: string, name?: string) =>
  k8sDocs
    .filter(({ doc }) => doc.kind === kind && (!name || obj(doc.metadata, kind).name === name))
    .map(({ doc }) => doc);
const k8sOne = (kind: string, name: string) => {
  const found = k8s(kind, name);
  assert.equal(found.length, 1, `deploy/k8s: expected one ${kind} ${name}`);
  return found[0];
};

// ---------------------------------------------------------------------------------------------

describe("the checker itself", () => {
  test("accepts the CLI's flags and refuses anything else", () => {
    const call = parseCli(
      ["node", "dist/cli/index.js", "start", "--port", "9602", "--adapter=redis", "-d"],
      "ok",
    );
    assert.deepEqual(call, {
      command: "start",
      flags: { port: "9602", adapter: "redis", daemon: true },
    });
    assert.equal(parseCli(["weigot-ws", "reload", "--pid-file", "/x.pid"], "ok").command, "reload");
    assert.throws(() => parseCli(["weigot-ws", "run"], "bad"), /not a weigot-ws subcommand/);
    assert.throws(
      () => parseCli(["weigot-ws", "start", "--prot", "1"], "bad"),
      /not a weigot-ws flag/,
    );
    assert.throws(() => parseCli(["weigot-ws", "start", "--port"], "bad"), /needs a value/);
    assert.throws(() => parseCli(["weigot-ws", "reload", "--port", "1"], "bad"), /does not take/);
    assert.equal(parseCli(["weigot-ws", "status", "--json"], "ok").command, "status");
    assert.throws(() => parseCli(["weigot-ws", "start", "extra"], "bad"), /unexpected argument/);
    assert.throws(() => parseCli(["node", "server.js", "start"], "bad"), /runs no weigot-ws CLI/);
    assert.throws(() => envToRaw({ WEIGOT_WS_PROT: "1" }, "bad"), /not read by weigot-ws/);
    assert.throws(
      () => configOf({ adapter: "redis", redisUrl: "redis:6379" }, {}, "bad"),
      /redisUrl/,
    );
    assert.throws(() => configOf({ workers: "two" }, {}, "bad"), /workers/);
  });

  test("every Config key has a flag and an environment variable", () => {
    assert.ok(FLAG_TO_KEY.has("redis-url") && FLAG_TO_KEY.has("shutdown-timeout"));
    assert.equal(ENV_TO_KEY.get("WEIGOT_WS_NODE_ID"), "nodeId");
    assert.equal(ENV_TO_KEY.size, Object.keys(DEFAULTS).length);
  });

  test("the small parsers read what they must", () => {
    assert.deepEqual(splitWords(`a "b c" 'd e' f\\ g`), ["a", "b c", "d e", "f g"]);
    assert.equal(seconds("1m30s", "t"), 90);
    assert.equal(seconds("1min 30s", "t"), 90);
    assert.equal(seconds("75", "t"), 75);
    assert.equal(bytes("2m", "t"), 2 * 1024 * 1024);
    const conf = parseNginx(`a 1; b { c "x;y" '' ; d \${e}f; } # g;\n`);
    assert.deepEqual(conf[1].block?.[0].args, ["x;y", ""]);
    assert.deepEqual(conf[1].block?.[1].args, ["$" + "{e}f"]);
    assert.deepEqual(supervisorEnvironment(`A="1,2",B=x, C='y'`), { A: "1,2", B: "x", C: "y" });
  });
});

describe("docker/Dockerfile", () => {
  test("is multi-stage: build with dev dependencies, runtime with production ones", () => {
    assert.ok(dockerfile.stages.length >= 2, "expected a build stage and a runtime stage");
    assert.match(
      runtimeStage.from,
      /^node:20(\.\d+)*-(slim|alpine)/,
      "runtime on node:20 slim/alpine",
    );
    const buildRuns = buildStage.instructions
      .filter((i) => i.op === "RUN")
      .flatMap((i) => runCommands(i.args));
    assert.ok(
      buildRuns.some((c) => c[0] === "npm" && c[1] === "ci" && !c.includes("--omit=dev")),
      "build stage: npm ci (with dev dependencies, for tsc)",
    );
    assert.ok(
      buildRuns.some((c) => c.join(" ") === "npm run build"),
      "build stage: npm run build",
    );
    const runtimeRuns = runtimeStage.instructions
      .filter((i) => i.op === "RUN")
      .flatMap((i) => runCommands(i.args));
    assert.ok(
      runtimeRuns.some((c) => c[0] === "npm" && c[1] === "ci" && c.includes("--omit=dev")),
      "runtime stage: npm ci --omit=dev",
    );
    const copies = runtimeStage.instructions
      .filter((i) => i.op === "COPY")
      .map((i) => splitWords(i.args));
    const fromBuild = copies.find(
      (w) => w.includes(`--from=${buildStage.name}`) && w.some((p) => /(^|\/)dist\/?$/.test(p)),
    );
    assert.ok(fromBuild, `runtime stage: COPY --from=${buildStage.name} .../dist`);
    assert.ok(
      copies.some((w) => !w.some((p) => p.startsWith("--from")) && /^(\.\/)?public\/?$/.test(w[0])),
      "runtime stage: COPY public",
    );
    // The CMD's script resolves into the copied dist/.
    const workdir = lastOf(runtimeStage.instructions, (i) => i.op === "WORKDIR")?.args ?? "/";
    const distDir = path.posix.resolve(workdir, fromBuild[fromBuild.length - 1]);
    const script = imageCmd.find((a) => a.endsWith("cli/index.js")) ?? "";
    assert.equal(path.posix.resolve(workdir, script), path.posix.join(distDir, "cli", "index.js"));
  });

  test("the build context has what COPY needs", (t) => {
    const sources = dockerfile.stages.flatMap((s) =>
      s.instructions
        .filter((i) => i.op === "COPY" && !i.args.includes("--from="))
        .flatMap((i) =>
          splitWords(i.args)
            .filter((w) => !w.startsWith("--"))
            .slice(0, -1),
        ),
    );
    assert.ok(sources.includes("package-lock.json"), "npm ci needs package-lock.json");
    const missing = sources.filter((s) => !existsSync(at(s)));
    if (missing.length === 1 && missing[0] === "public") {
      t.todo("public/ (the demo page) is not written yet; docker build needs it");
      return;
    }
    assert.deepEqual(missing, [], "COPY sources missing from the repository");
  });

  test("CMD runs the primary in the foreground, exec form, as a non-root user", () => {
    const call = parseCli(imageCmd, "Dockerfile CMD");
    assert.equal(call.command, "start");
    assert.equal(imageCmd[0], "node", "node itself is PID 1 and gets SIGTERM");
    assert.notEqual(imageConfig.daemon, true, "a container's main process must not detach");
    const entrypoint = lastOf(runtimeStage.instructions, (i) => i.op === "ENTRYPOINT");
    if (entrypoint) execForm(entrypoint.args, "Dockerfile ENTRYPOINT");
    const user = lastOf(runtimeStage.instructions, (i) => i.op === "USER");
    assert.ok(user, "runtime stage: USER");
    assert.doesNotMatch(user.args, /^(root|0)(:|$)/, "USER must not be root");
  });

  test("EXPOSE is the configured port and HEALTHCHECK asks /readyz with node", () => {
    const exposed = runtimeStage.instructions
      .filter((i) => i.op === "EXPOSE")
      .flatMap((i) => splitWords(i.args).map((p) => Number(p.split("/")[0])));
    assert.deepEqual(exposed, [imageConfig.port]);
    const hc = lastOf(runtimeStage.instructions, (i) => i.op === "HEALTHCHECK");
    assert.ok(hc, "runtime stage: HEALTHCHECK");
    const m = /^((?:--[a-z-]+=\S+\s+)*)CMD\s+(.*)$/s.exec(hc.args);
    assert.ok(m, `HEALTHCHECK: cannot read ${hc.args}`);
    const argv = execForm(m[2], "HEALTHCHECK CMD");
    checkProbeCommand(argv, imageEnv, imageConfig.port, "HEALTHCHECK");
    const timeout = /--timeout=(\S+)/.exec(m[1])?.[1] ?? "30s";
    assert.ok(seconds(timeout, "HEALTHCHECK") <= 10, "HEALTHCHECK --timeout is short");
  });

  test("the HEALTHCHECK command works: 0 when /readyz is 200, 1 on 503 or no answer", async () => {
    const hc = lastOf(runtimeStage.instructions, (i) => i.op === "HEALTHCHECK")!;
    const argv = execForm(/CMD\s+(.*)$/s.exec(hc.args)![1], "HEALTHCHECK");
    await checkProbeRuns(argv);
  });

  test(".dockerignore keeps the context small", () => {
    const entries = read(".dockerignore")
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith("#"));
    for (const e of ["node_modules", "dist", ".git", "test-artifacts", "bench/results"]) {
      assert.ok(entries.includes(e), `.dockerignore: ${e}`);
    }
    for (const needed of ["src", "package.json", "package-lock.json", "public"]) {
      assert.ok(!entries.includes(needed), `.dockerignore must not exclude ${needed}`);
    }
  });
});

/** A probe command: node (no curl/wget), GET /readyz on this container's port. */
function checkProbeCommand(
  argv: string[],
  env: Record<string, string>,
  port: number,
  where: string,
): void {
  assert.equal(argv[0], "node", `${where}: runs node (the image has no curl)`);
  assert.equal(argv[1], "-e", `${where}: node -e`);
  const js = argv[2];
  assert.match(js, /\/readyz\b/, `${where}: asks /readyz`);
  const literal = /127\.0\.0\.1:(\d+)/.exec(js);
  if (literal) {
    assert.equal(Number(literal[1]), port, `${where}: probes the configured port`);
  } else {
    assert.match(js, /process\.env\.WEIGOT_WS_PORT\s*\|\|\s*(\d+)/, `${where}: port from env`);
    const fallback = Number(/process\.env\.WEIGOT_WS_PORT\s*\|\|\s*(\d+)/.exec(js)?.[1]);
    assert.equal(
      Number(env.WEIGOT_WS_PORT ?? fallback),
      port,
      `${where}: probes the configured port`,
    );
    assert.equal(fallback, DEFAULTS.port, `${where}: falls back to the default port`);
  }
}

/** Runs a `node -e` probe (port from WEIGOT_WS_PORT) against a stand-in server. */
async function checkProbeRuns(argv: string[]): Promise<void> {
  let status = 200;
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    seen.push(req.url ?? "");
    res.statusCode = req.url === "/readyz" ? status : 404;
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  const run = (p: number) =>
    new Promise<number | null>((resolve) => {
      const child = spawn(process.execPath, argv.slice(1), {
        env: { ...process.env, WEIGOT_WS_PORT: String(p) },
        stdio: "ignore",
      });
      child.once("exit", (code) => resolve(code));
    });
  try {
    assert.equal(await run(port), 0, "200 from /readyz = healthy");
    status = 503;
    assert.equal(await run(port), 1, "503 from /readyz = unhealthy");
    assert.deepEqual(seen, ["/readyz", "/readyz"]);
  } finally {
    await new Promise((r) => server.close(r));
  }
  assert.equal(await run(await freePort()), 1, "nothing listening = unhealthy");
}

describe("docker/docker-compose.yml", () => {
  test("the top-level compose.yaml includes it", () => {
    const top = obj(YAML.parse(read("compose.yaml")), "compose.yaml");
    const includes = arr(top.include, "compose.yaml include").map((i) =>
      typeof i === "string" ? i : str(obj(i, "include").path, "include path"),
    );
    assert.ok(includes.includes("docker/docker-compose.yml"));
  });

  test("Redis with a redis-cli ping healthcheck", () => {
    const redis = obj(services.redis, "redis");
    assert.match(str(redis.image, "redis image"), /^redis:7-alpine$/);
    const hc = argvOf(obj(redis.healthcheck, "redis healthcheck").test, "redis healthcheck");
    assert.deepEqual(hc.slice(0, 3), ["CMD", "redis-cli", "ping"]);
  });

  test("two or more weigot-ws nodes, each a valid configuration in redis mode", () => {
    assert.ok(nodeServices.length >= 2, "two or more weigot-ws services");
    const ids = new Set<string>();
    for (const [name, svc] of nodeServices) {
      const where = `compose ${name}`;
      const build = obj(svc.build, `${where} build`);
      const context = path.resolve(path.dirname(COMPOSE_FILE), str(build.context, "context"));
      assert.equal(context, path.resolve(ROOT), `${where}: build context is the repository root`);
      assert.ok(existsSync(path.join(context, str(build.dockerfile, "dockerfile"))));
      assert.equal(svc.entrypoint, undefined, `${where}: keep the image's exec-form start`);
      const { config, env } = composeNodeConfig(name, svc);
      assert.equal(config.adapter, "redis", `${where}: --adapter redis`);
      const redisUrl = new URL(config.redisUrl);
      const redisService = services[redisUrl.hostname];
      assert.ok(
        isObj(redisService) && /^redis:/.test(String(redisService.image)),
        `${where}: WEIGOT_WS_REDIS_URL names the redis service`,
      );
      assert.equal(redisUrl.port || "6379", "6379");
      assert.ok(env.WEIGOT_WS_NODE_ID, `${where}: WEIGOT_WS_NODE_ID`);
      assert.ok(!ids.has(config.nodeId), `${where}: node id ${config.nodeId} is not unique`);
      ids.add(config.nodeId);
      assert.equal(config.workers, 2, `${where}: WEIGOT_WS_WORKERS=2`);
      const dependsOn = obj(svc.depends_on, `${where} depends_on`);
      assert.equal(
        obj(dependsOn[redisUrl.hostname], "depends_on redis").condition,
        "service_healthy",
        `${where}: waits for a healthy Redis`,
      );
      const grace = seconds(str(svc.stop_grace_period, `${where} stop_grace_period`), where);
      assert.ok(
        grace > config.shutdownTimeout,
        `${where}: stop_grace_period ${grace}s must exceed shutdown-timeout ${config.shutdownTimeout}s`,
      );
      const hc = obj(svc.healthcheck, `${where} healthcheck`);
      const test = argvOf(hc.test, `${where} healthcheck`);
      assert.equal(test[0], "CMD");
      checkProbeCommand(test.slice(1), env, config.port, `${where} healthcheck`);
      const exposed = [...((svc.expose as unknown[]) ?? []), ...((svc.ports as unknown[]) ?? [])];
      assert.ok(
        exposed.some((p) => String(p).split(":").pop()?.split("/")[0] === String(config.port)),
        `${where}: exposes ${config.port}`,
      );
    }
  });

  test("the node healthcheck command works", async () => {
    const test = argvOf(obj(nodeServices[0][1].healthcheck, "healthcheck").test, "healthcheck");
    await checkProbeRuns(test.slice(1));
  });

  test("nginx: deploy/nginx.conf mounted, upstreams = the node services, waits for healthy nodes", () => {
    const svc = obj(services.nginx, "compose nginx");
    assert.match(str(svc.image, "nginx image"), /^nginx:/);
    const mounts = arr(svc.volumes, "nginx volumes").map((v) => str(v, "volume").split(":"));
    const conf = mounts.find(
      ([src]) => path.resolve(path.dirname(COMPOSE_FILE), src) === NGINX_CONF,
    );
    assert.ok(conf, "nginx mounts deploy/nginx.conf");
    const target = conf[1];
    if (svc.command !== undefined) {
      const argv = argvOf(svc.command, "nginx command");
      assert.equal(argv[0], "nginx");
      const c = argv.indexOf("-c");
      assert.equal(
        c >= 0 ? argv[c + 1] : "/etc/nginx/nginx.conf",
        target,
        "nginx -c the mounted file",
      );
      assert.ok(argv.includes("-p"), "nginx -p: the file's runtime paths are prefix-relative");
      const g = argv.indexOf("-g");
      assert.match(g >= 0 ? argv[g + 1] : "", /daemon off;/, "nginx stays in the foreground");
    } else {
      assert.equal(target, "/etc/nginx/nginx.conf");
    }
    const ports = arr(svc.ports, "nginx ports").map((p) => String(p));
    assert.ok(ports.includes(`8080:${nginx.listenPort}`), "published on localhost:8080");
    const dependsOn = obj(svc.depends_on, "nginx depends_on");
    const expected = nodeServices
      .map(([name, s]) => `${name}:${composeNodeConfig(name, s).config.port}`)
      .sort();
    assert.deepEqual(nginx.servers.map((s) => `${s.host}:${s.port}`).sort(), expected);
    for (const [name] of nodeServices) {
      assert.equal(obj(dependsOn[name], `depends_on ${name}`).condition, "service_healthy");
    }
  });
});

function composeNodeConfig(
  name: string,
  svc: Obj,
): { config: Config; env: Record<string, string> } {
  const env = { ...imageEnv, ...composeEnv(svc.environment, `compose ${name} environment`) };
  const cmd = svc.command === undefined ? imageCmd : argvOf(svc.command, `compose ${name} command`);
  const call = parseCli(cmd, `compose ${name} command`);
  assert.equal(call.command, "start");
  const config = configOf(envToRaw(env, `compose ${name}`), call.flags, `compose ${name}`);
  assert.notEqual(config.daemon, true, `compose ${name}: must not detach`);
  return { config, env };
}

describe("deploy/nginx.conf", () => {
  test("a complete nginx.conf that runs with -p and -g 'daemon off;'", () => {
    assert.ok(
      nginx.main.some((d) => d.name === "events" && d.block),
      "events block",
    );
    for (const d of nginx.main) {
      assert.notEqual(d.name, "daemon", "daemon is left to -g (duplicates are fatal)");
      assert.notEqual(d.name, "include", "self-contained: no includes");
    }
    assert.ok(!path.isAbsolute(only(nginx.main, "pid").args[0]), "pid relative to the prefix");
    for (const d of nginx.http.filter((x) => x.name.endsWith("_temp_path"))) {
      assert.ok(!path.isAbsolute(d.args[0]), `${d.name} relative to the prefix`);
    }
    assert.equal(only(nginx.main, "error_log").args[0], "stderr");
    assert.equal(nginx.listenPort, 8080);
  });

  test("upstream: consistent hash of the client address, no ip_hash, no keepalive", () => {
    const up = nginx.upstream.block ?? [];
    assert.deepEqual(only(up, "hash").args, ["$remote_addr", "consistent"]);
    assert.ok(!up.some((d) => d.name === "ip_hash"), "not ip_hash (it groups a whole /24)");
    assert.ok(
      !up.some((d) => d.name === "keepalive"),
      "no upstream keepalive: a node's primary pins each TCP connection to one worker",
    );
    assert.ok(nginx.servers.length >= 2);
    for (const s of nginx.servers) assert.equal(s.port, imageConfig.port, "upstream port");
  });

  test("WebSocket upgrade map", () => {
    const map = only(nginx.http, "map");
    assert.deepEqual(map.args, ["$http_upgrade", "$connection_upgrade"]);
    const entries = Object.fromEntries((map.block ?? []).map((d) => [d.name, d.args[0]]));
    assert.deepEqual(entries, { default: "upgrade", "": "close" });
  });

  const proxied: [string, string[]][] = [
    ["Socket.IO", ["/socket.io/"]],
    ["the demo page", ["/"]],
    ["/healthz", ["=", "/healthz"]],
    ["/readyz", ["=", "/readyz"]],
  ];
  for (const [what, args] of proxied) {
    test(`${what} is proxied to the nodes with the forwarding headers`, () => {
      const scopes = nginx.location(...args);
      const pass = effective(scopes, "proxy_pass");
      assert.deepEqual(pass[0]?.args, [`http://${nginx.upstream.args[0]}`]);
      assert.deepEqual(effective(scopes, "proxy_http_version")[0]?.args, ["1.1"]);
      const headers = Object.fromEntries(
        effective(scopes, "proxy_set_header").map((d) => [d.args[0].toLowerCase(), d.args[1]]),
      );
      assert.equal(headers.upgrade, "$http_upgrade");
      assert.equal(headers.connection, "$connection_upgrade");
      assert.equal(headers["x-forwarded-for"], "$proxy_add_x_forwarded_for");
      assert.equal(headers["x-real-ip"], "$remote_addr");
      assert.ok(headers.host, "Host");
    });
  }

  test("Socket.IO: timeouts above pingInterval + pingTimeout, no buffering, bodies up to a frame", () => {
    const scopes = nginx.location("/socket.io/");
    for (const name of ["proxy_read_timeout", "proxy_send_timeout"]) {
      const value = effective(scopes, name)[0]?.args[0] ?? "60s";
      assert.ok(
        seconds(value, name) > PING_SILENCE_S,
        `${name} ${value} must exceed pingInterval + pingTimeout (${PING_SILENCE_S} s)`,
      );
    }
    assert.deepEqual(effective(scopes, "proxy_buffering")[0]?.args, ["off"]);
    const body = effective(scopes, "client_max_body_size")[0]?.args[0] ?? "1m";
    assert.ok(
      bytes(body, "client_max_body_size") >= DEFAULTS.maxFrameBytes,
      `client_max_body_size ${body} below --max-frame-bytes ${DEFAULTS.maxFrameBytes}`,
    );
  });

  test("the test substitution changes only the listen line and the upstream servers", () => {
    const source = read("deploy", "nginx.conf");
    const rendered = renderNginxConf(source, {
      listen: "127.0.0.1:18080",
      upstreams: [19601, "10.0.0.5:9601", 19603],
    });
    const a = nginxModel(source);
    const b = nginxModel(rendered);
    assert.equal(b.listenPort, 18080);
    assert.deepEqual(
      b.servers.map((s) => `${s.host}:${s.port}`),
      ["127.0.0.1:19601", "10.0.0.5:9601", "127.0.0.1:19603"],
    );
    const strip = (m: NginxModel) =>
      JSON.stringify(m.main, (k, v) => (k === "line" ? undefined : v))
        .replace(/\{"name":"server","args":\["[^"]+:\d+"[^}]*\},?/g, "")
        .replace(/"listen","args":\[[^\]]*\]/, "");
    assert.equal(strip(b), strip(a));
  });

  test("nginx -t accepts the substituted file", async () => {
    const { output } = await checkNginxConf({ upstreams: [await freePort(), await freePort()] });
    assert.match(output, /test is successful/);
  });

  test("live: headers, WebSocket upgrade, stickiness, large polling bodies, probes", async () => {
    const backends = await Promise.all(["a", "b"].map((name) => standIn(name)));
    const proxy = await startNginx({ upstreams: backends.map((b) => b.port) });
    try {
      const res = await fetch(`${proxy.url}/socket.io/?EIO=4&transport=polling`);
      const first = (await res.json()) as StandIn;
      assert.equal(first.headers["x-real-ip"], "127.0.0.1");
      assert.equal(first.headers["x-forwarded-for"], "127.0.0.1");
      assert.equal(first.headers.connection, "close", "no upstream connection reuse");
      for (const p of ["/", "/healthz", "/readyz", "/socket.io/?EIO=4&transport=polling&sid=x"]) {
        const r = (await (await fetch(proxy.url + p)).json()) as StandIn;
        assert.equal(r.name, first.name, `${p}: same client address, same node`);
        assert.equal(r.url, p);
      }
      const big = "x".repeat(DEFAULTS.maxFrameBytes);
      const post = await fetch(`${proxy.url}/socket.io/?EIO=4&transport=polling&sid=x`, {
        method: "POST",
        body: big,
      });
      assert.equal(post.status, 200, "a polling POST of --max-frame-bytes passes");
      assert.equal(((await post.json()) as StandIn).bodyLength, big.length);

      const ws = new WebSocket(
        `${proxy.url.replace("http", "ws")}/socket.io/?EIO=4&transport=websocket`,
      );
      const hello = await new Promise<StandIn>((resolve, reject) => {
        ws.once("message", (m) => resolve(JSON.parse(m.toString())));
        ws.once("error", reject);
      });
      assert.equal(hello.headers.upgrade, "websocket");
      assert.equal(hello.name, first.name);
      ws.send("ping");
      const echo = await new Promise<string>((resolve) =>
        ws.once("message", (m) => resolve(String(m))),
      );
      assert.equal(echo, "echo:ping");
      ws.close();
    } finally {
      await proxy.stop();
      await Promise.all(backends.map((b) => b.close()));
    }
  });
});

interface StandIn {
  name: string;
  url: string;
  headers: Record<string, string>;
  bodyLength: number;
}

/** An HTTP + WebSocket server that reports what it received. */
async function standIn(name: string): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    let bodyLength = 0;
    req.on("data", (c: Buffer) => {
      bodyLength += c.length;
    });
    req.on("end", () => {
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ name, url: req.url, headers: req.headers, bodyLength }));
    });
  });
  const wss = new WebSocketServer({ server });
  wss.on("connection", (ws, req) => {
    ws.send(JSON.stringify({ name, url: req.url, headers: req.headers, bodyLength: 0 }));
    ws.on("message", (m) => ws.send(`echo:${m}`));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as AddressInfo).port,
    close: async () => {
      for (const c of wss.clients) c.terminate();
      await new Promise((r) => wss.close(r));
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

describe("deploy/supervisor/weigot-ws.conf", () => {
  const ini = parseIni(read("deploy", "supervisor", "weigot-ws.conf"), "supervisor");
  const programs = [...ini.keys()].filter((s) => s.startsWith("program:"));

  test("one program, one process: the workers come from --workers", () => {
    assert.equal(programs.length, 1);
    assert.equal(iniOne(ini, programs[0], "numprocs") ?? "1", "1");
  });

  test("runs `weigot-ws start` in the foreground with valid flags and environment", () => {
    const section = programs[0];
    const program = section.slice("program:".length);
    const get = (k: string) => {
      const v = iniOne(ini, section, k);
      return v === undefined ? undefined : supervisorExpand(v, program);
    };
    const call = parseCli(splitWords(get("command") ?? ""), "supervisor command");
    assert.equal(call.command, "start");
    const env = supervisorEnvironment(get("environment") ?? "");
    const config = configOf(envToRaw(env, "supervisor environment"), call.flags, "supervisor");
    assert.equal(config.daemon, false, "supervisor needs the process in the foreground");
    assert.equal(config.adapter, "redis");

    assert.match(get("stopsignal") ?? "TERM", /^(SIG)?TERM$/);
    const wait = Number(get("stopwaitsecs") ?? 10);
    assert.ok(
      wait > config.shutdownTimeout,
      `stopwaitsecs ${wait} must exceed shutdown-timeout ${config.shutdownTimeout}`,
    );
    assert.equal(get("killasgroup"), "true", "SIGKILL reaches the workers too");
    assert.equal(
      get("stopasgroup"),
      "false",
      "SIGTERM to the primary only: it stops its workers in order",
    );
    assert.match(get("autorestart") ?? "", /^(true|unexpected)$/);
    assert.ok(get("user") && get("user") !== "root", "runs as a non-root user");
    assert.ok(get("stdout_logfile") && get("stdout_logfile") !== "NONE", "logs to a file");
    assert.ok(get("redirect_stderr") === "true" || get("stderr_logfile"), "stderr logged");
  });
});

describe("deploy/systemd/weigot-ws.service", () => {
  const text = read("deploy", "systemd", "weigot-ws.service");
  const ini = parseIni(text, "systemd");
  const svc = (k: string) => iniOne(ini, "Service", k);
  const env = Object.fromEntries(
    (ini.get("Service")?.get("Environment") ?? []).flatMap((line) =>
      splitWords(systemdExpand(line)).map((a) => {
        const eq = a.indexOf("=");
        assert.ok(eq > 0, `Environment=${line}`);
        return [a.slice(0, eq), a.slice(eq + 1)];
      }),
    ),
  );

  test("Type=simple: ExecStart runs `weigot-ws start` in the foreground", () => {
    assert.equal(svc("Type"), "simple");
    const call = parseCli(systemdExec(svc("ExecStart") ?? ""), "ExecStart");
    assert.equal(call.command, "start");
    const config = configOf(envToRaw(env, "Environment"), call.flags, "systemd");
    assert.equal(config.daemon, false, "Type=simple needs the process in the foreground");
    assert.equal(config.adapter, "redis");
  });

  test("ExecReload runs `weigot-ws reload` for the same pid file", () => {
    const start = parseCli(systemdExec(svc("ExecStart") ?? ""), "ExecStart");
    const reload = parseCli(systemdExec(svc("ExecReload") ?? ""), "ExecReload");
    assert.equal(reload.command, "reload");
    const pid = (flags: Raw) => configOf(envToRaw(env, "Environment"), flags, "systemd").pidFile;
    assert.equal(pid(reload.flags), pid(start.flags));
    const runtimeDir = svc("RuntimeDirectory");
    if (runtimeDir && pid(start.flags).startsWith("/run/")) {
      assert.equal(path.dirname(pid(start.flags)), `/run/${runtimeDir}`);
    }
  });

  test("stop: SIGTERM to the primary, TimeoutStopSec above shutdown-timeout", () => {
    const config = configOf(envToRaw(env, "Environment"), {}, "systemd");
    assert.equal(svc("KillSignal") ?? "SIGTERM", "SIGTERM");
    assert.equal(
      svc("KillMode"),
      "mixed",
      "SIGTERM to the primary only, SIGKILL to all at the end",
    );
    const timeout = seconds(svc("TimeoutStopSec") ?? "90s", "TimeoutStopSec");
    assert.ok(timeout > config.shutdownTimeout, "TimeoutStopSec must exceed shutdown-timeout");
    assert.equal(svc("Restart"), "on-failure");
    assert.ok(Number(svc("LimitNOFILE")) >= 65536, "LimitNOFILE");
    assert.ok(svc("User") && svc("User") !== "root", "runs as a non-root user");
  });

  test("systemd-analyze verify finds nothing", {
    skip: !existsSync("/usr/bin/systemd-analyze"),
  }, async () => {
    const output = await new Promise<string>((resolve) => {
      const child = spawn("systemd-analyze", [
        "verify",
        at("deploy", "systemd", "weigot-ws.service"),
      ]);
      let out = "";
      child.stdout.on("data", (c) => {
        out += c;
      });
      child.stderr.on("data", (c) => {
        out += c;
      });
      child.once("exit", () => resolve(out));
    });
    // Only complaints about this unit count (the host's own units may be odd).
    const ours = output.split("\n").filter((l) => l.includes("weigot-ws.service"));
    assert.deepEqual(ours, []);
  });
});

/** The weigot-ws Deployment and what its container runs with. */
function k8sNode() {
  const deployment = k8sOne("Deployment", "weigot-ws");
  const template = obj(obj(deployment.spec, "spec").template, "template");
  const podSpec = obj(template.spec, "pod spec");
  const podLabels = obj(obj(template.metadata, "metadata").labels, "labels");
  const container = obj(
    arr(podSpec.containers, "containers").find(
      (c) => isObj(c) && String(c.image).split(/[:@]/)[0].endsWith("weigot-ws"),
    ),
    "weigot-ws container",
  );
  const containerPorts = arr(container.ports, "ports").map((p) => obj(p, "port"));
  // What the process sees: the image's ENV, then the container's env.
  const env: Record<string, string> = { ...imageEnv };
  const envFrom: Record<string, Obj> = {};
  for (const e of arr(container.env, "env")) {
    const item = obj(e, "env item");
    const name = str(item.name, "env name");
    if (item.valueFrom !== undefined) {
      envFrom[name] = obj(item.valueFrom, `${name} valueFrom`);
      env[name] = name === "WEIGOT_WS_NODE_ID" ? "weigot-ws-7d9c-abcde" : "from-a-secret";
    } else {
      env[name] = str(item.value, `${name}: Kubernetes env values must be strings`);
    }
  }
  const argv = [
    ...((container.command as string[]) ?? []),
    ...((container.args as string[]) ?? []),
  ];
  const call = parseCli(argv.length > 0 ? argv : imageCmd, "k8s container command");
  const config = configOf(envToRaw(env, "k8s env"), call.flags, "k8s");
  return { deployment, podSpec, podLabels, container, containerPorts, env, envFrom, call, config };
}

describe("deploy/k8s", () => {
  const { deployment, podSpec, podLabels, container, containerPorts, envFrom, call, config } =
    k8sNode();
  const resolvePort = (p: unknown) =>
    typeof p === "number" ? p : (containerPorts.find((c) => c.name === p)?.containerPort as number);

  test("kustomization lists every manifest", () => {
    const kustomization = k8sDocs.find(({ doc }) => doc.kind === "Kustomization");
    assert.ok(kustomization, "kustomization.yaml");
    const resources = arr(kustomization.doc.resources, "resources").map((r) => str(r, "resource"));
    assert.deepEqual(
      [...resources].sort(),
      k8sFiles.filter((f) => f !== kustomization.file).sort(),
    );
  });

  test("Deployment: 2+ replicas in redis mode, node id from the pod name", () => {
    assert.ok(Number(obj(deployment.spec, "spec").replicas) >= 2);
    const selector = obj(obj(obj(deployment.spec, "spec").selector, "s").matchLabels, "m");
    for (const [k, v] of Object.entries(selector)) assert.equal(podLabels[k], v, `selector ${k}`);
    assert.equal(call.command, "start");
    assert.equal(config.daemon, false);
    assert.equal(config.adapter, "redis");
    assert.deepEqual(envFrom.WEIGOT_WS_NODE_ID, { fieldRef: { fieldPath: "metadata.name" } });
    const secret = envFrom.WEIGOT_WS_JWT_SECRET;
    if (secret) assert.equal(obj(secret.secretKeyRef, "secretKeyRef").optional, true);
    const redisHost = new URL(config.redisUrl).hostname;
    const redisService = k8sOne("Service", redisHost);
    const redisPorts = arr(obj(redisService.spec, "spec").ports, "ports").map(
      (p) => obj(p, "p").port,
    );
    assert.ok(redisPorts.includes(Number(new URL(config.redisUrl).port || 6379)));
  });

  test("Deployment: port, probes /readyz and /healthz, non-root", () => {
    assert.ok(
      containerPorts.some((p) => p.containerPort === config.port),
      "containerPort = port",
    );
    const probe = (k: string) => obj(obj(container[k], k).httpGet, `${k} httpGet`);
    assert.equal(probe("readinessProbe").path, "/readyz");
    assert.equal(probe("livenessProbe").path, "/healthz");
    for (const k of ["readinessProbe", "livenessProbe", "startupProbe"]) {
      if (container[k] === undefined) continue;
      assert.equal(resolvePort(probe(k).port), config.port, `${k} port`);
      assert.match(String(probe(k).path), /^\/(healthz|readyz)$/);
    }
    const sc = {
      ...obj(podSpec.securityContext ?? {}, "sc"),
      ...obj(container.securityContext ?? {}, "sc"),
    };
    assert.equal(sc.runAsNonRoot, true);
    assert.notEqual(sc.runAsUser, 0);
  });

  test("terminationGracePeriodSeconds covers preStop + shutdown-timeout", () => {
    const preStop = obj(container.lifecycle ?? {}, "lifecycle").preStop;
    let sleep = 0;
    if (preStop !== undefined) {
      const p = obj(preStop, "preStop");
      if (p.sleep !== undefined) sleep = Number(obj(p.sleep, "sleep").seconds);
      else {
        const cmd = arr(obj(p.exec, "preStop exec").command, "command").map(String);
        assert.equal(cmd[0], "sleep", "preStop: sleep N");
        sleep = Number(cmd[1]);
      }
    }
    const grace = Number(podSpec.terminationGracePeriodSeconds ?? 30);
    assert.ok(
      grace > sleep + config.shutdownTimeout,
      `terminationGracePeriodSeconds ${grace} <= preStop ${sleep} + shutdown-timeout ${config.shutdownTimeout}`,
    );
  });

  test("Service selects the pods and targets the container port", () => {
    const service = k8sOne("Service", "weigot-ws");
    const spec = obj(service.spec, "spec");
    for (const [k, v] of Object.entries(obj(spec.selector, "selector"))) {
      assert.equal(podLabels[k], v, `Service selector ${k}`);
    }
    const ports = arr(spec.ports, "ports").map((p) => obj(p, "port"));
    assert.ok(ports.every((p) => resolvePort(p.targetPort ?? p.port) === config.port));
  });

  test("Ingress: ingress-nginx with cookie affinity and long proxy timeouts", () => {
    const ingress = k8s("Ingress")[0];
    assert.ok(ingress, "an Ingress");
    const a = obj(obj(ingress.metadata, "metadata").annotations, "annotations");
    const n = "nginx.ingress.kubernetes.io/";
    assert.equal(a[`${n}affinity`], "cookie");
    for (const t of ["proxy-read-timeout", "proxy-send-timeout"]) {
      assert.ok(Number(a[n + t]) > PING_SILENCE_S, `${t} above ${PING_SILENCE_S} s`);
    }
    const body = a[`${n}proxy-body-size`];
    if (body !== undefined)
      assert.ok(bytes(String(body), "proxy-body-size") >= DEFAULTS.maxFrameBytes);
    const spec = obj(ingress.spec, "spec");
    assert.equal(spec.ingressClassName, "nginx");
    const service = k8sOne("Service", "weigot-ws");
    const servicePorts = arr(obj(service.spec, "spec").ports, "ports").map((p) => obj(p, "p"));
    for (const rule of arr(spec.rules, "rules")) {
      for (const p of arr(obj(obj(rule, "rule").http, "http").paths, "paths")) {
        const backend = obj(obj(obj(p, "path").backend, "backend").service, "service");
        assert.equal(backend.name, "weigot-ws");
        const port = obj(backend.port, "port");
        assert.ok(
          servicePorts.some((sp) => sp.name === port.name || sp.port === port.number),
          "Ingress port is a Service port",
        );
      }
    }
  });

  test("the reference Redis is marked development-only", () => {
    for (const kind of ["Deployment", "Service"]) {
      const redis = k8sOne(kind, "redis");
      const labels = obj(obj(redis.metadata, "metadata").labels, "labels");
      assert.equal(labels["app.kubernetes.io/component"], "development-only", `${kind} redis`);
    }
    assert.equal(Number(obj(k8sOne("Deployment", "redis").spec, "spec").replicas), 1);
  });
});

test("one port everywhere: image, compose, nginx upstreams, Kubernetes", () => {
  const ports = new Set<number>([imageConfig.port, DEFAULTS.port]);
  for (const [name, svc] of nodeServices) ports.add(composeNodeConfig(name, svc).config.port);
  for (const s of nginx.servers) ports.add(s.port);
  const deployment = k8sOne("Deployment", "weigot-ws");
  const spec = obj(obj(obj(deployment.spec, "spec").template, "t").spec, "s");
  for (const c of arr(spec.containers, "containers")) {
    for (const p of arr(obj(c, "c").ports, "ports")) ports.add(Number(obj(p, "p").containerPort));
  }
  assert.deepEqual([...ports], [DEFAULTS.port]);
});

/**
 * Runs the real CLI (src/cli/index.ts through tsx) with a deployment's environment and a pid
 * file where nothing runs, so yargs' strict parsing judges the flags and variables.
 */
function runRealCli(
  cliArgs: readonly string[],
  env: Record<string, string>,
): Promise<{ code: number | null; output: string }> {
  const pidFile = path.join(os.tmpdir(), `weigot-ws-manifest-test-${process.pid}-nothing.pid`);
  const args = cliArgs.map((a, i) =>
    cliArgs[i - 1] === "--pid-file"
      ? pidFile
      : a.startsWith("--pid-file=")
        ? `--pid-file=${pidFile}`
        : a,
  );
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      ["--import", "tsx", at("src", "cli", "index.ts"), ...args],
      {
        cwd: ROOT,
        env: {
          PATH: process.env.PATH ?? "",
          HOME: os.tmpdir(),
          ...env,
          WEIGOT_WS_PID_FILE: pidFile,
        },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let output = "";
    child.stdout.on("data", (c) => {
      output += c;
    });
    child.stderr.on("data", (c) => {
      output += c;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

test("management commands (status, reload, stop) work in each deployed environment", async () => {
  const unit = parseIni(read("deploy", "systemd", "weigot-ws.service"), "systemd");
  const unitEnv = Object.fromEntries(
    (unit.get("Service")?.get("Environment") ?? []).flatMap((line) =>
      splitWords(systemdExpand(line)).map((a) => [
        a.slice(0, a.indexOf("=")),
        a.slice(a.indexOf("=") + 1),
      ]),
    ),
  );
  const execReload = systemdExec(iniOne(unit, "Service", "ExecReload") ?? "");
  const cliArgs = (argv: string[]) =>
    argv.slice(argv.findIndex((a) => /(^|\/)dist\/cli\/index\.js$/.test(a)) + 1);
  const [composeName, composeSvc] = nodeServices[0];
  const environments: [string, Record<string, string>][] = [
    ["the image (docker exec)", imageEnv],
    [
      `compose ${composeName} (docker compose exec)`,
      composeNodeConfig(composeName, composeSvc).env,
    ],
    ["the k8s pod (kubectl exec)", k8sNode().env],
    ["the systemd unit", unitEnv],
  ];
  const runs: { where: string; args: string[]; env: Record<string, string>; expect: number }[] = [
    { where: "systemd ExecReload", args: cliArgs(execReload), env: unitEnv, expect: 1 },
  ];
  // status in every environment; reload and stop (same options as status) in the fullest one.
  for (const [where, env] of environments) runs.push({ where, args: ["status"], env, expect: 3 });
  const [fullest, fullestEnv] = environments[1];
  runs.push({ where: fullest, args: ["reload"], env: fullestEnv, expect: 1 });
  runs.push({ where: fullest, args: ["stop"], env: fullestEnv, expect: 0 });
  const results = await Promise.all(runs.map((r) => runRealCli(r.args, r.env)));
  const failures = runs
    .map((r, i) => ({ ...r, ...results[i] }))
    .filter((r) => r.code !== r.expect || !/not running/.test(r.output))
    .map(
      (r) =>
        `${r.where}: weigot-ws ${r.args.join(" ")} exited ${r.code} (expected ${r.expect}, "not running"): ${
          r.output.trim().split("\n").pop() ?? ""
        }`,
    );
  assert.deepEqual(failures, []);
});
