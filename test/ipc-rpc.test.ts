/**
 * IpcRpc over a real forked child's IPC channel: calls of two services made at once each get
 * their own service's answer (both number their calls from 1; a reply once went to the other
 * service's call of the same number, which silently dropped chat messages under load).
 */
import assert from "node:assert/strict";
import { fork } from "node:child_process";
import path from "node:path";
import { it } from "node:test";
import { fileURLToPath } from "node:url";
import type { WorkerToPrimary } from "../src/cluster/ipc-messages.js";
import { serveRpc } from "../src/cluster/ipc-rpc.js";

const here = path.dirname(fileURLToPath(import.meta.url));

it("answers every service's calls with that service's replies", async () => {
  const child = fork(path.join(here, "fixtures/rpc-child.ts"), {
    execArgv: ["--import", "tsx"],
    serialization: "advanced",
  });
  // Service a answers late, b at once: replies arrive interleaved, with equal ids.
  const services = {
    a: {
      target: { echo: (s: string) => new Promise((r) => setTimeout(() => r(`${s}!`), 5)) },
      methods: new Set(["echo"]),
    },
    b: { target: { echo: async (s: string) => `${s}!` }, methods: new Set(["echo"]) },
  };
  const results = await new Promise<[string, string][]>((resolve, reject) => {
    child.on("message", (msg: WorkerToPrimary | { type: "done"; results: [string, string][] }) => {
      if (msg.type === "done") resolve(msg.results);
      else if (msg.type === "wws:rpc-call") serveRpc(services, msg, (reply) => child.send(reply));
    });
    child.on("exit", (code) => reject(new Error(`child exited ${code}`)));
  });
  child.kill();
  assert.deepEqual(
    results,
    Array.from({ length: 50 }, (_, i) => [`a${i}!`, `b${i}!`]),
  );
});
