/**
 * The baseline: the bare multi-node Socket.IO setup a user would write from socket.io's "Using
 * multiple nodes" / "Cluster adapter" / "Redis adapter" documentation, with a broadcast handler and
 * nothing else (no auth, no presence, no validation). The same load generator drives it and
 * weigot-ws: a client joins the room named in its handshake `auth.room`, and a `message` event is
 * broadcast to that room (sender included).
 *
 *   node --import tsx bench/baselines/server.ts --port 3000 --workers 2 [--adapter redis --redis-url redis://127.0.0.1:6379]
 *
 * `--adapter cluster`: primary = sticky sessions + the cluster adapter's setupPrimary();
 * `--adapter redis`: primary = sticky sessions only, each worker has its own Redis pub/sub clients.
 * Prints one line `READY <port>` on stdout once every worker can take connections (the bench
 * harness waits for it; a user's version would not need it).
 */
import cluster from "node:cluster";
import http from "node:http";
import { parseArgs } from "node:util";
import { createAdapter as createClusterAdapter, setupPrimary } from "@socket.io/cluster-adapter";
import { createAdapter as createRedisAdapter } from "@socket.io/redis-adapter";
import { createClient } from "redis";
import { Server } from "socket.io";
import type * as StickyModule from "./sticky.js";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "3000" },
    workers: { type: "string", default: "2" },
    adapter: { type: "string", default: "cluster" },
    "redis-url": { type: "string", default: "redis://127.0.0.1:6379" },
    "redis-prefix": { type: "string", default: "socket.io" },
  },
});
const port = Number(values.port);
const workers = Number(values.workers);
const adapter = values.adapter === "redis" ? "redis" : "cluster";

/** The real @socket.io/sticky when installed, else the stand-in beside this file. */
async function loadSticky(): Promise<typeof StickyModule & { source: string }> {
  const name = "@socket.io/sticky";
  try {
    const mod = (await import(name)) as typeof StickyModule;
    return { setupMaster: mod.setupMaster, setupWorker: mod.setupWorker, source: name };
  } catch {
    const mod = await import("./sticky.js");
    return { ...mod, source: "bench/baselines/sticky.ts (stand-in)" };
  }
}

const sticky = await loadSticky();

if (cluster.isPrimary) {
  const httpServer = http.createServer();
  // setup sticky sessions (the documentation's loadBalancingMethod)
  sticky.setupMaster(httpServer, { loadBalancingMethod: "least-connection" });
  // setup connections between the workers (cluster adapter only)
  if (adapter === "cluster") setupPrimary();
  // needed for packets containing buffers, and by @socket.io/sticky 2.x
  cluster.setupPrimary({ serialization: "advanced" });

  let stopping = false;
  let ready = 0;
  cluster.on("message", (_worker, msg: { type?: string }) => {
    if (msg?.type === "bench:ready" && ++ready === workers) {
      httpServer.listen(port, () => {
        const addr = httpServer.address();
        const actual = typeof addr === "object" && addr ? addr.port : port;
        process.stdout.write(`READY ${actual} sticky=${sticky.source} adapter=${adapter}\n`);
      });
    }
  });
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on("exit", (worker) => {
    if (stopping) return;
    console.error(`worker ${worker.process.pid} died`);
    cluster.fork();
  });
  const stop = () => {
    stopping = true;
    httpServer.close();
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill("SIGTERM");
    setTimeout(() => process.exit(0), 200).unref();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
} else {
  const httpServer = http.createServer();
  const io = new Server(httpServer);
  if (adapter === "redis") {
    const pubClient = createClient({ url: values["redis-url"] });
    const subClient = pubClient.duplicate();
    pubClient.on("error", (err) => console.error("redis pub:", err.message));
    subClient.on("error", (err) => console.error("redis sub:", err.message));
    await Promise.all([pubClient.connect(), subClient.connect()]);
    io.adapter(createRedisAdapter(pubClient, subClient, { key: values["redis-prefix"] }));
  } else {
    io.adapter(createClusterAdapter());
  }
  // setup connection with the primary process
  sticky.setupWorker(io);

  io.on("connection", (socket) => {
    const room = socket.handshake.auth?.room;
    if (typeof room !== "string") return;
    socket.join(room);
    socket.on("message", (payload: unknown) => {
      io.to(room).emit("message", payload);
    });
  });
  process.on("SIGTERM", () => process.exit(0));
  process.send?.({ type: "bench:ready" });
}
