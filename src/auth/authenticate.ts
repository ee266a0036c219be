import { errors, jwtVerify } from "jose";
import { ChatError } from "../chat/chat-error.js";
import { checkHumanName, isReservedName, MAX_USER_ID, MAX_USERNAME } from "./names.js";

/** Who a handshake says it is, once checked. */
export interface Identity {
  userId: string;
  username: string;
  room: string;
  admin: boolean;
}

export const DEFAULT_ROOM = "lobby";
const ROOM = /^[\p{L}\p{N}_.:-]{1,64}$/u;
/** What a backend's `sub` may be: it is the backend's own id, so it is checked, not rewritten. */
const USER_ID = /^[^\p{Cc}\p{Cf}\s]{1,64}$/u;
const SPACE = /\s/u;
/** Tokens beyond this are refused unread: verifying costs in proportion to the size. */
export const MAX_TOKEN_BYTES = 8192;

function checkName(username: unknown): string {
  if (typeof username !== "string") {
    throw new ChatError(
      "E_BAD_USERNAME",
      `username must be 1-${MAX_USERNAME} printable characters`,
    );
  }
  return checkHumanName(username, "username", MAX_USERNAME);
}

/** An open-mode userId: anyone picks it, so it gets a name's checks, and no spaces. */
function checkOpenUserId(userId: unknown): string {
  if (typeof userId === "number" && Number.isSafeInteger(userId)) return String(userId);
  if (typeof userId !== "string") {
    throw new ChatError(
      "E_BAD_USERNAME",
      `userId must be 1-${MAX_USER_ID} characters without spaces`,
    );
  }
  const id = checkHumanName(userId, "userId", MAX_USER_ID);
  if (SPACE.test(id)) {
    throw new ChatError(
      "E_BAD_USERNAME",
      `userId must be 1-${MAX_USER_ID} characters without spaces`,
    );
  }
  return id;
}

function checkTokenUserId(userId: unknown): string {
  if (typeof userId !== "string" || !USER_ID.test(userId)) {
    throw new ChatError("E_BAD_USERNAME", "userId must be 1-64 characters without spaces");
  }
  if (isReservedName(userId)) {
    throw new ChatError("E_RESERVED_NAME", `userId "${userId}" is reserved`);
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

export interface AuthenticatorOptions {
  /** `aud` values a token must carry one of: a list or a comma-separated string; empty = any. */
  audience?: string | string[];
  /** The `iss` a token must carry; empty = any. */
  issuer?: string;
  /** Longest token accepted (characters), checked before any decoding. */
  maxTokenBytes?: number;
}

/**
 * Checks the `auth` object of a handshake. With a secret, a HS256 JWT is required
 * (`sub` = userId, `name` = username, `room`, `role: "admin"`; `aud`/`iss` when configured);
 * without one the service is open and takes `{ username, userId?, room? }` at its word, once
 * normalized (see names.ts).
 */
export class Authenticator {
  private readonly keys: Uint8Array[];
  private readonly audience: string[];
  private readonly issuer: string;
  private readonly maxTokenBytes: number;

  /** One secret, or several (a rotation: a token signed with any of them is accepted). */
  constructor(secret: string | string[], opts: AuthenticatorOptions = {}) {
    const secrets = (typeof secret === "string" ? [secret] : secret).filter((s) => s !== "");
    this.keys = secrets.map((s) => new TextEncoder().encode(s));
    const aud = opts.audience ?? [];
    this.audience = (typeof aud === "string" ? aud.split(",") : aud)
      .map((a) => a.trim())
      .filter((a) => a !== "");
    this.issuer = opts.issuer?.trim() ?? "";
    this.maxTokenBytes = opts.maxTokenBytes ?? MAX_TOKEN_BYTES;
  }

  get open(): boolean {
    return this.keys.length === 0;
  }

  async authenticate(auth: unknown): Promise<Identity> {
    const a = (typeof auth === "object" && auth !== null ? auth : {}) as Record<string, unknown>;
    if (this.keys.length === 0) {
      const username = checkName(a.username);
      const userId = a.userId === undefined ? username : checkOpenUserId(a.userId);
      return { username, userId, room: checkRoom(a.room), admin: false };
    }
    if (typeof a.token !== "string" || a.token === "") {
      throw new ChatError("E_AUTH_REQUIRED", "this service requires auth: { token } (a JWT)");
    }
    if (a.token.length > this.maxTokenBytes) {
      throw new ChatError("E_AUTH_INVALID", "token too large");
    }
    let payload: Record<string, unknown>;
    try {
      payload = await this.verify(a.token);
    } catch (err) {
      if (err instanceof errors.JWTExpired)
        throw new ChatError("E_AUTH_EXPIRED", "token has expired");
      if (err instanceof errors.JWTClaimValidationFailed && err.claim === "aud")
        throw new ChatError("E_AUTH_INVALID", "token audience (aud) is not accepted here");
      if (err instanceof errors.JWTClaimValidationFailed && err.claim === "iss")
        throw new ChatError("E_AUTH_INVALID", "token issuer (iss) is not accepted here");
      throw new ChatError("E_AUTH_INVALID", "token is invalid");
    }
    const userId = checkTokenUserId(payload.sub);
    return {
      userId,
      username: payload.name === undefined ? userId : checkName(payload.name),
      room: checkRoom(payload.room ?? a.room),
      admin: payload.role === "admin",
    };
  }

  /** Verifies with each secret in turn; only a bad signature moves on to the next one. */
  private async verify(token: string): Promise<Record<string, unknown>> {
    const options = {
      algorithms: ["HS256"],
      audience: this.audience.length > 0 ? this.audience : undefined,
      issuer: this.issuer || undefined,
    };
    for (let i = 0; ; i++) {
      try {
        return (await jwtVerify(token, this.keys[i] as Uint8Array, options)).payload;
      } catch (err) {
        if (!(err instanceof errors.JWSSignatureVerificationFailed) || i === this.keys.length - 1) {
          throw err;
        }
      }
    }
  }
}
