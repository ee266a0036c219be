/** The harness side of the load generator: forks agents and sends them commands. */
import { type ChildProcess, fork } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type {
  AgentMessage,
  CloseResult,
  CollectResult,
  ConnectCommand,
  ConnectResult,
  Progress,
  SendCommand,
  SendResult,
} from "./messages.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, "../..");

/** Most sockets one agent holds (a process can open ~20,000 files on this machine). */
export const MAX_SOCKETS_PER_AGENT = 15_000;

type Pending = { resolve: (m: AgentMessage) => void; reject: (e: Error) => void };

export class Agent {
  readonly child: ChildProcess;
  private nextId = 1;
  private pending = new Map<number, Pending>();
  onProgress?: (p: Progress) => void;
  /** Last progress report per group. */
  readonly progress = new Map<string, Progress>();

  constructor(readonly index: number) {
    this.child = fork(path.join(here, "agent.ts"), [], {
      cwd: repoRoot,
      execArgv: ["--import", "tsx", "--max-old-space-size=4096"],
      serialization: "advanced",
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    this.child.on("message", (msg: AgentMessage) => {
      if (msg.type === "progress") {
        this.progress.set(msg.group, msg);
        this.onProgress?.(msg);
        return;
      }
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.type === "error") p.reject(new Error(`agent ${index}: ${msg.message}`));
      else p.resolve(msg);
    });
    this.child.on("exit", (code, signal) => {
      for (const p of this.pending.values()) {
        p.reject(new Error(`agent ${index} exited (code ${code}, signal ${signal})`));
      }
      this.pending.clear();
    });
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  private request<T extends AgentMessage>(cmd: Record<string, unknown>): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (m: AgentMessage) => void, reject });
      this.child.send({ ...cmd, id });
    });
  }

  connect(cmd: Omit<ConnectCommand, "type" | "id">): Promise<ConnectResult> {
    return this.request({ ...cmd, type: "connect" });
  }

  send(cmd: Omit<SendCommand, "type" | "id">): Promise<SendResult> {
    return this.request({ ...cmd, type: "send" });
  }

  collect(reset: boolean, samples: boolean): Promise<CollectResult> {
    return this.request({ type: "collect", reset, samples });
  }

  close(group?: string): Promise<CloseResult> {
    return this.request({ type: "close", group });
  }

  stop(): Promise<void> {
    return new Promise((resolve) => {
      if (this.child.exitCode !== null || this.child.signalCode !== null) return resolve();
      const timer = setTimeout(() => this.child.kill("SIGKILL"), 5000);
      this.child.once("exit", () => {
        clearTimeout(timer);
        resolve();
      });
      this.child.disconnect();
    });
  }
}

/** A set of agents; agent i binds its sockets to 127.0.0.(10 + 4i + k), k < 4. */
export class AgentPool {
  readonly agents: Agent[];

  constructor(count: number) {
    this.agents = Array.from({ length: count }, (_, i) => new Agent(i));
  }

  static forSockets(sockets: number, atLeast = 2): AgentPool {
    return new AgentPool(Math.max(atLeast, Math.ceil(sockets / MAX_SOCKETS_PER_AGENT)));
  }

  localAddresses(i: number): string[] {
    return [0, 1, 2, 3].map((k) => `127.0.0.${10 + 4 * i + k}`);
  }

  get pids(): number[] {
    return this.agents.map((a) => a.pid);
  }

  /** Splits `count` over the agents as evenly as possible. */
  split(count: number): number[] {
    const n = this.agents.length;
    return this.agents.map((_, i) => Math.floor(count / n) + (i < count % n ? 1 : 0));
  }

  async collect(reset: boolean, samples: boolean): Promise<CollectResult[]> {
    return Promise.all(this.agents.map((a) => a.collect(reset, samples)));
  }

  async close(group?: string): Promise<number> {
    const r = await Promise.all(this.agents.map((a) => a.close(group)));
    return r.reduce((s, x) => s + x.closed, 0);
  }

  async stop(): Promise<void> {
    await Promise.all(this.agents.map((a) => a.stop()));
  }
}

/** Engine.IO websocket URL of a server. */
export function wsUrl(port: number, host = "127.0.0.1"): string {
  return `ws://${host}:${port}/socket.io/?EIO=4&transport=websocket`;
}
