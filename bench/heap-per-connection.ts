/**
 * Where a connection's memory goes: starts one system with 1 worker (inspector on), takes a heap
 * snapshot of the worker and of the primary idle and again holding N idle connections (rooms of
 * 10, as in `scale`), and prints what grew, per connection, by constructor / closure name.
 *
 *   node --import tsx bench/heap-per-connection.ts [--system weigot-ws|baseline] [--connections 5000]
 *     [--keep dir]   (keeps the .heapsnapshot files, for Chrome DevTools' comparison view)
 */
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { heapSnapshot, memoryAfterGc } from "./lib/inspector.js";
import { Deployment, type SystemName } from "./lib/systems.js";
import { sleep } from "./lib/util.js";
import { AgentPool } from "./loadgen/pool.js";
import { connectAll, waitQuiet } from "./scenarios/common.js";

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

/** Self size and count per kind of heap object ("Socket", "closure onData", "string", …). */
function summarize(file: string): Map<string, { size: number; count: number }> {
  const snap = JSON.parse(readFileSync(file, "utf8")) as Snapshot;
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const width = fields.length;
  const iType = fields.indexOf("type");
  const iName = fields.indexOf("name");
  const iSize = fields.indexOf("self_size");
  const out = new Map<string, { size: number; count: number }>();
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + iType]];
    const name = snap.strings[snap.nodes[i + iName]];
    let key: string;
    if (type === "object" || type === "native") key = name.split(" ")[0].slice(0, 60);
    else if (type === "closure") key = `closure ${name || "(anonymous)"}`;
    else if (type === "hidden" || type === "code" || type === "synthetic")
      key = `(${type}) ${name.slice(0, 40)}`;
    else key = `(${type})`;
    const e = out.get(key) ?? { size: 0, count: 0 };
    e.size += snap.nodes[i + iSize];
    e.count++;
    out.set(key, e);
  }
  return out;
}

function diff(before: string, after: string, n: number, top: number): string {
  const a = summarize(before);
  const b = summarize(after);
  const rows: [string, number, number][] = [];
  let total = 0;
  for (const [k, v] of b) {
    const w = a.get(k) ?? { size: 0, count: 0 };
    const d = v.size - w.size;
    total += d;
    rows.push([k, d, v.count - w.count]);
  }
  for (const [k, w] of a) if (!b.has(k)) rows.push([k, -w.size, -w.count]);
  rows.sort((x, y) => y[1] - x[1]);
  const lines = [
    `| what (constructor / closure) | bytes per connection | objects per connection |`,
    "|---|---:|---:|",
  ];
  for (const [k, d, c] of rows.slice(0, top)) {
    lines.push(`| ${k.replace(/\|/g, "\\|")} | ${(d / n).toFixed(0)} | ${(c / n).toFixed(2)} |`);
  }
  lines.push(`| **total (heap objects)** | **${(total / n).toFixed(0)}** | |`);
  return lines.join("\n");
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      system: { type: "string", default: "weigot-ws" },
      connections: { type: "string", default: "5000" },
      keep: { type: "string" },
      top: { type: "string", default: "30" },
    },
  });
  const system = values.system as SystemName;
  const n = Number(values.connections);
  const dir = values.keep ?? path.join(os.tmpdir(), `heap-per-conn-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  const dep = await Deployment.start(system, {
    adapter: "cluster",
    nodes: 1,
    workers: 1,
    inspect: true,
  });
  const pool = new AgentPool(2);
  try {
    await sleep(2000);
    const urls = dep.nodes[0].inspectors;
    // the primary prints its inspector first, then the worker
    const snap = async (tag: string) => {
      const files: string[] = [];
      for (const [i, url] of urls.entries()) {
        const f = path.join(
          dir,
          `${system}-${i === 0 ? "primary" : `worker${i}`}-${tag}.heapsnapshot`,
        );
        await heapSnapshot(url, f);
        files.push(f);
      }
      return files;
    };
    const mem = async () => Promise.all(urls.map((u) => memoryAfterGc(u)));
    const m0 = await mem();
    const idle = await snap("idle");
    const c = await connectAll(pool, `${system} heap`, {
      group: "h",
      urls: dep.urls,
      count: n,
      rate: 500,
      room: "heap",
      roomSize: 10,
      usernamePrefix: "h",
      maxPending: 200,
    });
    await waitQuiet(pool, 1000, 60_000);
    await sleep(2000);
    const m1 = await mem();
    const full = await snap("full");
    const held = c.opened;
    console.log(`# ${system}: ${held} connections held (${c.failed} failed), 1 worker\n`);
    for (const [i, m] of m1.entries()) {
      const who = i === 0 ? "primary" : `worker ${i}`;
      const per = (a: number, b: number) => ((a - b) / held / 1024).toFixed(2);
      console.log(
        `${who}: after GC, per connection: RSS ${per(m.rssBytes, m0[i].rssBytes)} KB, heap used ${per(m.heapUsedBytes, m0[i].heapUsedBytes)} KB, external ${per(m.externalBytes, m0[i].externalBytes)} KB, array buffers ${per(m.arrayBuffersBytes, m0[i].arrayBuffersBytes)} KB`,
      );
    }
    for (let i = 0; i < idle.length; i++) {
      console.log(`\n## ${i === 0 ? "primary" : `worker ${i}`}: heap growth per connection\n`);
      console.log(diff(idle[i], full[i], held, Number(values.top)));
    }
    await pool.close();
  } finally {
    await pool.stop();
    await dep.stop();
    if (!values.keep) rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
