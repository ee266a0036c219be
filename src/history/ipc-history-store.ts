import { IpcRpc } from "../cluster/ipc-rpc.js";
import type { AppendRequest, AppendResult, HistoryRange, HistoryStore } from "./history-store.js";

/** The service name of the primary's history store on the IPC channel. */
export const HISTORY_SERVICE = "history";
export const HISTORY_METHODS: ReadonlySet<string> = new Set(["append", "range", "inbox"]);

/** A worker's view of the node's history, which lives in the primary (cluster mode). */
export class IpcHistoryStore implements HistoryStore {
  private readonly rpc = new IpcRpc(HISTORY_SERVICE);

  append(req: AppendRequest): Promise<AppendResult> {
    return this.rpc.call("append", [req]);
  }
  range(room: string, after: number | undefined, limit: number): Promise<HistoryRange> {
    return this.rpc.call("range", [room, after, limit]);
  }
  inbox(
    room: string,
    userId: string,
    after: number | undefined,
    limit: number,
  ): Promise<HistoryRange> {
    return this.rpc.call("inbox", [room, userId, after, limit]);
  }
  async close(): Promise<void> {
    this.rpc.close();
  }
}
