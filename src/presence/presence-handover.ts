import { readFileSync, rmSync, writeFileSync } from "node:fs";
import type { MemoryPresenceStore } from "./memory-presence-store.js";
import type { PresenceConnection } from "./presence-store.js";

/** The owner of connections a restarted primary took over from its predecessor. */
export const RESTORED_OWNER = "restored";
/** A handover older than this is ignored: its clients have given up or long reconnected. */
const MAX_AGE_MS = 60_000;

interface Handover {
  savedAt: number;
  connections: PresenceConnection[];
}

/** Where a stopping primary leaves its presence for the next start (beside the pid file). */
export const handoverPath = (pidFile: string): string => `${pidFile}.presence.json`;

/**
 * Written by a stopping primary in cluster mode (the store lives in it): the next start on the
 * same pid file keeps these users online while their clients reconnect, so that a `restart` or a
 * `stop`+`start` causes no 203 and no 202 for users who come back within the grace.
 */
export function saveHandover(file: string, store: MemoryPresenceStore): void {
  const handover: Handover = { savedAt: Date.now(), connections: store.connections() };
  writeFileSync(file, JSON.stringify(handover), { mode: 0o600 });
}

/**
 * Loads a recent handover into an empty store, under {@link RESTORED_OWNER}, and deletes the file.
 * Returns the number of connections restored (0 when there was none, or a stale or bad one).
 */
export async function restoreHandover(file: string, store: MemoryPresenceStore): Promise<number> {
  let handover: Handover;
  try {
    handover = JSON.parse(readFileSync(file, "utf8")) as Handover;
  } catch {
    return 0;
  } finally {
    rmSync(file, { force: true });
  }
  const age = Date.now() - Number(handover?.savedAt);
  if (!(age >= 0 && age < MAX_AGE_MS) || !Array.isArray(handover.connections)) return 0;
  let restored = 0;
  for (const c of handover.connections) {
    if (typeof c?.fd !== "string" || typeof c.userId !== "string" || typeof c.room !== "string") {
      continue;
    }
    const conn: PresenceConnection = {
      fd: c.fd,
      userId: c.userId,
      username: String(c.username),
      room: c.room,
      owner: RESTORED_OWNER,
    };
    if (c.admin === true) conn.admin = true;
    await store.join(conn);
    restored++;
  }
  return restored;
}
