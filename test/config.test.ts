/** Unit tests of src/config/config.ts: defaults, coercion, and messages that name the key. */
import assert from "node:assert/strict";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import {
  type Config,
  ConfigError,
  DEFAULTS,
  envName,
  kebab,
  parseConfig,
  parseHostList,
  RULES,
} from "../src/config/config.js";

function refused(raw: Record<string, unknown>, key: keyof Config): ConfigError {
  let caught: unknown;
  try {
    parseConfig(raw);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof ConfigError, `${JSON.stringify(raw)} is refused`);
  assert.equal(caught.key, key);
  // The message names the key, its flag and its environment variable.
  assert.ok(
    caught.message.startsWith(`invalid ${key} (--${kebab(key)} / ${envName(key)}): `),
    caught.message,
  );
  return caught;
}

describe("parseConfig", () => {
  it("defaults: an empty input gives DEFAULTS", () => {
    const c = parseConfig({});
    assert.deepEqual(c, DEFAULTS);
    assert.equal(c.port, 9601);
    assert.equal(c.host, "0.0.0.0");
    assert.equal(c.workers, Math.max(1, os.availableParallelism()));
    assert.equal(c.adapter, "cluster");
    assert.equal(c.redisUrl, "redis://127.0.0.1:6379");
    assert.equal(c.redisPrefix, "weigot-ws");
    assert.equal(c.redisWait, 0);
    assert.equal(c.nodeTimeout, 15);
    assert.equal(c.pidFile, path.join(os.tmpdir(), "weigot-ws.pid"));
    assert.equal(c.logFile, "");
    assert.equal(c.logLevel, "info");
    assert.equal(c.logFormat, "auto");
    assert.equal(c.jwtSecret, "");
    assert.equal(c.shutdownTimeout, 10);
    assert.equal(c.maxMessageLength, 4096);
    assert.equal(c.maxImageBytes, 1_000_000);
    assert.equal(c.maxFrameBytes, 1_500_000);
    assert.equal(c.daemon, false);
    assert.ok(c.nodeId.length > 0);
  });

  it("does not share state between calls (DEFAULTS stays untouched)", () => {
    const before = structuredClone(DEFAULTS);
    const c = parseConfig({ port: 1 });
    c.host = "changed";
    assert.deepEqual(DEFAULTS, before);
  });

  it("coerces strings (flags, environment) to numbers and booleans", () => {
    const c = parseConfig({
      port: "8080",
      workers: "4",
      redisWait: " 30 ",
      nodeTimeout: "2",
      shutdownTimeout: "3600",
      maxMessageLength: "1",
      maxImageBytes: "100",
      maxFrameBytes: "1024",
      daemon: "false",
    });
    assert.equal(c.port, 8080);
    assert.equal(c.workers, 4);
    assert.equal(c.redisWait, 30);
    assert.equal(c.nodeTimeout, 2);
    assert.equal(c.shutdownTimeout, 3600);
    assert.equal(c.maxMessageLength, 1);
    assert.equal(c.maxImageBytes, 100);
    assert.equal(c.maxFrameBytes, 1024);
    assert.equal(c.daemon, false);
    for (const [raw, value] of [
      ["true", true],
      ["1", true],
      [true, true],
      ["false", false],
      ["0", false],
      [false, false],
    ] as const) {
      assert.equal(parseConfig({ daemon: raw, logFile: "/tmp/x.log" }).daemon, value, String(raw));
    }
    // Numbers from a JSON config file are taken as they are.
    assert.equal(parseConfig({ port: 0 }).port, 0);
    assert.equal(parseConfig({ port: 65535 }).port, 65535);
  });

  it("takes strings and enums as given; ignores unknown keys", () => {
    const c = parseConfig({
      host: "127.0.0.1",
      adapter: "redis",
      redisUrl: "rediss://cache:6380/0",
      redisPrefix: "app1",
      nodeId: "node-a",
      pidFile: "/run/w.pid",
      logFile: "/var/log/w.log",
      logLevel: "debug",
      logFormat: "pretty",
      jwtSecret: "s3cret",
      somethingElse: "ignored",
    });
    assert.equal(c.host, "127.0.0.1");
    assert.equal(c.adapter, "redis");
    assert.equal(c.redisUrl, "rediss://cache:6380/0");
    assert.equal(c.redisPrefix, "app1");
    assert.equal(c.nodeId, "node-a");
    assert.equal(c.pidFile, "/run/w.pid");
    assert.equal(c.logFile, "/var/log/w.log");
    assert.equal(c.logLevel, "debug");
    assert.equal(c.logFormat, "pretty");
    assert.equal(c.jwtSecret, "s3cret");
    assert.equal("somethingElse" in c, false);
  });

  it("every integer key refuses a non-integer and an out-of-range value, naming the key", () => {
    for (const [key, rule] of Object.entries(RULES) as [
      keyof Config,
      (typeof RULES)[keyof Config],
    ][]) {
      if (rule.kind !== "int") continue;
      for (const bad of ["abc", "", "  ", "1.5", 2.5, true, null, [1], "12abc"]) {
        const e = refused({ [key]: bad }, key);
        assert.match(e.message, /expected an integer/, `${key}=${JSON.stringify(bad)}`);
      }
      for (const bad of [rule.min - 1, rule.max + 1, String(rule.max + 1)]) {
        const e = refused({ [key]: bad }, key);
        assert.ok(e.message.includes(`expected ${rule.min}..${rule.max}`), e.message);
      }
      assert.equal(parseConfig({ [key]: String(rule.min) })[key], rule.min);
      assert.equal(parseConfig({ [key]: rule.max })[key], rule.max);
    }
  });

  it("every enum key refuses other values and lists the choices", () => {
    for (const [key, rule] of Object.entries(RULES) as [
      keyof Config,
      (typeof RULES)[keyof Config],
    ][]) {
      if (rule.kind !== "enum") continue;
      for (const bad of ["nope", "", 1, rule.values[0].toUpperCase()]) {
        const e = refused({ [key]: bad }, key);
        assert.ok(e.message.includes(rule.values.join(", ")), e.message);
      }
    }
  });

  it("every string key refuses a non-string; non-empty ones refuse blanks", () => {
    for (const [key, rule] of Object.entries(RULES) as [
      keyof Config,
      (typeof RULES)[keyof Config],
    ][]) {
      if (rule.kind !== "string") continue;
      refused({ [key]: 42 }, key);
      refused({ [key]: ["a"] }, key);
      if (rule.nonEmpty) {
        const e = refused({ [key]: "   " }, key);
        assert.match(e.message, /must not be empty/);
      } else {
        assert.equal(parseConfig({ [key]: "" })[key], "");
      }
    }
  });

  it("the boolean key refuses anything but true/false/1/0", () => {
    for (const bad of ["yes", "no", "", 2, "TRUE "]) {
      const e = refused({ daemon: bad }, "daemon");
      assert.match(e.message, /expected true or false/);
    }
  });

  it("shows the bad value as given", () => {
    assert.match(refused({ port: "abc" }, "port").message, /got "abc"$/);
    assert.match(refused({ workers: "0" }, "workers").message, /got 0$/);
    assert.equal(
      refused({ workers: 0 }, "workers").message,
      "invalid workers (--workers / WEIGOT_WS_WORKERS): expected 1..256, got 0",
    );
  });

  it("--adapter redis needs a redis:// or rediss:// URL", () => {
    const e = refused({ adapter: "redis", redisUrl: "http://cache:6379" }, "redisUrl");
    assert.match(e.message, /WEIGOT_WS_REDIS_URL/);
    refused({ adapter: "redis", redisUrl: "cache:6379" }, "redisUrl");
    assert.equal(
      parseConfig({ adapter: "redis", redisUrl: "redis://c:1" }).redisUrl,
      "redis://c:1",
    );
    // Not checked in cluster mode, where it is not used.
    assert.equal(parseConfig({ redisUrl: "whatever" }).redisUrl, "whatever");
  });

  it("Sentinel and Cluster: host:port lists, only with --adapter redis, one at a time", () => {
    const ok = parseConfig({
      adapter: "redis",
      redisSentinels: "10.0.0.1:26379, [::1]:26380",
      redisSentinelName: "main",
    });
    assert.equal(ok.redisSentinels, "10.0.0.1:26379, [::1]:26380");
    assert.deepEqual(parseHostList("redisSentinels", ok.redisSentinels), [
      { host: "10.0.0.1", port: 26379 },
      { host: "::1", port: 26380 },
    ]);
    const bad = refused({ adapter: "redis", redisSentinels: "10.0.0.1" }, "redisSentinels");
    assert.match(bad.message, /host:port/);
    refused({ adapter: "redis", redisCluster: "a:1,b:99999" }, "redisCluster");
    refused({ redisCluster: "a:7000" }, "redisCluster");
    refused({ adapter: "redis", redisCluster: "a:1", redisSentinels: "b:2" }, "redisSentinels");
    refused({ adapter: "redis", redisCluster: "a:1", redisPrefix: "x{1}" }, "redisPrefix");
    assert.equal(parseConfig({ adapter: "redis", redisCluster: "a:7000" }).redisCluster, "a:7000");
  });

  it("--daemon without --log-file logs beside the PID file; an explicit log file stays", () => {
    const c = parseConfig({ daemon: true, pidFile: "/run/weigot/w.pid" });
    assert.equal(path.dirname(c.logFile), "/run/weigot");
    assert.match(c.logFile, /\.log$/);
    assert.equal(
      parseConfig({ daemon: "1", pidFile: "/run/w.pid", logFile: "/l/x.log" }).logFile,
      "/l/x.log",
    );
    assert.equal(parseConfig({ daemon: false }).logFile, "");
  });
});

