/**
 * The image from docker/Dockerfile and the topology of docker/docker-compose.yml (Redis, two
 * nodes, nginx with deploy/nginx.conf), built and run in podman as a user would run them with
 * Docker. Slow (minutes, most of it the image build): run by `.ci/run` after `npm test`, not part
 * of it. Needs root and podman, runc, mmdebstrap (.ci/run installs them).
 *
 * Inside the containers nginx sees every test client as the same address (the bridge's gateway),
 * so `hash $remote_addr` puts them all on one node: one client goes through nginx, and the other
 * connects straight to the other node's port (published for the test) to make the chat cross.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { Envelope } from "../../src/chat/protocol.js";
import { ChatClient } from "../support/chat-client.js";
import { ROOT, waitUntil } from "../support/service.js";
import { composeServices, type Service } from "./compose.js";
import { baseImage, nodeImage, projectImage, standIns, timings } from "./images.js";
import { imageIds, must, podman } from "./podman.js";

/** The build context: the repository, or (WEIGOT_WS_CONTAINER_CONTEXT) e.g. a `git archive` of it. */
const CONTEXT = process.env.WEIGOT_WS_CONTAINER_CONTEXT ?? ROOT;
const RUN = `weigot-ws-ci-${process.pid}`;
const NETWORK = RUN;
const IMAGE = `localhost/weigot-ws-ci/weigot-ws:${RUN}`;
const name = (service: string) => `${RUN}-${service}`;

let services: Service[] = [];
let imagesBefore = new Set<string>();
const clients: ChatClient[] = [];
/** The node bob connects to directly (set by the crossing test). */
let bobsNode: Service | undefined;
const t0 = Date.now();
const mark = (what: string) =>
  timings.push(`${what}: at ${((Date.now() - t0) / 1000).toFixed(1)} s`);

async function health(container: string): Promise<boolean> {
  return (await podman(["healthcheck", "run", container])).code === 0;
}

/**
 * Podman runs healthchecks from systemd timers, and no systemd runs here: run them ourselves.
 * On a timeout the error carries the container's logs and its last healthcheck output.
 */
async function waitHealthy(container: string, timeoutMs = 60_000): Promise<void> {
  try {
    await waitUntil(() => health(container), `${container} healthy`, timeoutMs, 500);
  } catch (err) {
    const check = await podman(["healthcheck", "run", container]);
    const logs = await podman(["logs", "--tail", "30", container]);
    throw new Error(
      `${String(err)}\nhealthcheck: ${check.stdout}${check.stderr}\nlogs:\n${logs.stdout}${logs.stderr}`,
    );
  }
}

async function state(container: string): Promise<{ running: boolean; exitCode: number }> {
  const out = await must([
    "inspect",
    "--format",
    "{{.State.Running}} {{.State.ExitCode}}",
    container,
  ]);
  const [running, exitCode] = out.trim().split(" ");
  return { running: running === "true", exitCode: Number(exitCode) };
}

/** `http://127.0.0.1:<host port>` of a container's published port. */
async function url(service: string, port: number): Promise<string> {
  const out = await must(["port", name(service), String(port)]);
  return `http://${out.trim().split("\n")[0]}`;
}

async function nodeStatus(service: string): Promise<{ connections: number; nodeId: string }> {
  return JSON.parse(
    await must(["exec", name(service), "node", "dist/cli/index.js", "status", "--json"]),
  );
}

const nodes = () => services.filter((s) => !s.image);
const isText = (text: string) => (e: Envelope) =>
  e.action === 300 && e.data.content.message === text;

before(async () => {
  imagesBefore = await imageIds();
  const base = await baseImage();
  const node = await nodeImage(base);
  const stand = await standIns(base);
  await projectImage(CONTEXT, node, IMAGE);
  mark("images ready");

  services = composeServices(path.join(ROOT, "docker", "docker-compose.yml"));
  await must(["network", "create", NETWORK]);
  // depends_on (condition: service_healthy) in order: a service starts once those it waits for
  // are healthy.
  const started = new Set<string>();
  while (started.size < services.length) {
    const ready = services.filter(
      (s) => !started.has(s.name) && s.dependsOn.every((d) => started.has(d)),
    );
    assert.ok(ready.length > 0, "depends_on has a cycle");
    for (const s of ready) {
      const image = s.image ? stand[s.image] : IMAGE;
      assert.ok(image, `no stand-in for ${s.image}`);
      await must([
        "run",
        "--detach",
        "--name",
        name(s.name),
        "--network",
        NETWORK,
        ...s.runArgs,
        image,
        ...s.command,
      ]);
    }
    await Promise.all(
      ready.map((s) =>
        s.healthcheck
          ? waitHealthy(name(s.name))
          : waitUntil(async () => (await state(name(s.name))).running, `${s.name} running`),
      ),
    );
    for (const s of ready) started.add(s.name);
  }
  mark("stack healthy");
});

