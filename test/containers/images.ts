/**
 * The images the container test needs, made without a registry (none is reachable from CI):
 *
 * - a Debian bookworm base from the host's apt sources (mmdebstrap),
 * - a Node image from the host's own node binary and npm, standing in for node:20-alpine (the
 *   Dockerfile's NODE_IMAGE build argument; nothing else of the Dockerfile is overridden),
 * - Debian stand-ins for the compose file's redis:7-alpine and nginx:stable-alpine that behave as
 *   the compose file expects of them (redis-cli, protected mode off as in the official
 *   entrypoint; nginx with /var/cache/nginx/ and SIGQUIT as stop signal).
 *
 * These are cached in podman's storage between runs, keyed by what they are made of (the node
 * version, the recipe's hash); only the project image is built every time.
 */
import { createHash } from "node:crypto";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { imageExists, must, run } from "./podman.js";

const REPO = "localhost/weigot-ws-ci";
/** The CA bundle the host trusts: a build behind a TLS-inspecting proxy needs it for npm ci. */
const HOST_CA = "/etc/ssl/certs/ca-certificates.crt";

/**
 * Every build: no intermediate images left behind, and the host's network (from the bridge
 * network, netavark's NAT to this host's resolver fails: npm ci and apt-get would hang).
 */
const BUILD = ["--layers=false", "--network", "host"];

/** One line per step: how long each image took (cold) or that it was cached. */
export const timings: string[] = [];

async function timed<T>(what: string, f: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  const out = await f();
  timings.push(`${what}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return out;
}

function tag(name: string, recipe: string): string {
  return `${REPO}/${name}:${createHash("sha256").update(recipe).digest("hex").slice(0, 12)}`;
}

/** Builds `containerfile` (with `files` beside it) as `ref` unless it is already stored. */
async function buildOnce(
  name: string,
  ref: string,
  containerfile: string,
  files: Record<string, string> = {},
): Promise<string> {
  if (await imageExists(ref)) {
    timings.push(`${name}: cached (${ref})`);
    return ref;
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), `weigot-ws-${name}-`));
  try {
    writeFileSync(path.join(dir, "Containerfile"), containerfile);
    for (const [to, from] of Object.entries(files))
      cpSync(from, path.join(dir, to), { recursive: true });
    await timed(name, () => must(["build", ...BUILD, "-t", ref, "-f", "Containerfile", dir]));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return ref;
}

const BASE_RECIPE = "mmdebstrap --variant=minbase --include=ca-certificates bookworm";

export async function baseImage(): Promise<string> {
  const ref = tag("bookworm", BASE_RECIPE);
  if (await imageExists(ref)) {
    timings.push(`base: cached (${ref})`);
    return ref;
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), "weigot-ws-base-"));
  try {
    const tar = path.join(dir, "base.tar");
    await timed("base (mmdebstrap)", async () => {
      const r = await run("mmdebstrap", [...BASE_RECIPE.split(" ").slice(1), tar]);
      if (r.code !== 0) throw new Error(`mmdebstrap exited ${r.code}: ${r.stderr}`);
      await must(["import", "--change", 'CMD ["/bin/bash"]', tar, ref]);
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return ref;
}

/**
 * node:20-alpine stand-in: the host's node and npm on the base, a `node` user with uid 1000 as in
 * the official image, and the host's CA bundle for npm (NODE_EXTRA_CA_CERTS). The bundle is a
 * property of this CI stand-in only: an image built FROM the official node image has none.
 */
export async function nodeImage(base: string): Promise<string> {
  const nodeBin = process.execPath;
  const npmDir = path.resolve(path.dirname(nodeBin), "../lib/node_modules/npm");
  const containerfile = `FROM ${base}
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
COPY ca.crt /usr/local/share/weigot-ws-ci/ca.crt
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \\
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \\
 && echo 'node:x:1000:1000::/home/node:/bin/sh' >> /etc/passwd \\
 && echo 'node:x:1000:' >> /etc/group \\
 && mkdir -p /home/node && chown 1000:1000 /home/node
ENV NODE_EXTRA_CA_CERTS=/usr/local/share/weigot-ws-ci/ca.crt
CMD ["node"]
`;
  const ca = readFileSync(HOST_CA);
  const ref = tag(`node-${process.version.slice(1)}`, containerfile + ca.toString("base64"));
  return buildOnce("node image", ref, containerfile, {
    node: nodeBin,
    npm: npmDir,
    "ca.crt": HOST_CA,
  });
}

/** Stand-ins for the compose file's public images, by the name the compose file uses. */
export async function standIns(base: string): Promise<Record<string, string>> {
  const redis = `FROM ${base}
RUN apt-get update && apt-get install -y --no-install-recommends redis-server \\
 && rm -rf /var/lib/apt/lists/* \\
 && printf '#!/bin/sh\\n# As the official image: protected mode off (no password, reached over the network).\\nif [ "$1" = redis-server ]; then shift; set -- redis-server --protected-mode no "$@"; fi\\nexec "$@"\\n' > /usr/local/bin/docker-entrypoint.sh \\
 && chmod +x /usr/local/bin/docker-entrypoint.sh
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["redis-server"]
`;
  const nginx = `FROM ${base}
RUN apt-get update && apt-get install -y --no-install-recommends nginx \\
 && rm -rf /var/lib/apt/lists/* && mkdir -p /var/cache/nginx
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
`;
  return {
    "redis:7-alpine": await buildOnce("redis stand-in", tag("redis-standin", redis), redis),
    "nginx:stable-alpine": await buildOnce("nginx stand-in", tag("nginx-standin", nginx), nginx),
  };
}

/** docker/Dockerfile of `root`, built with only NODE_IMAGE overridden. */
export async function projectImage(root: string, node: string, ref: string): Promise<string> {
  await timed("project image (docker/Dockerfile)", () =>
    must([
      "build",
      ...BUILD,
      // The OCI image format has no HEALTHCHECK: podman would drop it.
      "--format",
      "docker",
      "--build-arg",
      `NODE_IMAGE=${node}`,
      "-f",
      path.join(root, "docker", "Dockerfile"),
      "-t",
      ref,
      root,
    ]),
  );
  return ref;
}
