import { ChatError } from "./chat-error.js";
import type { ClientMessage, MessageType, Recipient } from "./protocol.js";
import { MessageTypes } from "./protocol.js";

export interface MessageLimits {
  /** Most characters in a text message. */
  maxMessageLength: number;
  /** Most bytes (characters) in an image URL or data URL. */
  maxImageBytes: number;
}

export type { Recipient };

/** A message as validateMessage returns it. */
export type CheckedMessage = ClientMessage;

const MAX_TO_LENGTH = 128;
const BAD_TO = "to must be a userId or fd (a non-empty string), { userId } or { fd }";

/** Longest state (typing/status) text relayed as 102. */
export const MAX_STATE_LENGTH = 64;
const DATA_IMAGE = /^data:image\/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/]+={0,2}$/;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Checks an image message: an http(s) URL, or a base64 data URL of a common image format. */
export function checkImage(url: string, maxBytes: number): void {
  if (url.length > maxBytes) {
    throw new ChatError(
      "E_IMAGE_TOO_LARGE",
      `image is ${url.length} bytes, the limit is ${maxBytes}`,
    );
  }
  if (url.startsWith("data:")) {
    if (!DATA_IMAGE.test(url)) {
      throw new ChatError(
        "E_BAD_IMAGE",
        "a data URL must be data:image/(png|jpeg|gif|webp);base64,<data>",
      );
    }
    return;
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ChatError("E_BAD_IMAGE", "image must be an http(s) URL or a data:image URL");
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new ChatError("E_BAD_IMAGE", `image URL scheme ${parsed.protocol} is not allowed`);
  }
}

function checkId(id: unknown): string | undefined {
  if (typeof id === "number" && Number.isSafeInteger(id)) return String(id);
  if (typeof id !== "string" || id === "" || id.length > MAX_TO_LENGTH) return undefined;
  return id;
}

/** Checks `to`: a string, `{ userId }` or `{ fd }` (exactly one key). */
export function checkRecipient(to: unknown): Recipient {
  if (typeof to === "string") {
    if (to === "" || to.length > MAX_TO_LENGTH) throw new ChatError("E_BAD_PAYLOAD", BAD_TO);
    return to;
  }
  if (isRecord(to)) {
    const keys = Object.keys(to);
    const id = keys.length === 1 ? checkId(to[keys[0]]) : undefined;
    if (id !== undefined && keys[0] === "userId") return { userId: id };
    if (id !== undefined && keys[0] === "fd") return { fd: id };
  }
  throw new ChatError("E_BAD_PAYLOAD", BAD_TO);
}

/** Turns whatever a client sent with the `message` event into a checked message, or throws. */
export function validateMessage(payload: unknown, limits: MessageLimits): CheckedMessage {
  if (!isRecord(payload)) {
    throw new ChatError(
      "E_BAD_PAYLOAD",
      "message must be an object { type, content: { message } }",
    );
  }
  const { type, content, to, notice, cid } = payload;
  if (cid !== undefined && (typeof cid !== "string" || cid.length < 1 || cid.length > 64)) {
    throw new ChatError("E_BAD_PAYLOAD", "cid must be a string of 1-64 characters");
  }
  if (typeof type !== "string" || !MessageTypes.includes(type as MessageType)) {
    throw new ChatError("E_BAD_TYPE", `type must be one of ${MessageTypes.join(", ")}`);
  }
  if (!isRecord(content) || typeof content.message !== "string") {
    throw new ChatError("E_BAD_PAYLOAD", "content.message must be a string");
  }
  const recipient = to === undefined ? undefined : checkRecipient(to);
  if (notice !== undefined && typeof notice !== "boolean") {
    throw new ChatError("E_BAD_PAYLOAD", "notice must be true or false");
  }
  if (notice === true && type !== "text") {
    throw new ChatError("E_BAD_PAYLOAD", "only text messages can be notices");
  }
  const message = content.message;
  if (message.trim() === "") {
    throw new ChatError("E_EMPTY_MESSAGE", "message is empty");
  }
  switch (type as MessageType) {
    case "text":
      if (message.length > limits.maxMessageLength) {
        throw new ChatError(
          "E_MESSAGE_TOO_LONG",
          `message is ${message.length} characters, the limit is ${limits.maxMessageLength}`,
        );
      }
      break;
    case "img":
      checkImage(message, limits.maxImageBytes);
      break;
    case "state":
      if (message.length > MAX_STATE_LENGTH) {
        throw new ChatError(
          "E_MESSAGE_TOO_LONG",
          `state is ${message.length} characters, the limit is ${MAX_STATE_LENGTH}`,
        );
      }
      break;
  }
  const checked: CheckedMessage = { type: type as MessageType, content: { message } };
  if (cid !== undefined) checked.cid = cid as string;
  if (recipient !== undefined) checked.to = recipient;
  if (notice === true) checked.notice = true;
  return checked;
}
