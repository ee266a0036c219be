import { STATUS_CODES } from "node:http";
import type { ErrorCode } from "../chat/protocol.js";

/** A refused connection or handshake, as the client is told (a JSON body like Engine.IO's). */
export interface Refusal {
  code: ErrorCode;
  message: string;
  /** Milliseconds until a new attempt can succeed (E_RATE_LIMITED). */
  retryAfterMs?: number;
}

/** The HTTP status of each admission refusal. */
export function statusOf(code: ErrorCode): number {
  switch (code) {
    case "E_ORIGIN_FORBIDDEN":
      return 403;
    case "E_RATE_LIMITED":
    case "E_TOO_MANY_CONNECTIONS":
      return 429;
    default:
      return 503;
  }
}

/** Response headers of a refusal (Retry-After in whole seconds, rounded up). */
export function refusalHeaders(refusal: Refusal): Record<string, string> {
  const body = refusalBody(refusal);
  const headers: Record<string, string> = {
    "Content-Type": "application/json",
    "Content-Length": String(Buffer.byteLength(body)),
    Connection: "close",
  };
  if (refusal.retryAfterMs !== undefined) {
    headers["Retry-After"] = String(Math.max(1, Math.ceil(refusal.retryAfterMs / 1000)));
  }
  return headers;
}

export function refusalBody(refusal: Refusal): string {
  return JSON.stringify(refusal);
}

/**
 * The whole HTTP response of a refusal, for a raw socket (the primary before routing, a worker
 * answering a WebSocket upgrade). `extra` adds headers (e.g. CORS ones already decided).
 */
export function rawRefusal(refusal: Refusal, extra: Record<string, string> = {}): string {
  const status = statusOf(refusal.code);
  const headers = { ...extra, ...refusalHeaders(refusal) };
  const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`);
  return `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n${lines.join("")}\r\n${refusalBody(refusal)}`;
}
