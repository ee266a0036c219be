/**
 * The CLI as a user runs it: start (foreground and -d), status, stop, restart, bad config,
 * --help. Every service runs from the built dist/ on port 0 (or a free port) with 2 workers and
 * its own PID file in a temporary directory.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, afterEach, describe, it } from "node:test";
import { ChatClient, ClientPool } from "./support/chat-client.js";
import { freePort } from "./support/nginx.js";
import {
  type CliResult,
  runCli,
  runCliAsync,
  type ServiceHandle,
  startService,
  tempDir,
  waitUntil,
} from "./support/service.js";

interface StatusJson {
  running: boolean;
  pid: number;
  nodeId: string;
  adapter: string;
  host: string;
  port: number;
  uptimeSeconds: number;
  ready: boolean;
  connections: number;
  users: number;
  workers: {
    id: number;
    pid: number;
    state: string;
    connections: number;
    rssBytes: number;
    heapUsedBytes: number;
  }[];
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function show(r: CliResult): string {
  return `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;
}

/** PID files of background instances started by a test, killed in after() if still running. */
const daemons: string[] = [];
const dirs: string[] = [];

function newDir(): string {
  const dir = tempDir("weigot-ws-cli-");
  dirs.push(dir);
  return dir;
}

async function killDaemon(pidFile: string): Promise<void> {
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile, "utf8").trim());
  } catch {
    return;
  }
  if (!pid || !alive(pid)) return;
  process.kill(pid, "SIGTERM");
  await waitUntil(() => !alive(pid), `daemon ${pid} to exit`, 20_000).catch(() => {
    process.kill(pid, "SIGKILL");
  });
}

