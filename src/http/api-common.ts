import { timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { ChatError } from "../chat/chat-error.js";
import type { ErrorCode } from "../chat/protocol.js";

/**
 * What the HTTP APIs on the service port share (the push API, the admin API): Bearer keys
 * compared in constant time, JSON bodies read with a bound, errors answered as coded JSON.
 */

/** API errors: the chat codes plus the HTTP-only ones, all in the README's error table. */
export type ApiErrorCode =
  | ErrorCode
  | "E_API_DISABLED"
  | "E_API_UNAUTHORIZED"
  | "E_NOT_FOUND"
  | "E_PAYLOAD_TOO_LARGE";

const STATUS: Partial<Record<ApiErrorCode, number>> = {
  E_API_DISABLED: 404,
  E_NOT_FOUND: 404,
  E_API_UNAUTHORIZED: 401,
  E_PAYLOAD_TOO_LARGE: 413,
  E_NO_RECIPIENT: 404,
  E_INTERNAL: 503,
  E_UNAVAILABLE: 503,
  E_SERVER_BUSY: 503,
};

export class ApiError extends Error {
  constructor(
    readonly code: ApiErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** A check of `Authorization: Bearer <key>`; always false for an empty key. */
export function bearerCheck(apiKey: string): (req: IncomingMessage) => boolean {
  return (req) => sameKey(bearerOf(req), apiKey);
}

/** The key of `Authorization: Bearer <key>` ("" when there is none). */
export function bearerOf(req: IncomingMessage): string {
  return (req.headers.authorization ?? "").replace(/^Bearer\s+/i, "");
}

/** Whether a presented key is `key`, in constant time for keys of its length; never for "". */
export function sameKey(given: string, key: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(key);
  return b.length > 0 && a.length === b.length && timingSafeEqual(a, b);
}

/**
 * The one of `candidates` whose key the request presents. Every candidate is compared (no early
 * exit), so the time taken does not tell which app's key was close.
 */
export function byBearer<T>(
  req: IncomingMessage,
  candidates: Iterable<T>,
  keyOf: (c: T) => string,
): T | undefined {
  const given = bearerOf(req);
  let found: T | undefined;
  for (const c of candidates) if (sameKey(given, keyOf(c)) && found === undefined) found = c;
  return found;
}

/** Answers with a JSON body; every API response closes its connection. */
export function replyJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "Content-Type": "application/json" }).end(JSON.stringify(body));
}

/** Answers an error as `{ ok: false, error: { code, message } }`; anything unknown is E_INTERNAL. */
export function replyError(res: ServerResponse, err: unknown): void {
  const e =
    err instanceof ApiError || err instanceof ChatError
      ? err
      : new ChatError("E_INTERNAL", "internal error, try again");
  replyJson(res, STATUS[e.code] ?? 400, { ok: false, error: { code: e.code, message: e.message } });
}

/** A %-encoded path segment; bad encoding is the client's error, not the service's. */
export function decodePathPart(
  part: string,
  what = "room",
  code: ErrorCode = "E_BAD_ROOM",
): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw new ChatError(code, `the ${what} in the path is not valid %-encoding`);
  }
}

/** Reads a JSON object body of at most `limit` bytes (413 beyond, 400 when not an object). */
export function readJson(req: IncomingMessage, limit: number): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        // Answer 413 at once (the caller replies) and discard the rest unbuffered: destroying
        // the request here would reset the connection before the answer is written. The
        // response's Connection: close then ends the connection.
        req.removeListener("data", onData);
        chunks.length = 0;
        req.resume();
        reject(new ApiError("E_PAYLOAD_TOO_LARGE", `body over ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    };
    req.on("data", onData);
    req.on("error", reject);
    req.on("end", () => {
      if (size > limit) return;
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as unknown;
        if (typeof body !== "object" || body === null || Array.isArray(body)) throw new Error();
        resolve(body as Record<string, unknown>);
      } catch {
        reject(new ChatError("E_BAD_PAYLOAD", "body must be a JSON object"));
      }
    });
  });
}
