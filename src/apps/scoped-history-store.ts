import type {
  AppendRequest,
  AppendResult,
  HistoryRange,
  HistoryStore,
} from "../history/history-store.js";
import { scopeRoom } from "./app-scope.js";

/**
 * One app's view of the service's history store: its rooms are the store's `<app>/<room>`
 * (app-scope.ts). Envelopes carry the plain room name (the chat builds them), so what is read
 * back needs no change; deliveries are routed to the app by their room (apps/app-router.ts).
 */
export class ScopedHistoryStore implements HistoryStore {
  constructor(
    private readonly inner: HistoryStore,
    private readonly app: string,
  ) {}

  append(req: AppendRequest): Promise<AppendResult> {
    return this.inner.append({ ...req, room: scopeRoom(this.app, req.room) });
  }

  range(room: string, after: number | undefined, limit: number): Promise<HistoryRange> {
    return this.inner.range(scopeRoom(this.app, room), after, limit);
  }

  inbox(
    room: string,
    userId: string,
    after: number | undefined,
    limit: number,
  ): Promise<HistoryRange> {
    return this.inner.inbox(scopeRoom(this.app, room), userId, after, limit);
  }

  /** The service's store is closed by its backend, not by an app. */
  async close(): Promise<void> {}
}