after(async () => {
  for (const pidFile of daemons) await killDaemon(pidFile);
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe("weigot-ws --help", () => {
  it("the program and every command answer --help with exit 0", () => {
    const top = runCli(["--help"]);
    assert.equal(top.code, 0, show(top));
    for (const cmd of ["start", "stop", "restart", "reload", "status"]) {
      assert.match(top.stdout, new RegExp(`weigot-ws ${cmd}\\b`), `${cmd} is listed`);
    }
    const expected: Record<string, string[]> = {
      start: [
        "--port",
        "--workers",
        "--adapter",
        "--jwt-secret",
        "--daemon",
        "--pid-file",
        "--max-frame-bytes",
      ],
      stop: ["--pid-file", "--shutdown-timeout"],
      restart: ["--port", "--workers", "--pid-file"],
      reload: ["--pid-file"],
      status: ["--pid-file", "--json"],
    };
    for (const [cmd, flags] of Object.entries(expected)) {
      for (const help of ["--help", "-h"]) {
        const r = runCli([cmd, help]);
        assert.equal(r.code, 0, show(r));
        assert.match(r.stdout, new RegExp(`weigot-ws ${cmd}`));
        for (const flag of flags)
          assert.ok(r.stdout.includes(flag), `${cmd} ${help} shows ${flag}`);
      }
    }
  });

  it("no command or an unknown one is refused with exit 1 and a hint", () => {
    const none = runCli([]);
    assert.equal(none.code, 1, show(none));
    assert.match(none.stderr, /start, stop, restart, reload or status/);
    const unknown = runCli(["launch"]);
    assert.notEqual(unknown.code, 0, show(unknown));
  });
});

describe("bad configuration is refused with exit 1, naming the key", { timeout: 60_000 }, () => {
  const cases: [string, string[], Record<string, string>, RegExp][] = [
    ["--port abc", ["--port", "abc"], {}, /port \(--port \/ WEIGOT_WS_PORT\).*"abc"/],
    ["--port 70000", ["--port", "70000"], {}, /port \(--port \/ WEIGOT_WS_PORT\).*70000/],
    [
      "WEIGOT_WS_WORKERS=0",
      [],
      { WEIGOT_WS_WORKERS: "0" },
      /workers.*--workers.*WEIGOT_WS_WORKERS/,
    ],
    [
      "WEIGOT_WS_MAX_FRAME_BYTES=10",
      [],
      { WEIGOT_WS_MAX_FRAME_BYTES: "10" },
      /maxFrameBytes.*--max-frame-bytes.*WEIGOT_WS_MAX_FRAME_BYTES/,
    ],
    ["--shutdown-timeout 1.5", ["--shutdown-timeout", "1.5"], {}, /shutdownTimeout.*1\.5/],
    ["--adapter foo", ["--adapter", "foo"], {}, /adapter/],
    ["--log-level loud", ["--log-level", "loud"], {}, /log-level|logLevel/],
    ["an unknown flag", ["--prot", "9000"], {}, /prot/],
    [
      "--adapter redis with a bad URL",
      ["--adapter", "redis", "--redis-url", "http://x"],
      {},
      /redisUrl.*--redis-url.*WEIGOT_WS_REDIS_URL/,
    ],
  ];
  for (const [what, args, env, pattern] of cases) {
    it(what, () => {
      const dir = newDir();
      const pidFile = path.join(dir, "w.pid");
      const base = ["start", "--port", "0", "--host", "127.0.0.1", "--pid-file", pidFile];
      if (!env.WEIGOT_WS_WORKERS) base.push("--workers", "2");
      // A short timeout: should the bad value be taken, the service would run in the foreground.
      const r = runCli([...base, ...args], env, 15_000);
      assert.equal(r.code, 1, show(r));
      assert.match(r.stderr, pattern, show(r));
      assert.doesNotMatch(r.stderr, /\n\s+at /, "a message, not a stack trace");
      assert.equal(existsSync(pidFile), false, "nothing was started");
    });
  }

  it("status, stop and reload name a bad value too, without a stack trace", () => {
    const pidFile = path.join(newDir(), "w.pid");
    for (const cmd of ["status", "stop", "reload"]) {
      const r = runCli([cmd, "--pid-file", pidFile], { WEIGOT_WS_WORKERS: "two" });
      assert.equal(r.code, 1, show(r));
      assert.match(
        r.stderr,
        /^weigot-ws: invalid workers \(--workers \/ WEIGOT_WS_WORKERS\)/,
        show(r),
      );
      assert.doesNotMatch(r.stderr, /\n\s+at /, "a message, not a stack trace");
    }
  });

  it("a config file with a bad value", () => {
    const dir = newDir();
    const pidFile = path.join(dir, "w.pid");
    const file = path.join(dir, "config.json");
    writeFileSync(file, JSON.stringify({ port: 0, workers: 2, maxMessageLength: "lots" }));
    const r = runCli(["start", "--config", file, "--pid-file", pidFile]);
    assert.equal(r.code, 1, show(r));
    assert.match(
      r.stderr,
      /maxMessageLength.*--max-message-length.*WEIGOT_WS_MAX_MESSAGE_LENGTH.*"lots"/,
    );
    assert.equal(existsSync(pidFile), false);
    writeFileSync(file, JSON.stringify({ workers: -3 }));
    const r2 = runCli(["start", "--config", file, "--pid-file", pidFile]);
    assert.equal(r2.code, 1, show(r2));
    assert.match(r2.stderr, /workers/);
  });
});

describe("status and stop when nothing runs", () => {
  it("status says so with exit 3 (and --json running:false); a stale PID file counts as not running", () => {
    const dir = newDir();
    const pidFile = path.join(dir, "w.pid");
    const r = runCli(["status", "--pid-file", pidFile]);
    assert.equal(r.code, 3, show(r));
    assert.match(r.stdout, /not running/);
    const j = runCli(["status", "--json", "--pid-file", pidFile]);
    assert.equal(j.code, 3, show(j));
    assert.deepEqual(JSON.parse(j.stdout), { running: false });
    // A PID file left by a dead process.
    writeFileSync(pidFile, "2147483646\n");
    const stale = runCli(["status", "--pid-file", pidFile]);
    assert.equal(stale.code, 3, show(stale));
  });

  it("stop says it is not running, with exit 0", () => {
    const pidFile = path.join(newDir(), "w.pid");
    const r = runCli(["stop", "--pid-file", pidFile]);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /not running/);
  });

  it("reload says it is not running, with a non-zero exit", () => {
    const pidFile = path.join(newDir(), "w.pid");
    const r = runCli(["reload", "--pid-file", pidFile]);
    assert.notEqual(r.code, 0, show(r));
    assert.match(r.stdout + r.stderr, /not running/);
  });
});

describe("a running service (foreground)", { timeout: 120_000 }, () => {
  let service: ServiceHandle;
  const pool = new ClientPool();
  afterEach(() => pool.closeAll());
  after(async () => {
    pool.closeAll();
    await service?.stop();
  });

  it("status: exit 0 and a readable summary; --json has the same facts", async () => {
    service = await startService();
    const room = "cli-status";
    const a = await pool.connect(service.url, { username: "ann", room });
    const b1 = await pool.connect(service.url, { username: "bob", room });
    await pool.connect(service.url, { username: "bob", room });
    assert.notEqual(a.worker, b1.worker);

    const j = await runCliAsync(["status", "--json", "--pid-file", service.pidFile]);
    assert.equal(j.code, 0, show(j));
    const s = JSON.parse(j.stdout) as StatusJson;
    assert.equal(s.running, true);
    assert.equal(s.pid, service.pid);
    assert.equal(s.port, service.port);
    assert.equal(s.host, "127.0.0.1");
    assert.equal(s.adapter, "cluster");
    assert.equal(s.ready, true);
    assert.equal(typeof s.uptimeSeconds, "number");
    assert.ok(s.uptimeSeconds >= 0);
    assert.equal(s.workers.length, 2);
    for (const w of s.workers) {
      assert.ok(Number.isInteger(w.pid) && w.pid > 0 && w.pid !== service.pid);
      assert.ok(alive(w.pid));
      assert.equal(w.state, "ready");
      assert.ok(w.rssBytes > 1_000_000, `rss ${w.rssBytes}`);
      assert.ok(w.heapUsedBytes > 0);
    }
    assert.deepEqual(
      s.workers.map((w) => w.connections).sort(),
      [1, 2],
      "3 connections over 2 workers",
    );
    assert.equal(s.connections, 3);
    assert.equal(s.users, 2, "bob's two tabs are one user");

    const r = await runCliAsync(["status", "--pid-file", service.pidFile]);
    assert.equal(r.code, 0, show(r));
    const out = r.stdout;
    assert.match(out, /running/);
    assert.match(out, new RegExp(`pid\\s+${service.pid}\\b`));
    assert.match(out, /uptime\s+\d+ s/);
    assert.match(out, /adapter\s+cluster/);
    assert.match(out, new RegExp(`127\\.0\\.0\\.1:${service.port}\\b`));
    assert.match(out, /connections\s+3\b/);
    assert.match(out, /users\s+2\b/);
    for (const w of s.workers) {
      assert.match(out, new RegExp(`pid ${w.pid}\\b.*\\d+ connections.*rss [\\d.]+ MB`));
    }
  });

  it("start refuses a second instance on the same PID file (exit 1, clear message); the first keeps running", async () => {
    const r = await runCliAsync([
      "start",
      "--port",
      "0",
      "--workers",
      "2",
      "--host",
      "127.0.0.1",
      "--pid-file",
      service.pidFile,
    ]);
    assert.equal(r.code, 1, show(r));
    assert.match(r.stderr, new RegExp(`already running \\(pid ${service.pid}`));
    assert.equal(readFileSync(service.pidFile, "utf8").trim(), String(service.pid));
    const s = await runCliAsync(["status", "--json", "--pid-file", service.pidFile]);
    assert.equal(s.code, 0, show(s));
    await pool.connect(service.url, { username: "still", room: "cli-twice" });
  });

  it("status, stop and reload work with the service's own environment and config file", async () => {
    // A container or unit sets WEIGOT_WS_* for the service; `weigot-ws status` run in the same
    // environment (docker exec, systemd ExecStop) must not choke on the start-only options.
    const env = {
      WEIGOT_WS_PORT: String(service.port),
      WEIGOT_WS_WORKERS: "2",
      WEIGOT_WS_HOST: "127.0.0.1",
      WEIGOT_WS_LOG_FORMAT: "json",
      WEIGOT_WS_PID_FILE: service.pidFile,
    };
    const r = await runCliAsync(["status"], env);
    assert.equal(r.code, 0, show(r));
    const file = path.join(service.dir, "service.json");
    writeFileSync(
      file,
      JSON.stringify({ port: service.port, workers: 2, pidFile: service.pidFile }),
    );
    const c = await runCliAsync(["status", "--config", file]);
    assert.equal(c.code, 0, show(c));
  });

  it("flags win over the environment, which wins over the config file", async () => {
    const file = path.join(service.dir, "pid-file.json");
    const elsewhere = path.join(service.dir, "nothing-here.pid");
    writeFileSync(file, JSON.stringify({ pidFile: service.pidFile }));
    const fromFile = await runCliAsync(["status", "--config", file]);
    assert.equal(fromFile.code, 0, show(fromFile));
    const envWins = await runCliAsync(["status", "--config", file], {
      WEIGOT_WS_PID_FILE: elsewhere,
    });
    assert.equal(envWins.code, 3, show(envWins));
    const flagWins = await runCliAsync(
      ["status", "--config", file, "--pid-file", service.pidFile],
      {
        WEIGOT_WS_PID_FILE: elsewhere,
      },
    );
    assert.equal(flagWins.code, 0, show(flagWins));
  });

  it("stop is graceful: clients get an action 100 notice before the disconnect, the primary exits, the PID file goes", async () => {
    const room = "cli-stop";
    const clients = [
      await pool.connect(service.url, { username: "ann", room }),
      await pool.connect(service.url, { username: "bob", room }, { transports: ["polling"] }),
    ];
    assert.notEqual(clients[0].worker, clients[1].worker);
    const atDisconnect = clients.map(() => -1);
    for (const [i, c] of clients.entries()) {
      c.socket.on("disconnect", () => {
        atDisconnect[i] = c.received.length;
      });
    }
    const marks = clients.map((c) => c.mark());
    const workerPids = (
      JSON.parse(service.cli(["status", "--json"]).stdout) as StatusJson
    ).workers.map((w) => w.pid);
    const r = await runCliAsync(["stop", "--pid-file", service.pidFile]);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, new RegExp(`stopped \\(pid ${service.pid}\\)`));
    for (const [i, c] of clients.entries()) {
      await c.waitDisconnect("disconnect on stop", 10_000);
      const notice = c.received.slice(marks[i], atDisconnect[i]).find((e) => e.action === 100);
      assert.ok(notice, `client ${i} got a notice before its disconnect`);
      assert.equal(notice.data.type, "state");
      assert.match(notice.data.content.message ?? "", /shutting down/);
      assert.equal(notice.data.content.error, undefined, "a notice, not an error");
    }
    assert.equal(await service.exited, 0);
    assert.equal(existsSync(service.pidFile), false, "the PID file is removed");
    assert.equal(existsSync(`${service.pidFile}.sock`), false, "the control socket is removed");
    for (const pid of workerPids) {
      await waitUntil(() => !alive(pid), `worker ${pid} to exit`);
    }
    const again = runCli(["status", "--pid-file", service.pidFile]);
    assert.equal(again.code, 3, show(again));
  });
});

