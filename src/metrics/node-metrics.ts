import cluster, { type Worker } from "node:cluster";
import type { IncomingMessage, ServerResponse } from "node:http";
import { AggregatorRegistry, collectDefaultMetrics } from "prom-client";
import { bearerCheck } from "../http/api-common.js";
import { registry, workersScraped } from "./metrics.js";

/** prom-client's cluster protocol, whose responder runs in every worker (worker-metrics.ts). */
const REQUEST = "prom-client:getMetricsReq";
const RESPONSE = "prom-client:getMetricsRes";
/** A worker that does not answer within this is left out of the scrape (and counted). */
const WORKER_TIMEOUT_MS = 2000;

export const METRICS_PATH = "/metrics";

type MetricsJson = Awaited<ReturnType<typeof registry.getMetricsAsJSON>>;

interface Response {
  type: typeof RESPONSE;
  requestId: number;
  metrics?: MetricsJson[];
  error?: string;
}

const isResponse = (msg: unknown): msg is Response =>
  typeof msg === "object" && msg !== null && (msg as { type?: unknown }).type === RESPONSE;

/**
 * The node's `/metrics`, served by the primary: one scrape for the whole node. The primary asks
 * each live worker for its registry over the cluster IPC channel (prom-client's protocol, but
 * only to workers that are ready, with a deadline per worker: prom-client's own clusterMetrics()
 * asks every forked worker, a starting one included, and fails the whole scrape on one timeout),
 * then adds its own and combines them with prom-client's AggregatorRegistry.aggregate: counters
 * summed, store-wide gauges by max, default process metrics kept apart by their `process` label.
 * Never construct an AggregatorRegistry in the primary: its listener would take our replies.
 */
export class NodeMetrics {
  private nextId = 0;
  private readonly authorized: (req: IncomingMessage) => boolean;
  private readonly waiting = new Map<number, (metrics: MetricsJson[]) => void>();
  /** Concurrent scrapes share one round of requests. */
  private inFlight?: Promise<string>;

  constructor(
    private readonly opts: {
      /** Bearer key required by /metrics; empty: open. */
      adminKey: string;
      /** Workers to ask (ready or draining: both hold connections). */
      workers: () => Worker[];
    },
  ) {
    this.authorized = bearerCheck(opts.adminKey);
    collectDefaultMetrics({ register: registry, labels: { process: "primary" } });
    cluster.on("message", (_worker, msg: unknown) => {
      if (!isResponse(msg)) return;
      this.waiting.get(msg.requestId)?.(msg.error ? [] : (msg.metrics ?? []));
    });
  }

  /** The node's metrics in the Prometheus text format. */
  scrape(): Promise<string> {
    this.inFlight ??= this.gather().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  private async gather(): Promise<string> {
    const answers = await Promise.all(this.opts.workers().map((w) => this.ask(w)));
    const answered = answers.filter((a) => a !== undefined);
    workersScraped.set({ answered: "yes" }, answered.length);
    workersScraped.set({ answered: "no" }, answers.length - answered.length);
    const all: MetricsJson[] = [...answered.flat(), await registry.getMetricsAsJSON()];
    return AggregatorRegistry.aggregate(all).metrics();
  }

  private ask(worker: Worker): Promise<MetricsJson[] | undefined> {
    if (!worker.isConnected()) return Promise.resolve(undefined);
    const requestId = ++this.nextId;
    return new Promise((resolve) => {
      const timer = setTimeout(() => done(undefined), WORKER_TIMEOUT_MS);
      const done = (metrics: MetricsJson[] | undefined) => {
        clearTimeout(timer);
        this.waiting.delete(requestId);
        resolve(metrics);
      };
      this.waiting.set(requestId, done);
      try {
        worker.send({ type: REQUEST, requestId });
      } catch {
        done(undefined);
      }
    });
  }

  /** Answers GET /metrics (Bearer --admin-key when one is set). */
  serve(req: IncomingMessage, res: ServerResponse): void {
    res.setHeader("Connection", "close");
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { Allow: "GET, HEAD", "Content-Type": "text/plain" }).end("GET only\n");
      return;
    }
    if (this.opts.adminKey && !this.authorized(req)) {
      res
        .writeHead(401, {
          "WWW-Authenticate": 'Bearer realm="metrics"',
          "Content-Type": "text/plain",
        })
        .end("missing or wrong Authorization: Bearer <admin key>\n");
      return;
    }
    this.scrape().then(
      (text) => {
        res.writeHead(200, { "Content-Type": registry.contentType });
        res.end(req.method === "HEAD" ? undefined : text);
      },
      (err: unknown) => {
        res
          .writeHead(500, { "Content-Type": "text/plain" })
          .end(`metrics failed: ${String(err)}\n`);
      },
    );
  }
}

/** Whether a request's path is /metrics (any query). */
export const isMetricsRequest = (url: string | undefined): boolean =>
  (url ?? "").split("?")[0] === METRICS_PATH;
