import { ChatError } from "./chat-error.js";
import type { ClientMessage, MessageType } from "./protocol.js";
import { MessageTypes } from "./protocol.js";

export interface MessageLimits {
  /** Most characters in a text message. */
  maxMessageLength: number;
  /** Most bytes (characters) in an image URL or data URL. */
  maxImageBytes: number;
}

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

/** Turns whatever a client sent with the `message` event into a checked message, or throws. */
export function validateMessage(payload: unknown, limits: MessageLimits): ClientMessage {
  if (!isRecord(payload)) {
    throw new ChatError(
      "E_BAD_PAYLOAD",
      "message must be an object { type, content: { message } }",
    );
  }
  const { type, content, to, notice } = payload;
  if (typeof type !== "string" || !MessageTypes.includes(type as MessageType)) {
    throw new ChatError("E_BAD_TYPE", `type must be one of ${MessageTypes.join(", ")}`);
  }
  if (!isRecord(content) || typeof content.message !== "string") {
    throw new ChatError("E_BAD_PAYLOAD", "content.message must be a string");
  }
  if (to !== undefined && (typeof to !== "string" || to === "" || to.length > 128)) {
    throw new ChatError("E_BAD_PAYLOAD", "to must be a non-empty userId or fd");
  }
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
  const checked: ClientMessage = { type: type as MessageType, content: { message } };
  if (to !== undefined) checked.to = to as string;
  if (notice === true) checked.notice = true;
  return checked;
}
