import type { ErrorCode } from "./protocol.js";

/** An error a client caused and is told about, with a stable code (README: "Error codes"). */
export class ChatError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "ChatError";
  }
}
