/**
 * Memory of a service process after a forced full GC, read over its inspector (Chrome DevTools
 * Protocol on the WebSocket that `--inspect=127.0.0.1:0` opens; see `DeployOptions.inspect`), so
 * that the bench measures what is really retained without a hook in the product. Also takes heap
 * snapshots (`.heapsnapshot`, for Chrome DevTools' comparison view or `bench/heap-diff.ts`).
 */
import { createWriteStream, writeFileSync } from "node:fs";
import WebSocket from "ws";

export interface MemorySample {
  pid: number;
  rssBytes: number;
  heapUsedBytes: number;
  heapTotalBytes: number;
  externalBytes: number;
  arrayBuffersBytes: number;
  /**
   * A cluster primary: messages queued for each worker behind a socket hand-off that the worker
   * has not acknowledged yet (Node's private `ChildProcess._handleQueue`; diagnostic only).
   */
  handleQueues?: number[];
}

/** Evaluated in the process: its pid, memoryUsage() and, in a cluster primary, the queues. */
const PROBE = `JSON.stringify([process.pid, process.memoryUsage(), (() => {
  const c = process.getBuiltinModule?.("cluster");
  return c?.isPrimary ? Object.values(c.workers).map((w) => w.process._handleQueue?.length ?? 0) : undefined;
})()])`;

type Reply = { id?: number; method?: string; params?: Record<string, unknown>; error?: unknown };

/** One DevTools session: calls in order, replies matched by id; closed by `close()`. */
class Session {
  private nextId = 1;
  private waiting = new Map<number, (r: Reply) => void>();
  onEvent?: (r: Reply) => void;

  private constructor(private readonly ws: WebSocket) {
    ws.on("message", (data) => {
      const r = JSON.parse(String(data)) as Reply;
      if (r.id !== undefined) {
        this.waiting.get(r.id)?.(r);
        this.waiting.delete(r.id);
      } else this.onEvent?.(r);
    });
    ws.on("close", () => {
      for (const done of this.waiting.values()) done({ error: "inspector closed" });
      this.waiting.clear();
    });
  }

  static open(url: string, timeoutMs: number): Promise<Session> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { handshakeTimeout: timeoutMs, maxPayload: 2 ** 30 });
      ws.once("open", () => resolve(new Session(ws)));
      ws.once("error", reject);
    });
  }

  call(method: string, params: Record<string, unknown> = {}): Promise<Reply> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, (r) =>
        r.error ? reject(new Error(`${method}: ${JSON.stringify(r.error)}`)) : resolve(r),
      );
      this.ws.send(JSON.stringify({ id, method, params }));
    });
  }

  /** Detach: a process with a session attached would wait for it at exit. */
  close(): void {
    this.ws.close();
  }
}

async function withSession<T>(
  url: string,
  timeoutMs: number,
  fn: (s: Session) => Promise<T>,
): Promise<T> {
  const s = await Session.open(url, timeoutMs);
  const timer = setTimeout(() => s.close(), timeoutMs);
  try {
    return await fn(s);
  } finally {
    clearTimeout(timer);
    s.close();
  }
}

/** Forces a full GC in the process behind `url`, then reads its `process.memoryUsage()`. */
export function memoryAfterGc(url: string, timeoutMs = 30_000): Promise<MemorySample> {
  return withSession(url, timeoutMs, async (s) => {
    await s.call("HeapProfiler.collectGarbage");
    const r = await s.call("Runtime.evaluate", {
      expression: PROBE,
      returnByValue: true,
    });
    const value = (r as { result?: { result?: { value?: string } } }).result?.result?.value;
    const [pid, m, handleQueues] = JSON.parse(value ?? "null") as [
      number,
      NodeJS.MemoryUsage,
      number[] | undefined,
    ];
    return {
      pid,
      rssBytes: m.rss,
      heapUsedBytes: m.heapUsed,
      heapTotalBytes: m.heapTotal,
      externalBytes: m.external,
      arrayBuffersBytes: m.arrayBuffers,
      ...(handleQueues ? { handleQueues } : {}),
    };
  });
}

/** Writes a heap snapshot of the process behind `url` to `file` (the snapshot GCs first). */
export function heapSnapshot(url: string, file: string, timeoutMs = 120_000): Promise<void> {
  return withSession(url, timeoutMs, async (s) => {
    const out = createWriteStream(file);
    s.onEvent = (e) => {
      if (e.method === "HeapProfiler.addHeapSnapshotChunk") out.write(String(e.params?.chunk));
    };
    await s.call("HeapProfiler.enable");
    await s.call("HeapProfiler.takeHeapSnapshot", { reportProgress: false });
    await new Promise<void>((resolve, reject) =>
      out.end((err?: Error | null) => (err ? reject(err) : resolve())),
    );
  });
}

/** Profiles the process behind `url` for `ms` and writes a `.cpuprofile` (for profile-summary.ts). */
export function cpuProfile(url: string, ms: number, file: string): Promise<void> {
  return withSession(url, ms + 30_000, async (s) => {
    await s.call("Profiler.enable");
    await s.call("Profiler.start");
    await new Promise((r) => setTimeout(r, ms));
    const r = (await s.call("Profiler.stop")) as { result?: { profile?: unknown } };
    writeFileSync(file, JSON.stringify(r.result?.profile));
  });
}