after(async () => {
  for (const c of clients) c.close();
  const all = await podman(["ps", "--all", "--quiet", "--filter", `name=^${RUN}`]);
  for (const id of all.stdout.split("\n").filter(Boolean)) {
    await podman(["rm", "--force", "--time", "0", id]);
  }
  await podman(["network", "rm", "--force", NETWORK]);
  await podman(["rmi", "--force", IMAGE]);
  // Whatever else this run left (the build stage): not the cached base images, which existed
  // before or are tagged under localhost/weigot-ws-ci/.
  const keep = new Set(
    (
      await must([
        "images",
        "--quiet",
        "--no-trunc",
        "--filter",
        "reference=localhost/weigot-ws-ci/*",
      ])
    )
      .split("\n")
      .filter(Boolean),
  );
  for (const id of await imageIds()) {
    if (!imagesBefore.has(id) && !keep.has(id)) await podman(["rmi", "--force", id]);
  }
  mark("cleaned up");
  console.log(`container test timings:\n  ${timings.join("\n  ")}`);
});

describe("docker/Dockerfile and docker/docker-compose.yml in podman", {
  timeout: 20 * 60_000,
}, () => {
  it("the image runs as a non-root user", async () => {
    for (const s of nodes()) {
      const uid = (await must(["exec", name(s.name), "id", "-u"])).trim();
      assert.notEqual(uid, "0", `${s.name} runs as root`);
    }
  });

  it("the image alone: its own HEALTHCHECK turns healthy, also with a read-only root", async () => {
    const solo = name("solo");
    // As deploy/k8s runs it: read-only root, /tmp in memory, no capabilities, no setuid.
    await must([
      "run",
      "--detach",
      "--name",
      solo,
      "--network",
      NETWORK,
      "--publish",
      "127.0.0.1::9601",
      "--read-only",
      "--tmpfs",
      "/tmp",
      "--cap-drop",
      "ALL",
      "--security-opt",
      "no-new-privileges",
      IMAGE,
    ]);
    const hc = await must(["inspect", "--format", "{{json .Config.Healthcheck}}", solo]);
    assert.match(hc, /readyz/, "the image carries its HEALTHCHECK");
    await waitHealthy(solo);
    const res = await fetch(`${await url("solo", 9601)}/readyz`);
    assert.equal(res.status, 200);
    await must(["rm", "--force", "--time", "0", solo]);
  });

  it("a chat crosses the two nodes through nginx", async () => {
    const viaNginx = await url("nginx", 8080);
    await waitUntil(
      () => fetch(`${viaNginx}/healthz`).then((r) => r.status === 200),
      "/healthz through nginx",
    );
    const a = await ChatClient.connect(viaNginx, { username: "alice", room: "crossing" });
    clients.push(a);
    // Which node did nginx pick? The one counting a connection.
    const [n1, n2] = nodes();
    const counts = await waitUntil(async () => {
      const c = await Promise.all([n1, n2].map((n) => nodeStatus(n.name)));
      return c[0].connections + c[1].connections === 1 ? c : undefined;
    }, "alice counted on one node");
    const other = counts[0].connections === 1 ? n2 : n1;
    bobsNode = other;
    const b = await ChatClient.connect(await url(other.name, 9601), {
      username: "bob",
      room: "crossing",
    });
    clients.push(b);
    const otherStatus = await nodeStatus(other.name);
    assert.equal(otherStatus.connections, 1, "bob is on the other node");

    a.send({ type: "text", content: { message: "hi bob" } });
    await b.waitFor(isText("hi bob"), "alice's message on bob's node", 10_000);
    b.send({ type: "text", content: { message: "hi alice" } });
    await a.waitFor(isText("hi alice"), "bob's message on alice's node", 10_000);
  });

  it("podman stop (SIGTERM) drains within the stop timeout: exit 0, clients told (100)", async () => {
    // bob is the client connected straight to a node: stop that node.
    const bob = clients[1];
    assert.ok(bob?.connected, "the crossing test left bob connected");
    const target = bobsNode as Service;
    const from = bob.mark();
    const started = Date.now();
    await must(["stop", "--time", String(target.stopGraceS), name(target.name)]);
    const tookS = (Date.now() - started) / 1000;
    timings.push(`podman stop ${target.name}: ${tookS.toFixed(1)} s`);
    const { running, exitCode } = await state(name(target.name));
    assert.equal(running, false);
    assert.equal(exitCode, 0, "a graceful exit, not SIGKILL (137) after the stop timeout");
    assert.ok(tookS < target.stopGraceS, `stop took ${tookS} s >= ${target.stopGraceS} s`);
    await bob.waitFor((e) => e.action === 100, "the drain notice (100)", 1000, from);
    await bob.waitDisconnect("bob's disconnect", 1000);
  });

  it("a container killed and started again comes back (its PID file names pid 1)", async () => {
    const target = nodes()[0];
    const c = name(target.name);
    if (!(await state(c)).running) await must(["start", c]);
    await waitHealthy(c);
    await must(["kill", "--signal", "KILL", c]);
    await waitUntil(async () => !(await state(c)).running, `${c} killed`);
    const root = (await must(["mount", c])).trim();
    const pidFile = readFileSync(path.join(root, "tmp", "weigot-ws.pid"), "utf8").trim();
    await must(["unmount", c]);
    assert.equal(pidFile, "1", "the killed primary (pid 1) left its PID file");
    // The restart policy (unless-stopped) may have started it already; start it if not.
    if (!(await state(c)).running) await podman(["start", c]);
    await waitHealthy(c);
    const res = await fetch(`${await url(target.name, 9601)}/readyz`);
    assert.equal(res.status, 200);
    const logs = await must(["logs", c]);
    assert.doesNotMatch(logs, /already running/);
  });
});
