import { createAdapter } from "@socket.io/cluster-adapter";
import type { Server } from "socket.io";
import { IpcBanStore } from "../admin/ban-store.js";
import type { PrimaryToWorker } from "../cluster/ipc-messages.js";
import { isOurs } from "../cluster/ipc-messages.js";
import type { Delivery } from "../history/history-store.js";
import { IpcHistoryStore } from "../history/ipc-history-store.js";
import { IpcSharedLimits } from "../limits/shared-limits.js";
import { IpcPresenceStore } from "../presence/ipc-presence-store.js";
import type { PresenceEvent } from "../presence/presence-store.js";
import type { Backend } from "./backend.js";

/** One machine, no Redis: rooms over the cluster adapter, presence in the primary. */
export class ClusterBackend implements Backend {
  readonly presence = new IpcPresenceStore();
  readonly history = new IpcHistoryStore();
  /** Kept in the primary. */
  readonly bans = new IpcBanStore();

  /** Counted in the primary, one IPC round trip per call. */
  readonly sharedLimits = new IpcSharedLimits();

  attach(io: Server): void {
    io.adapter(createAdapter());
  }

  async start(): Promise<void> {}

  onPresence(listener: (event: PresenceEvent) => void): void {
    // The primary's store sends every change to every worker, in order, over IPC.
    process.on("message", (msg: unknown) => {
      if (isOurs<PrimaryToWorker>(msg) && msg.type === "wws:presence-event") listener(msg.event);
    });
  }

  onDelivery(listener: (delivery: Delivery) => void): void {
    // The primary's store sends every stored message to every worker, in order, over IPC.
    process.on("message", (msg: unknown) => {
      if (isOurs<PrimaryToWorker>(msg) && msg.type === "wws:chat-delivery") listener(msg.delivery);
    });
  }

  onHealth(): void {
    // The IPC channel to the primary is this backend: when it goes, the worker exits.
  }

  async close(): Promise<void> {
    await this.presence.close();
    await this.history.close();
  }
}
