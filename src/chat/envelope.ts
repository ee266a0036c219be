import type { ActionCode, Envelope, EnvelopeContent, ErrorCode, MessageType } from "./protocol.js";
import { Action } from "./protocol.js";

let cachedSecond = -1;
let cachedText = "";

/** "YYYY-MM-DD HH:mm:ss" in server local time, formatted once per second at most. */
export function formatTime(ms: number = Date.now()): string {
  const second = Math.floor(ms / 1000);
  if (second !== cachedSecond) {
    const d = new Date(ms);
    const p = (n: number) => (n < 10 ? `0${n}` : `${n}`);
    cachedText = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
    cachedSecond = second;
  }
  return cachedText;
}

export function envelope(
  action: ActionCode,
  type: MessageType,
  content: EnvelopeContent,
  now: number = Date.now(),
): Envelope {
  const time = formatTime(now);
  return { action, data: { type, content }, endTime: time, sendTime: time };
}

export function errorEnvelope(code: ErrorCode, message: string): Envelope {
  return envelope(Action.Server, "state", { message, error: { code, message } });
}
