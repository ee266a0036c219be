/**
 * The deployment files under deploy/, run by the real tools wherever one exists here:
 *
 * - deploy/nginx.conf: `nginx -t`, and the real nginx in front of two stand-in servers;
 * - deploy/supervisor/weigot-ws.conf: Debian's supervisord runs the node (start, a SIGKILLed
 *   primary restarted, a graceful stop);
 * - deploy/systemd/weigot-ws.service: `systemd-analyze verify` (no systemd runs as pid 1 here, so
 *   the unit itself cannot be started), its environment and ExecReload judged by the real CLI;
 * - deploy/k8s: no cluster and no kubectl here: the manifests are parsed with `yaml`, and what the
 *   container runs (command + environment) is judged by the real CLI.
 *
 * docker/Dockerfile and docker/docker-compose.yml are built and run in podman by
 * test/containers/ (minutes; .ci/run runs it after npm test).
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { WebSocket, WebSocketServer } from "ws";
import YAML from "yaml";
import { DEFAULTS } from "../src/config/config.js";
import { processAlive } from "./support/cluster-nodes.js";
import { checkNginxConf, freePort, renderNginxConf, startNginx } from "./support/nginx.js";
import { startRedisServer } from "./support/redis-server.js";
import { runCommand } from "./support/run-command.js";
import { runCliAsync, tempDir, waitUntil } from "./support/service.js";
import { startSupervisor } from "./support/supervisor.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const read = (...p: string[]) => readFileSync(path.join(ROOT, ...p), "utf8");

/** Socket.IO pingInterval + pingTimeout (25 s + 20 s): the longest silence of a live client. */
const PING_SILENCE_S = 45;

/**
 * Runs the real CLI's `status` with what a deployment gives `start` (its flags, its environment)
 * and a pid file where nothing runs: yargs (strict, environment included) and parseConfig judge
 * every flag, variable and value; "not running" (exit 3) means all were accepted.
 */
async function cliAccepts(startArgs: string[], env: Record<string, string>, where: string) {
  const pidFile = path.join(tempDir(), "nothing.pid");
  const r = await runCliAsync(["status", ...startArgs, "--pid-file", pidFile], {
    ...env,
    WEIGOT_WS_PID_FILE: pidFile,
  });
  assert.equal(r.code, 3, `${where}: the CLI refused it: ${r.stderr.trim().split("\n").at(-1)}`);
  assert.match(r.stdout + r.stderr, /not running/);
}