describe("background instances: start -d, restart", { timeout: 180_000 }, () => {
  const pool = new ClientPool();
  afterEach(() => pool.closeAll());

  it("start -d returns once ready; status works; clients connect; stop stops it", async () => {
    const dir = newDir();
    const pidFile = path.join(dir, "w.pid");
    daemons.push(pidFile);
    const port = await freePort();
    const started = Date.now();
    const r = runCli([
      "start",
      "-d",
      "--port",
      String(port),
      "--host",
      "127.0.0.1",
      "--workers",
      "2",
      "--pid-file",
      pidFile,
    ]);
    assert.equal(r.code, 0, show(r));
    assert.ok(Date.now() - started < 30_000);
    const pid = Number(readFileSync(pidFile, "utf8").trim());
    assert.match(
      r.stdout,
      new RegExp(`started \\(pid ${pid}\\) on 127\\.0\\.0\\.1:${port}, 2 workers`),
    );
    assert.ok(alive(pid));
    // Ready when start returned: no retry needed.
    const status = runCli(["status", "--json", "--pid-file", pidFile]);
    assert.equal(status.code, 0, show(status));
    const s = JSON.parse(status.stdout) as StatusJson;
    assert.equal(s.pid, pid);
    assert.equal(s.port, port);
    assert.equal(s.workers.length, 2);
    const url = `http://127.0.0.1:${port}`;
    const a = await pool.connect(url, { username: "ann", room: "daemon" });
    const b = await pool.connect(url, { username: "bob", room: "daemon" });
    assert.notEqual(a.worker, b.worker);
    await a.say("hi from the daemon");
    // The log goes to the file start named, beside the PID file.
    const log = /, log (\S+)$/m.exec(r.stdout)?.[1] ?? "";
    assert.equal(path.dirname(log), dir, `log file beside the PID file: ${r.stdout}`);
    assert.ok(existsSync(log), "the log file exists");
    assert.match(readFileSync(log, "utf8"), /"message":"ready"/);

    pool.closeAll();
    const stop = await runCliAsync(["stop", "--pid-file", pidFile]);
    assert.equal(stop.code, 0, show(stop));
    assert.equal(alive(pid), false);
    assert.equal(existsSync(pidFile), false);
    for (const w of s.workers) await waitUntil(() => !alive(w.pid), `worker ${w.pid} to exit`);
  });

  it("restart: stop, then start in the background with the same options; a new primary that works", async () => {
    const dir = newDir();
    const pidFile = path.join(dir, "w.pid");
    daemons.push(pidFile);
    const port = await freePort();
    const opts = [
      "--port",
      String(port),
      "--host",
      "127.0.0.1",
      "--workers",
      "2",
      "--pid-file",
      pidFile,
    ];
    const r = runCli(["start", "-d", "--max-message-length", "20", ...opts]);
    assert.equal(r.code, 0, show(r));
    const pid1 = Number(readFileSync(pidFile, "utf8").trim());
    const url = `http://127.0.0.1:${port}`;
    const old = await pool.connect(url, { username: "ann", room: "restart" });
    const fromOld = old.mark();

    const rr = await runCliAsync(["restart", "--pid-file", pidFile]);
    assert.equal(rr.code, 0, show(rr));
    assert.equal(alive(pid1), false, "the old primary is gone");
    const pid2 = Number(readFileSync(pidFile, "utf8").trim());
    assert.notEqual(pid2, pid1);
    assert.ok(alive(pid2));
    // The old client was told and let go.
    await old.waitDisconnect("the old client to be disconnected", 10_000);
    assert.ok(old.all((e) => e.action === 100, fromOld).length > 0, "notice before the stop");

    const s = JSON.parse(runCli(["status", "--json", "--pid-file", pidFile]).stdout) as StatusJson;
    assert.equal(s.pid, pid2);
    assert.equal(s.port, port, "same port");
    assert.equal(s.host, "127.0.0.1");
    assert.equal(s.workers.length, 2, "same number of workers");
    // Same options: the message limit of 20 still holds.
    const c = await pool.connect(url, { username: "bob", room: "restart" });
    const tooLong = await c.request("message", {
      type: "text",
      content: { message: "x".repeat(21) },
    });
    assert.equal(tooLong.data.content.error?.code, "E_MESSAGE_TOO_LONG");
    await c.say("x".repeat(20));

    pool.closeAll();
    const stop = await runCliAsync(["stop", "--pid-file", pidFile]);
    assert.equal(stop.code, 0, show(stop));
    assert.equal(existsSync(pidFile), false);
  });

  it("restart when nothing runs starts the service in the background", async () => {
    const dir = newDir();
    const pidFile = path.join(dir, "w.pid");
    daemons.push(pidFile);
    const r = runCli([
      "restart",
      "--port",
      "0",
      "--host",
      "127.0.0.1",
      "--workers",
      "2",
      "--pid-file",
      pidFile,
    ]);
    assert.equal(r.code, 0, show(r));
    const s = JSON.parse(runCli(["status", "--json", "--pid-file", pidFile]).stdout) as StatusJson;
    assert.equal(s.running, true);
    assert.ok(s.port > 0);
    const c = await ChatClient.connect(`http://127.0.0.1:${s.port}`, { username: "x", room: "r" });
    pool.add(c);
    await c.say("up");
    pool.closeAll();
    const stop = await runCliAsync(["stop", "--pid-file", pidFile]);
    assert.equal(stop.code, 0, show(stop));
  });
});
