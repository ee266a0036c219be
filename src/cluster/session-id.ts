import { randomBytes } from "node:crypto";

/**
 * Engine.IO session ids carry the id of the worker that holds the session
 * (`<workerId>.<random>`), so the primary routes every request of a session by reading its URL:
 * no sid→worker table to keep in sync, no window where a session's next request beats its
 * registration (a flaw measured with @socket.io/sticky, see README "Design notes").
 */
export function newSessionId(workerId: number): string {
  return `${workerId}.${randomBytes(15).toString("base64url")}`;
}

const SID = /[?&]sid=(\d+)\./;

/** The worker id a request line names through its sid, or undefined for a new session. */
export function workerIdOfRequest(requestLine: string): number | undefined {
  const m = SID.exec(requestLine);
  return m ? Number(m[1]) : undefined;
}
