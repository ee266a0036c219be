import type { PrimaryToWorker, WorkerToPrimary } from "./ipc-messages.js";
import { isOurs } from "./ipc-messages.js";
import { sendToPrimary } from "./primary-link.js";

type Pending = { resolve: (value: unknown) => void; reject: (err: Error) => void };

/**
 * Calls from a worker to an object living in the primary (`service`), over the cluster IPC
 * channel. Calls and replies travel in order; a primary that goes away fails every pending call.
 */
export class IpcRpc {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly onMessage = (msg: unknown) => {
    // Every service numbers its own calls: a reply is ours only when it names our service.
    if (!isOurs<PrimaryToWorker>(msg) || msg.type !== "wws:rpc-reply") return;
    if (msg.service !== this.service) return;
    const call = this.pending.get(msg.id);
    if (!call) return;
    this.pending.delete(msg.id);
    if (msg.error !== undefined) call.reject(new Error(msg.error));
    else call.resolve(msg.result);
  };
  private readonly onDisconnect = () => this.failAll("the primary is gone");

  constructor(
    private readonly service: string,
    private readonly channel: NodeJS.Process = process,
  ) {
    channel.on("message", this.onMessage);
    channel.on("disconnect", this.onDisconnect);
  }

  call<T>(method: string, args: unknown[]): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (!this.channel.connected || !this.channel.send) {
        reject(new Error("the primary is gone"));
        return;
      }
      const id = this.nextId++;
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      const msg: WorkerToPrimary = {
        type: "wws:rpc-call",
        id,
        service: this.service,
        method,
        args,
      };
      // The worker's link to the primary when it has one (never queued behind socket hand-offs).
      if (this.channel === process) sendToPrimary(msg);
      else this.channel.send(msg);
    });
  }

  close(): void {
    this.channel.off("message", this.onMessage);
    this.channel.off("disconnect", this.onDisconnect);
    this.failAll(`${this.service} closed`);
  }

  private failAll(why: string): void {
    for (const call of this.pending.values()) call.reject(new Error(why));
    this.pending.clear();
  }
}

/** Primary side: answers a worker's call from the named services' allowed methods. */
export function serveRpc(
  services: Record<string, { target: object; methods: ReadonlySet<string> }>,
  msg: Extract<WorkerToPrimary, { type: "wws:rpc-call" }>,
  reply: (msg: PrimaryToWorker) => void,
): void {
  const service = services[msg.service];
  if (!service?.methods.has(msg.method)) {
    reply({
      type: "wws:rpc-reply",
      service: msg.service,
      id: msg.id,
      error: `unknown call ${msg.service}.${msg.method}`,
    });
    return;
  }
  const fn = (service.target as Record<string, (...a: unknown[]) => Promise<unknown>>)[msg.method];
  // Called at once, not in a later microtask: what the call does (a stored message delivered to
  // every worker) must go out before what later IPC messages do (a presence leave's 203), or a
  // user's last message could reach the room after their 203.
  let result: Promise<unknown>;
  try {
    result = Promise.resolve(fn.apply(service.target, msg.args));
  } catch (err) {
    result = Promise.reject(err);
  }
  result.then(
    (result) => reply({ type: "wws:rpc-reply", service: msg.service, id: msg.id, result }),
    (err: unknown) =>
      reply({ type: "wws:rpc-reply", service: msg.service, id: msg.id, error: String(err) }),
  );
}
