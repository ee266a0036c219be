/**
 * A throwaway redis-server for tests and benchmarks: a real process (the Debian package) on a free
 * port, without persistence, in its own temp dir.
 *
 * ```ts
 * let redis: RedisServer;
 * before(async () => { redis = await startRedisServer(); });
 * after(() => redis.stop());
 * // createClient({ url: redis.url }) …; redis.restart() to simulate an outage; redis.kill() to crash it
 * ```
 *
 * Nothing leaks: the server is unref'd (a forgotten stop() does not keep the test process alive),
 * SIGKILLed with its dir removed when the test process exits, and a watchdog shell does the same
 * within a second if the test process dies without an `exit` event (SIGKILL, a runner's timeout).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";

export interface RedisServerOptions {
  /** Port to listen on; 0 picks a free one (retrying if another process takes it first). @default 0 */
  port?: number;
  /** Extra redis-server arguments, e.g. `["--maxmemory", "10mb"]`. @default [] */
  args?: string[];
  /** How long start() and restart() wait for the server to answer PING. @default 10_000 */
  startTimeoutMs?: number;
  /** The redis-server binary. @default "/usr/bin/redis-server" if it exists, else "redis-server" */
  bin?: string;
  /**
   * Writes this config file into the server's dir and passes it first (Sentinel needs a writable
   * config file); called with the port, at every (re)start. @default none
   */
  configFile?: (port: number, dir: string) => string;
  /** The log line that says the server is up. @default /ready to accept connections/i */
  readyLine?: RegExp;
}

export interface RedisServer {
  /** `redis://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
  /** The server's working directory (removed by stop()). */
  readonly dir: string;
  /** Graceful stop (SIGTERM, SIGKILL after 5 s); resolves once the process exited. Idempotent. */
  stop(): Promise<void>;
  /** Stops the server (if running) and starts a fresh, empty one on the same port. */
  restart(): Promise<void>;
  /** Crashes the server (SIGKILL) at once; the promise resolves once the process exited. */
  kill(): Promise<void>;
  /** The server's last output lines, for assertion messages. */
  log(): string;
}

const MAX_PORT_ATTEMPTS = 5;
const LOG_LINES = 50;

export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  const bin =
    options.bin ?? (existsSync("/usr/bin/redis-server") ? "/usr/bin/redis-server" : "redis-server");
  const timeoutMs = options.startTimeoutMs ?? 10_000;
  const dir = await mkdtemp(path.join(os.tmpdir(), "weigot-redis-"));
  const lines: string[] = [];
  let child: ChildProcess | undefined;
  let watchdog: ChildProcess | undefined;
  let port = options.port ?? 0;

  const launch = async (fixedPort: number): Promise<number> => {
    let lastError: unknown;
    for (let attempt = 1; attempt <= MAX_PORT_ATTEMPTS; attempt++) {
      const tryPort = fixedPort || (await freePort());
      try {
        const conf = options.configFile && path.join(dir, `redis-${tryPort}.conf`);
        if (conf && options.configFile) writeFileSync(conf, options.configFile(tryPort, dir));
        const ready = options.readyLine ?? /ready to accept connections/i;
        const args = options.args ?? [];
        child = await spawnServer(bin, tryPort, dir, conf, args, timeoutMs, lines, ready);
        watchdog = startWatchdog(child, dir);
        return tryPort;
      } catch (err) {
        lastError = err;
        // Another process may have taken the port between freePort() and the bind: try another.
        // A fixed port (restart) may still be held by the old process's socket for a moment.
        if (!(err instanceof PortInUseError)) break;
        if (fixedPort) await delay(100 * attempt);
      }
    }
    throw lastError;
  };

  const stopProcess = async (signal: NodeJS.Signals): Promise<void> => {
    const proc = child;
    child = undefined;
    watchdog?.kill("SIGKILL");
    watchdog = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
    proc.kill(signal);
    const timer = setTimeout(() => proc.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(timer);
  };

  const killOnExit = () => {
    watchdog?.kill("SIGKILL");
    child?.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  };
  process.once("exit", killOnExit);

  try {
    port = await launch(port);
  } catch (err) {
    process.removeListener("exit", killOnExit);
    await rm(dir, { recursive: true, force: true });
    throw err;
  }

  let stopped = false;
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir,
    log: () => lines.join("\n"),
    async stop() {
      if (stopped) return;
      stopped = true;
      await stopProcess("SIGTERM");
      process.removeListener("exit", killOnExit);
      await rm(dir, { recursive: true, force: true });
    },
    async restart() {
      if (stopped) throw new Error("redis-server: restart() after stop()");
      await stopProcess("SIGTERM");
      await launch(port);
    },
    kill() {
      return stopProcess("SIGKILL");
    },
  };
}

