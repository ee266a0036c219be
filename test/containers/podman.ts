/**
 * podman as these tests use it: root, runc (crun cannot run in a hybrid cgroup), ulimits the
 * runtime may set without CAP_SYS_RESOURCE, netavark (container DNS), all through a containers.conf named by
 * CONTAINERS_CONF so the machine's own podman set-up is left alone.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { type CommandResult, runCommand } from "../support/run-command.js";

const CONF_DIR = path.join(os.tmpdir(), "weigot-ws-containers");
const CONF = path.join(CONF_DIR, "containers.conf");
mkdirSync(CONF_DIR, { recursive: true });
writeFileSync(
  CONF,
  [
    "[containers]",
    'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]',
    "[engine]",
    'runtime = "runc"',
    // netavark + aardvark-dns: service names resolve on the network (CNI needs a dnsname plugin).
    "[network]",
    'network_backend = "netavark"',
    "",
  ].join("\n"),
);

export type Run = CommandResult;

/** Runs `podman ...args`; never throws (see must()). */
export function podman(args: readonly string[]): Promise<Run> {
  return runCommand("podman", args, { env: { ...process.env, CONTAINERS_CONF: CONF } });
}

/** Runs `podman ...args` and returns its stdout; throws with its output when it fails. */
export async function must(args: readonly string[]): Promise<string> {
  const r = await podman(args);
  if (r.code !== 0) {
    throw new Error(`podman ${args.join(" ")} exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
  }
  return r.stdout;
}

export async function imageExists(ref: string): Promise<boolean> {
  return (await podman(["image", "exists", ref])).code === 0;
}

/** Every image id in local storage (intermediate ones too). */
export async function imageIds(): Promise<Set<string>> {
  const out = await must(["images", "--all", "--quiet", "--no-trunc"]);
  return new Set(out.split("\n").filter(Boolean));
}

export { runCommand as run };
