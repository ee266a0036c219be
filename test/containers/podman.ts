/**
 * podman as these tests use it: root, runc (crun cannot run in a hybrid cgroup), ulimits the
 * runtime may set without CAP_SYS_RESOURCE, all through a containers.conf named by
 * CONTAINERS_CONF so the machine's own podman set-up is left alone.
 */
import { spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

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
    "",
  ].join("\n"),
);

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `podman ...args`; never throws (see must()). */
export function podman(args: readonly string[], opts: { input?: string } = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn("podman", args, {
      env: { ...process.env, CONTAINERS_CONF: CONF },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    child.on("error", (err) => resolve({ code: -1, stdout, stderr: String(err) }));
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(opts.input ?? "");
  });
}

/** Runs `podman ...args` and returns its stdout; throws with its output when it fails. */
export async function must(
  args: readonly string[],
  opts: { input?: string } = {},
): Promise<string> {
  const r = await podman(args, opts);
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

/** Runs a command and resolves with its output; for tools other than podman. */
export function run(cmd: string, args: readonly string[], cwd?: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    child.on("error", (err) => resolve({ code: -1, stdout, stderr: String(err) }));
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}
