import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, describe, it } from "node:test";
import { CLI, tempDir, waitUntil } from "./support/service.js";

/**
 * In a container the primary is pid 1, and a restarted container keeps its /tmp: the PID file
 * then names pid 1, which is alive — it is us. `start` must take that file as stale. A new PID
 * namespace (unshare, as root: how CI runs) reproduces it.
 */
describe("start as pid 1 with a PID file naming pid 1 (a restarted container)", () => {
  const dir = tempDir();
  let child: ChildProcess | undefined;
  after(async () => {
    if (child?.pid && child.exitCode === null) {
      const exited = new Promise((resolve) => child?.once("exit", resolve));
      // unshare waits for its child (the service, pid 1 inside): stop that one, gracefully.
      const inner = execFileSync("pgrep", ["-P", String(child.pid)], { encoding: "utf8" }).trim();
      for (const pid of inner.split("\n").filter(Boolean)) process.kill(Number(pid), "SIGTERM");
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it("starts instead of refusing as already running", async () => {
    const pidFile = path.join(dir, "weigot-ws.pid");
    writeFileSync(pidFile, "1\n");
    const args = [
      "-fp",
      "--mount-proc",
      "--kill-child=SIGTERM",
      process.execPath,
      CLI,
      "start",
      "--port",
      "0",
    ];
    args.push(
      "--host",
      "127.0.0.1",
      "--workers",
      "1",
      "--pid-file",
      pidFile,
      "--log-format",
      "json",
    );
    child = spawn("unshare", args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout?.on("data", (d) => {
      out += d;
    });
    child.stderr?.on("data", (d) => {
      out += d;
    });
    const ready = await waitUntil(
      () => out.split("\n").find((l) => l.includes('"message":"ready"')),
      `the service to be ready as pid 1 (output: ${out})`,
      20_000,
    );
    const entry = JSON.parse(ready) as { pid: number; port: number };
    assert.equal(entry.pid, 1);
    const res = await fetch(`http://127.0.0.1:${entry.port}/readyz`);
    assert.equal(res.status, 200);
  });
});
