import { readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import type { HistoryDump, MemoryHistoryStore } from "./memory-history-store.js";

/** Where a stopping primary leaves the node's history for the next start (beside the pid file). */
export const historyPath = (pidFile: string): string => `${pidFile}.history.json`;

/**
 * Cluster mode keeps history in the primary: a `restart` or `stop`+`start` would otherwise lose
 * it, and clients reconnecting with `since` would find their room's numbers started again.
 * Written atomically (temp file, then rename), owner-only: it holds the rooms' messages.
 */
export function saveHistory(file: string, store: MemoryHistoryStore): void {
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, JSON.stringify(store.dump()), { mode: 0o600 });
  renameSync(tmp, file);
}

/** Loads a saved history into a fresh store and removes the file; returns the logs loaded. */
export function loadHistory(file: string, store: MemoryHistoryStore): number {
  let dump: HistoryDump;
  try {
    dump = JSON.parse(readFileSync(file, "utf8")) as HistoryDump;
  } catch {
    return 0;
  } finally {
    rmSync(file, { force: true });
  }
  if (!Array.isArray(dump?.logs) || !Array.isArray(dump.cids)) return 0;
  return store.load(dump);
}
