/**
 * The benchmark harness end to end, in its quick mode: `bench/run.ts --quick` for the
 * connections and fanout scenarios starts weigot-ws (built CLI) and the baseline, drives them,
 * stops them, prints the comparison table and writes the JSON (+ SVG) results.
 * Needs `npm run build` first (the test script's pretest does it).
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const SYSTEMS = ["weigot-ws", "baseline"] as const;

interface ResultFile {
  scenario: string;
  quick: boolean;
  runs: { system: string; status: string; error?: string; details?: unknown }[];
  metrics: { key: string; label: string; values: Record<string, unknown> }[];
  errors: string[];
  series: { system: string; points: [number, number][] }[];
}

function runBench(
  args: string[],
  timeoutMs: number,
): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", "bench/run.ts", ...args], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    child.stderr.on("data", (d) => {
      err += d;
    });
    const timer = setTimeout(() => {
      child.kill("SIGINT");
      reject(new Error(`bench did not finish in ${timeoutMs} ms\n${out}\n${err}`));
    }, timeoutMs);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, out: `${out}\n--- stderr ---\n${err}` });
    });
  });
}

describe("bench --quick (connections, fanout)", () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "weigot-bench-smoke-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("measures both systems, prints the table and writes results without errors", async () => {
    // A lenient p99 limit: this checks the harness and both systems work, not their speed (other
    // tests may share the CPUs).
    const { code, out } = await runBench(
      ["--quick", "--scenario", "connections,fanout", "--max-p99", "1000", "--out-dir", dir],
      // ≈ 70 s on an idle machine, 130 s while other suites share the 2 cores
      240_000,
    );
    assert.equal(code, 0, out);
    for (const header of [
      "| figure | weigot-ws | baseline | ratio |",
      "### connections",
      "### fanout",
    ]) {
      assert.ok(out.includes(header), `missing ${JSON.stringify(header)} in:\n${out}`);
    }

    const files = readdirSync(dir);
    for (const scenario of ["connections", "fanout"]) {
      const json = files.find((f) => f.endsWith(`-${scenario}-quick.json`));
      assert.ok(json, `no JSON result for ${scenario} in ${files.join(", ")}`);
      assert.ok(
        files.some((f) => f.endsWith(`-${scenario}-quick.svg`)),
        `no SVG chart for ${scenario}`,
      );
      const r = JSON.parse(readFileSync(path.join(dir, json), "utf8")) as ResultFile;
      assert.equal(r.scenario, scenario);
      assert.equal(r.quick, true);
      assert.deepEqual(r.errors, [], `${scenario}: errors reported`);
      for (const system of SYSTEMS) {
        const run = r.runs.find((x) => x.system === system);
        assert.equal(run?.status, "ok", `${scenario}/${system}: ${run?.error}`);
        assert.ok(
          r.series.some((s) => s.system === system && s.points.length > 0),
          `${scenario}/${system}: no latency distribution`,
        );
      }
      const figure = (key: string, system: string) => {
        const v = r.metrics.find((m) => m.key === key)?.values[system];
        assert.equal(typeof v, "number", `${scenario}/${system}: ${key} = ${JSON.stringify(v)}`);
        return v as number;
      };
      for (const system of SYSTEMS) {
        if (scenario === "connections") {
          assert.ok(figure("held", system) > 0, `${system}: no connection held`);
          assert.ok(figure("hs99", system) > 0);
          assert.ok(figure("rssPerConn", system) > 0);
        } else {
          assert.ok(figure("best", system) > 0, `${system}: no sustained step`);
          assert.ok(figure("p99", system) > 0);
          assert.ok(figure("delivered", system) >= 99.9);
        }
      }
      if (scenario === "connections") {
        assert.equal(figure("failed", "weigot-ws"), 0, "weigot-ws: failed connects");
      }
    }
  });
});

describe("bench --quick apps (10 apps against 1 app)", () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "weigot-bench-apps-smoke-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("reaches every app's namespace and compares it with the default app", async () => {
    // Small (20 receivers per app: 10,000 deliveries/s is 2.5 msg/s per member, below the
    // per-connection limit) and lenient: this checks that the load generator and the checkers
    // talk to /a0 … /a9 (a checker that got no message is an error of the run).
    const { code, out } = await runBench(
      [
        ...["--quick", "--scenario", "apps", "--systems", "weigot-ws,weigot-ws-apps"],
        ...["--receivers", "200", "--step-seconds", "1", "--max-p99", "2000", "--out-dir", dir],
      ],
      // ≈ 40 s on an idle machine
      180_000,
    );
    assert.equal(code, 0, out);
    assert.ok(out.includes("| 10 apps / 1 app |"), `no ratio column in:\n${out}`);
    const json = readdirSync(dir).find((f) => f.endsWith("-apps-quick.json"));
    assert.ok(json, "no JSON result");
    const r = JSON.parse(readFileSync(path.join(dir, json), "utf8")) as ResultFile;
    assert.deepEqual(r.errors, [], "errors reported");
    for (const system of ["weigot-ws", "weigot-ws-apps"]) {
      const run = r.runs.find((x) => x.system === system);
      assert.equal(run?.status, "ok", `${system}: ${run?.error}`);
      const details = run?.details as {
        receiversConnected: number | number[];
        steps: { delivered: number }[];
      };
      const connected = [details.receiversConnected].flat();
      assert.deepEqual(connected, system === "weigot-ws" ? [200] : Array(10).fill(20), system);
      assert.ok(details.steps[0].delivered > 0, `${system}: nothing delivered`);
    }
  });
});
