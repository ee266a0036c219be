/**
 * Runs the real nginx with deploy/nginx.conf in front of test servers.
 *
 * Only the substitutions documented at the top of deploy/nginx.conf are made: the `listen 8080;`
 * line and the `server weigot-ws-N:9601 ...;` lines of the upstream. Everything else (timeouts,
 * headers, hashing) is the file as shipped. nginx runs in the foreground (`-g "daemon off;"`)
 * with a temporary prefix directory (-p) holding the rendered nginx.conf, its pid file and its
 * temp directories; errors go to stderr and the access log to stdout, both kept for output().
 * Needs no root: the port is above 1024 and the file has no `user` directive.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** deploy/nginx.conf of this repository. */
export const NGINX_CONF = fileURLToPath(new URL("../../deploy/nginx.conf", import.meta.url));

/** The nginx binary: $NGINX_BIN, else the Debian package's /usr/sbin/nginx, else `nginx` on PATH. */
export const NGINX_BIN =
  process.env.NGINX_BIN ?? (existsSync("/usr/sbin/nginx") ? "/usr/sbin/nginx" : "nginx");

export interface NginxOptions {
  /** The nodes behind nginx, one `server` line each: a port (on 127.0.0.1) or `"host:port"`. */
  upstreams: readonly (number | string)[];
  /** Port to listen on, on 127.0.0.1. @default a free port */
  port?: number;
  /** The nginx.conf to render. @default deploy/nginx.conf */
  confFile?: string;
  /** How long to wait for nginx to answer, in ms. @default 10_000 */
  timeoutMs?: number;
}

export interface NginxHandle {
  /** `http://127.0.0.1:<port>` */
  url: string;
  port: number;
  /** The prefix directory (-p); holds the rendered nginx.conf. Removed by stop(). */
  prefix: string;
  /** The rendered configuration. */
  conf: string;
  /** What nginx wrote so far (error log on stderr, access log on stdout). */
  output(): string;
  /** Fast shutdown (SIGTERM, SIGKILL after 5 s), then removes the prefix. Idempotent. */
  stop(): Promise<void>;
}

/** The substitutions documented at the top of deploy/nginx.conf, and nothing else. */
export function renderNginxConf(
  source: string,
  opts: { listen: string; upstreams: readonly (number | string)[] },
): string {
  if (opts.upstreams.length === 0) throw new TypeError("renderNginxConf: no upstreams");
  const listen = /^([ \t]*)listen[ \t]+8080[ \t]*;/gm;
  const listens = source.match(listen) ?? [];
  if (listens.length !== 1) {
    throw new Error(
      `nginx.conf: expected exactly one "listen 8080;" line, found ${listens.length}`,
    );
  }
  let out = source.replace(listen, `$1listen ${opts.listen};`);

  const server = /^([ \t]*)server[ \t]+weigot-ws-\d+:\d+([^;\n]*);[ \t]*\n/gm;
  const found = [...out.matchAll(server)];
  if (found.length === 0) {
    throw new Error('nginx.conf: no "server weigot-ws-N:9601 ...;" lines in the upstream block');
  }
  const [, indent, params] = found[0];
  const lines = opts.upstreams
    .map((u) => `${indent}server ${typeof u === "number" ? `127.0.0.1:${u}` : u}${params};\n`)
    .join("");
  let first = true;
  out = out.replace(server, () => {
    if (!first) return "";
    first = false;
    return lines;
  });
  return out;
}

/** A port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

function nginxArgs(prefix: string): string[] {
  return ["-p", `${prefix}/`, "-c", path.join(prefix, "nginx.conf"), "-e", "stderr"];
}

async function makePrefix(conf: string): Promise<string> {
  const prefix = await mkdtemp(path.join(os.tmpdir(), "weigot-nginx-"));
  // Run as root, nginx's workers switch to an unprivileged user; they must reach the temp dirs.
  await chmod(prefix, 0o755);
  await writeFile(path.join(prefix, "nginx.conf"), conf);
  return prefix;
}

/**
 * nginx opens `/dev/stdout` (the access log) by path, and that fails with ENXIO when stdout is a
 * socket, which is what Node's `stdio: "pipe"` gives a child. So its stdout is a regular file in
 * the prefix; stderr (the error log, written to fd 2 directly) may be a pipe.
 */
function stdoutFile(prefix: string, name: string): { file: string; fd: number } {
  const file = path.join(prefix, name);
  return { file, fd: openSync(file, "a") };
}

