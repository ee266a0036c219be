import { errors, jwtVerify } from "jose";
import { ChatError } from "../chat/chat-error.js";

/** Who a handshake says it is, once checked. */
export interface Identity {
  userId: string;
  username: string;
  room: string;
  admin: boolean;
}

export const DEFAULT_ROOM = "lobby";
const NAME = /^[^\p{Cc}\p{Cf}]{1,32}$/u;
const ROOM = /^[\p{L}\p{N}_.:-]{1,64}$/u;
const USER_ID = /^[^\p{Cc}\p{Cf}\s]{1,64}$/u;

function checkName(username: unknown): string {
  if (typeof username !== "string" || !NAME.test(username) || username.trim() === "") {
    throw new ChatError("E_BAD_USERNAME", "username must be 1-32 printable characters");
  }
  return username.trim();
}

function checkUserId(userId: unknown): string {
  if (typeof userId === "number" && Number.isSafeInteger(userId)) return String(userId);
  if (typeof userId !== "string" || !USER_ID.test(userId)) {
    throw new ChatError("E_BAD_USERNAME", "userId must be 1-64 characters without spaces");
  }
  return userId;
}

export function checkRoom(room: unknown): string {
  if (room === undefined || room === null || room === "") return DEFAULT_ROOM;
  if (typeof room !== "string" || !ROOM.test(room)) {
    throw new ChatError("E_BAD_ROOM", "room must be 1-64 letters, digits or _ . : -");
  }
  return room;
}

/**
 * Checks the `auth` object of a handshake. With a secret, a HS256 JWT is required
 * (`sub` = userId, `name` = username, `room`, `role: "admin"`); without one the service is open
 * and takes `{ username, userId?, room? }` at its word.
 */
export class Authenticator {
  private readonly key: Uint8Array | undefined;

  constructor(secret: string) {
    this.key = secret ? new TextEncoder().encode(secret) : undefined;
  }

  get open(): boolean {
    return this.key === undefined;
  }

  async authenticate(auth: unknown): Promise<Identity> {
    const a = (typeof auth === "object" && auth !== null ? auth : {}) as Record<string, unknown>;
    if (!this.key) {
      const username = checkName(a.username);
      return {
        username,
        userId: a.userId === undefined ? username : checkUserId(a.userId),
        room: checkRoom(a.room),
        admin: false,
      };
    }
    if (typeof a.token !== "string" || a.token === "") {
      throw new ChatError("E_AUTH_REQUIRED", "this service requires auth: { token } (a JWT)");
    }
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(a.token, this.key, { algorithms: ["HS256"] }));
    } catch (err) {
      if (err instanceof errors.JWTExpired)
        throw new ChatError("E_AUTH_EXPIRED", "token has expired");
      throw new ChatError("E_AUTH_INVALID", "token is invalid");
    }
    const userId = checkUserId(payload.sub);
    return {
      userId,
      username: payload.name === undefined ? userId : checkName(payload.name),
      room: checkRoom(payload.room ?? a.room),
      admin: payload.role === "admin",
    };
  }
}