class PortInUseError extends Error {}

/** Spawns redis-server and resolves once it answers PING; rejects if it exits or times out. */
async function spawnServer(
  bin: string,
  port: number,
  dir: string,
  conf: string | undefined,
  extraArgs: string[],
  timeoutMs: number,
  lines: string[],
  readyLine: RegExp,
): Promise<ChildProcess> {
  const args = [
    // A config file must come first; the flags after it override what it says.
    ...(conf ? [conf] : []),
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    dir,
    "--daemonize",
    "no",
    "--logfile",
    "",
    ...extraArgs,
  ];
  const proc = spawn(bin, args, { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
  // Ready = our own process says so AND the port answers: a PONG alone could come from another
  // server that already held the port (ours then exits with "Address already in use").
  let announcedReady = false;
  const record = (chunk: Buffer) => {
    for (const line of chunk.toString().split("\n")) {
      if (!line) continue;
      lines.push(line);
      if (readyLine.test(line)) announcedReady = true;
    }
    lines.splice(0, Math.max(0, lines.length - LOG_LINES));
  };
  // Always drain the pipes: a full pipe would block the server.
  proc.stdout?.on("data", record);
  proc.stderr?.on("data", record);
  proc.unref();
  (proc.stdout as unknown as net.Socket | null)?.unref?.();
  (proc.stderr as unknown as net.Socket | null)?.unref?.();

  let exit: { code: number | null; signal: string | null } | undefined;
  let spawnError: Error | undefined;
  proc.once("exit", (code, signal) => {
    exit = { code, signal };
  });
  proc.once("error", (err) => {
    spawnError = err;
  });

  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (spawnError) throw new Error(`cannot run ${bin}: ${spawnError.message}`);
    if (exit) {
      const log = lines.slice(-10).join("\n");
      if (/address already in use/i.test(log)) throw new PortInUseError(`port ${port} in use`);
      throw new Error(`redis-server exited (${exit.code ?? exit.signal}) on port ${port}:\n${log}`);
    }
    if (announcedReady && (await ping(port)) && !exit) return proc;
    await delay(25);
  }
  proc.kill("SIGKILL");
  throw new Error(`redis-server did not answer PING on port ${port} within ${timeoutMs} ms`);
}

/**
 * A detached shell that SIGKILLs the server and removes its dir once this process is gone. It exits
 * by itself when the server does; stopProcess() kills it first.
 */
function startWatchdog(server: ChildProcess, dir: string): ChildProcess | undefined {
  if (server.pid === undefined) return undefined;
  const script = [
    `while kill -0 ${server.pid} 2>/dev/null; do`,
    `  if ! kill -0 ${process.pid} 2>/dev/null; then kill -9 ${server.pid}; rm -rf '${dir}'; exit 0; fi`,
    "  sleep 1",
    "done",
  ].join("\n");
  const proc = spawn("/bin/sh", ["-c", script], { stdio: "ignore", detached: true });
  proc.on("error", () => {}); // No /bin/sh: the exit handler still covers normal exits.
  proc.unref();
  return proc;
}

/** A port that was free a moment ago (bind port 0, read it, close). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** True when a Redis on the port answers +PONG (raw RESP: no client library, no reconnect loop). */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    let reply = "";
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once("error", () => done(false));
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.on("data", (chunk) => {
      reply += chunk.toString();
      // "-LOADING …" while a dataset loads: not ready yet.
      if (reply.includes("\r\n")) done(reply.startsWith("+PONG"));
    });
  });
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