/** Runs `nginx -t` on a rendered configuration in `prefix`; rejects with nginx's output. */
export async function nginxTest(prefix: string): Promise<string> {
  const out = stdoutFile(prefix, "nginx-t.log");
  const child = spawn(NGINX_BIN, ["-t", ...nginxArgs(prefix), "-g", "daemon off;"], {
    stdio: ["ignore", out.fd, out.fd],
  });
  closeSync(out.fd);
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  const code = await new Promise<number | string>((resolve) => {
    child.once("error", (err) => resolve(err.message));
    child.once("exit", (c, signal) => resolve(c ?? signal ?? "?"));
  });
  clearTimeout(timer);
  const output = await readFile(out.file, "utf8");
  if (code !== 0) throw new Error(`nginx -t failed (${code}):\n${output}`);
  return output;
}

/**
 * Renders `confFile` (deploy/nginx.conf) for these upstreams and a free port and runs `nginx -t`
 * on it in a temporary prefix, which is removed afterwards. Resolves with nginx's output.
 */
export async function checkNginxConf(
  opts: NginxOptions,
): Promise<{ conf: string; output: string }> {
  const source = await readFile(opts.confFile ?? NGINX_CONF, "utf8");
  const port = opts.port ?? (await freePort());
  const conf = renderNginxConf(source, { listen: `127.0.0.1:${port}`, upstreams: opts.upstreams });
  const prefix = await makePrefix(conf);
  try {
    return { conf, output: await nginxTest(prefix) };
  } finally {
    await rm(prefix, { recursive: true, force: true });
  }
}

/** nginx answers a request without a Host header itself (400), whatever the upstreams do. */
function probe(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    let data = "";
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once("error", () => done(false));
    socket.on("data", (chunk) => {
      data += chunk.toString("latin1");
      if (data.includes("\r\n")) done(data.startsWith("HTTP/1."));
    });
    socket.once("connect", () => socket.write("GET / HTTP/1.1\r\n\r\n"));
  });
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

async function startOnce(
  source: string,
  opts: NginxOptions,
  port: number,
): Promise<NginxHandle | "port-taken"> {
  const conf = renderNginxConf(source, { listen: `127.0.0.1:${port}`, upstreams: opts.upstreams });
  const prefix = await makePrefix(conf);
  try {
    await nginxTest(prefix);
  } catch (err) {
    await rm(prefix, { recursive: true, force: true });
    throw err;
  }

  const access = stdoutFile(prefix, "stdout.log");
  const child = spawn(NGINX_BIN, [...nginxArgs(prefix), "-g", "daemon off;"], {
    stdio: ["ignore", access.fd, "pipe"],
  });
  closeSync(access.fd);
  let errors = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    errors = (errors + chunk.toString()).slice(-64_000);
  });
  let accessLog = "";
  const output = () => {
    if (existsSync(access.file)) accessLog = readFileSync(access.file, "utf8").slice(-64_000);
    return `${errors}${accessLog}`;
  };
  let spawnError: Error | undefined;
  child.once("error", (err) => {
    spawnError = err;
  });
  const running = () =>
    !spawnError && child.pid !== undefined && child.exitCode === null && child.signalCode === null;
  // Do not leave nginx running if the test process exits without calling stop().
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      process.removeListener("exit", killOnExit);
      if (running()) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
        await exited(child);
        clearTimeout(timer);
      }
      output();
      await rm(prefix, { recursive: true, force: true });
    })();
    return stopping;
  };

  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  for (;;) {
    if (!running()) {
      await stop();
      if (/Address already in use/.test(errors) && opts.port === undefined) return "port-taken";
      throw new Error(`nginx exited before answering: ${spawnError?.message ?? ""}\n${output()}`);
    }
    if (await probe(port)) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`nginx did not answer on port ${port} in time:\n${output()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { url: `http://127.0.0.1:${port}`, port, prefix, conf, output, stop };
}

/**
 * Starts nginx with deploy/nginx.conf (or `confFile`) in front of `upstreams`, after checking
 * the rendered file with `nginx -t`; resolves once nginx answers HTTP on 127.0.0.1.
 */
export async function startNginx(opts: NginxOptions): Promise<NginxHandle> {
  const source = await readFile(opts.confFile ?? NGINX_CONF, "utf8");
  for (let attempt = 0; ; attempt++) {
    const port = opts.port ?? (await freePort());
    const started = await startOnce(source, opts, port);
    if (started !== "port-taken") return started;
    if (attempt >= 4) throw new Error("nginx: no free port after 5 attempts");
  }
}