describe("deploy/nginx.conf", () => {
  test("the test substitution changes only the listen line and the upstream servers", () => {
    const source = read("deploy", "nginx.conf");
    const rendered = renderNginxConf(source, { listen: "127.0.0.1:18080", upstreams: [1, 2] });
    const rest = (s: string) =>
      s.split("\n").filter((l) => !/^\s*(listen|server)\s+[^{]*;/.test(l));
    assert.deepEqual(rest(rendered), rest(source));
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

describe("deploy/supervisor/weigot-ws.conf under the real supervisord", {
  timeout: 120_000,
}, () => {
  const cleanup: (() => Promise<void>)[] = [];
  after(async () => {
    for (const f of cleanup.reverse()) await f();
  });

  const readyz = (port: number) =>
    fetch(`http://127.0.0.1:${port}/readyz`).then(
      (r) => r.status === 200,
      () => false,
    );
  const statusOf = async (pidFile: string) => {
    const r = await runCliAsync(["status", "--json", "--pid-file", pidFile]);
    return r.code === 0
      ? (JSON.parse(r.stdout) as { pid: number; workers: { pid: number }[] })
      : undefined;
  };

  test("starts the node, restarts a killed primary, stops it gracefully", async () => {
    const redis = await startRedisServer();
    cleanup.push(() => redis.stop());
    const sup = await startSupervisor({ redisUrl: redis.url, port: await freePort() });
    cleanup.push(() => sup.stop());

    // Started: RUNNING once it stayed up startsecs (5 s), ready on its port.
    await waitUntil(() => readyz(sup.port), "the node ready under supervisord", 30_000, 200);
    await waitUntil(
      async () => /RUNNING/.test((await sup.ctl("status", "weigot-ws")).output),
      "supervisorctl status RUNNING",
      20_000,
      250,
    );
    const first = await waitUntil(() => statusOf(sup.pidFile), "status of the node");
    assert.equal(first.workers.length, 2);

    // A SIGKILLed primary: supervisord starts it again (its PID file is then stale).
    process.kill(first.pid, "SIGKILL");
    const second = await waitUntil(
      async () => {
        const s = await statusOf(sup.pidFile);
        return s && s.pid !== first.pid && (await readyz(sup.port)) ? s : undefined;
      },
      `a new primary after the SIGKILL (supervisord log: ${sup.log()})`,
      30_000,
      250,
    );
    await waitUntil(
      () => first.workers.every((w) => !processAlive(w.pid)),
      "the killed primary's workers gone",
    );

    // Graceful stop: SIGTERM to the primary, done well within stopwaitsecs, every process gone.
    const t0 = Date.now();
    const stop = await sup.ctl("stop", "weigot-ws");
    const tookMs = Date.now() - t0;
    assert.equal(stop.code, 0, stop.output);
    assert.match(stop.output, /stopped/);
    assert.ok(tookMs < 20_000, `stop took ${tookMs} ms (stopwaitsecs 20)`);
    for (const pid of [second.pid, ...second.workers.map((w) => w.pid)]) {
      assert.equal(processAlive(pid), false, `pid ${pid} outlived the stop`);
    }
    assert.match((await sup.ctl("status", "weigot-ws")).output, /STOPPED/);
    // The service's own log (stdout_logfile): a graceful stop, not a SIGKILL.
    assert.match(readFileSync(sup.logFile, "utf8"), /"message":"stopped"/);
    assert.doesNotMatch(sup.log(), /killing 'weigot-ws'.*SIGKILL/);
  });
});

describe("deploy/systemd/weigot-ws.service", () => {
  const unit = path.join(ROOT, "deploy", "systemd", "weigot-ws.service");
  const verify = async (file: string) => {
    const r = await runCommand("systemd-analyze", ["verify", file]);
    assert.notEqual(r.code, -1, `systemd-analyze: ${r.stderr}`);
    // Only complaints about this unit count (the host's own units may be odd).
    return `${r.stdout}${r.stderr}`.split("\n").filter((l) => l.includes(path.basename(file)));
  };

  test("systemd-analyze verify finds nothing (and finds a broken copy)", async () => {
    assert.deepEqual(await verify(unit), []);
    const broken = path.join(tempDir(), "weigot-ws.service");
    writeFileSync(broken, readFileSync(unit, "utf8").replace("KillMode=mixed", "KillMode=bogus"));
    assert.equal((await verify(broken)).length, 1, "the check can fail");
  });

  test("its Environment= lines and ExecReload are accepted by the CLI", async () => {
    // systemd's own quoting is not used by this unit: one KEY=value per Environment= line.
    const lines = read("deploy", "systemd", "weigot-ws.service").split("\n");
    const env = Object.fromEntries(
      lines
        .filter((l) => l.startsWith("Environment="))
        .map((l) => l.slice("Environment=".length).replace("%H", "host-name").split(/=(.*)/s)),
    );
    const exec = (key: string) => {
      const line = lines.find((l) => l.startsWith(`${key}=`)) ?? "";
      return line.slice(key.length + 1).split(" ");
    };
    assert.deepEqual(exec("ExecStart").slice(1), ["/opt/weigot-ws/dist/cli/index.js", "start"]);
    assert.deepEqual(exec("ExecReload").slice(1), ["/opt/weigot-ws/dist/cli/index.js", "reload"]);
    await cliAccepts([], env, "systemd Environment=");
  });
});

describe("deploy/k8s (parsed: no cluster here)", () => {
  const dir = path.join(ROOT, "deploy", "k8s");
  const files = readdirSync(dir).filter((f) => f.endsWith(".yaml"));
  // biome-ignore lint/suspicious/noExplicitAny: manifests are free-form; each use is checked.
  const docs: { file: string; doc: any }[] = files.flatMap((file) =>
    YAML.parseAllDocuments(readFileSync(path.join(dir, file), "utf8")).map((d) => {
      assert.deepEqual(d.errors, [], file);
      return { file, doc: d.toJS() };
    }),
  );
  const one = (kind: string, name: string) => {
    const found = docs.filter((d) => d.doc?.kind === kind && d.doc.metadata?.name === name);
    assert.equal(found.length, 1, `one ${kind} ${name}`);
    return found[0].doc;
  };
  const deployment = one("Deployment", "weigot-ws");
  const pod = deployment.spec.template.spec;
  const container = pod.containers.find((c: { name: string }) => c.name === "weigot-ws");
  const env: Record<string, string> = Object.fromEntries(
    container.env.map((e: { name: string; value?: string }) => [e.name, e.value ?? "from-k8s"]),
  );
  const port = Number(env.WEIGOT_WS_PORT ?? DEFAULTS.port);

  test("kustomization lists every manifest", () => {
    const k = docs.find((d) => d.doc?.kind === "Kustomization");
    assert.ok(k);
    assert.deepEqual([...k.doc.resources].sort(), files.filter((f) => f !== k.file).sort());
  });

  test("the container's command and environment are accepted by the CLI", async () => {
    const argv: string[] = [...(container.command ?? []), ...(container.args ?? [])];
    const at = argv.indexOf("dist/cli/index.js");
    assert.equal(argv[at + 1], "start", "runs `weigot-ws start`");
    await cliAccepts(argv.slice(at + 2), env, "k8s container");
    assert.equal(env.WEIGOT_WS_ADAPTER, "redis");
    const nodeId = container.env.find((e: { name: string }) => e.name === "WEIGOT_WS_NODE_ID");
    assert.deepEqual(nodeId.valueFrom, { fieldRef: { fieldPath: "metadata.name" } });
  });

  test("port, probes, non-root, grace period above preStop + shutdown timeout", () => {
    assert.ok(container.ports.some((p: { containerPort: number }) => p.containerPort === port));
    assert.equal(container.readinessProbe.httpGet.path, "/readyz");
    assert.equal(container.livenessProbe.httpGet.path, "/healthz");
    assert.equal(pod.securityContext.runAsNonRoot, true);
    const preStop = Number(container.lifecycle?.preStop?.exec?.command?.[1] ?? 0);
    const shutdown = Number(env.WEIGOT_WS_SHUTDOWN_TIMEOUT ?? DEFAULTS.shutdownTimeout);
    assert.ok(pod.terminationGracePeriodSeconds > preStop + shutdown);
  });

  test("Service and Ingress reach the pods; the Ingress keeps WebSockets open", () => {
    const service = one("Service", "weigot-ws");
    const labels = deployment.spec.template.metadata.labels;
    for (const [k, v] of Object.entries(service.spec.selector)) assert.equal(labels[k], v);
    const ingress = docs.find((d) => d.doc?.kind === "Ingress")?.doc;
    const a = ingress.metadata.annotations;
    assert.equal(a["nginx.ingress.kubernetes.io/affinity"], "cookie");
    for (const t of ["proxy-read-timeout", "proxy-send-timeout"]) {
      assert.ok(Number(a[`nginx.ingress.kubernetes.io/${t}`]) > PING_SILENCE_S, t);
    }
  });
});