describe("kebab and envName", () => {
  it("map camelCase keys to flags and variables", () => {
    assert.equal(kebab("port"), "port");
    assert.equal(kebab("maxFrameBytes"), "max-frame-bytes");
    assert.equal(envName("port"), "WEIGOT_WS_PORT");
    assert.equal(envName("redisUrl"), "WEIGOT_WS_REDIS_URL");
    assert.equal(envName("maxMessageLength"), "WEIGOT_WS_MAX_MESSAGE_LENGTH");
    assert.deepEqual(Object.keys(RULES).sort(), Object.keys(DEFAULTS).sort(), "one rule per key");
  });
});

describe("parseConfig: guardrail keys", () => {
  it("refuses a rate that is not <count>/<seconds>s, accepts 0 to switch it off", () => {
    assert.equal(parseConfig({ messageRate: "10/2s" }).messageRate, "10/2s");
    assert.equal(parseConfig({ messageRate: "0" }).messageRate, "0");
    for (const bad of ["fast", "10", "10/0s", "-1/4s", "1.5/4s"]) {
      const err = refused({ messageRate: bad }, "messageRate");
      assert.match(err.message, /expected <count>\/<seconds>s/);
    }
  });

  it("refuses byte rates below one image, and a buffer cap below one frame", () => {
    const err = refused({ messageBytesRate: "1000/10s" }, "messageBytesRate");
    assert.match(err.message, /would refuse every image/);
    refused({ maxBufferedBytes: 1000 }, "maxBufferedBytes");
    // Defaults sized for default images and frames grow with them; explicit values do not.
    const big = parseConfig({ maxImageBytes: 10_000_000, maxFrameBytes: 20_000_000 });
    assert.equal(big.messageBytesRate, "40000000/10s");
    assert.equal(big.userMessageBytesRate, "60000000/10s");
    assert.equal(big.maxBufferedBytes, 80_000_000);
    assert.equal(parseConfig({ maxBufferedBytes: 0 }).maxBufferedBytes, 0);
  });

  it("checks --trusted-proxies and --allowed-origins entries at start", () => {
    assert.equal(
      parseConfig({ trustedProxies: "loopback, 10.0.0.0/8, ::1" }).trustedProxies,
      "loopback, 10.0.0.0/8, ::1",
    );
    refused({ trustedProxies: "nginx" }, "trustedProxies");
    refused({ trustedProxies: "10.0.0.0/40" }, "trustedProxies");
    assert.equal(
      parseConfig({ allowedOrigins: "https://chat.example.com, http://localhost:3000" })
        .allowedOrigins,
      "https://chat.example.com, http://localhost:3000",
    );
    for (const bad of ["chat.example.com", "https://x.com/chat", "ftp://x.com"]) {
      refused({ allowedOrigins: bad }, "allowedOrigins");
    }
  });
});
