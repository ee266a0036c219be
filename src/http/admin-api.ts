import type { IncomingMessage, ServerResponse } from "node:http";
import type { AdminActions } from "../admin/admin-actions.js";
import type { BanStore } from "../admin/ban-store.js";
import { checkRoom } from "../auth/authenticate.js";
import { ChatError } from "../chat/chat-error.js";
import type { PresenceConnection, PresenceStore } from "../presence/presence-store.js";
import {
  ApiError,
  byBearer,
  decodePathPart,
  readJson,
  replyError,
  replyJson,
} from "./api-common.js";

/** What the admin API reaches of one app: its key opens that app only. */
export interface AdminApp {
  id: string;
  /** Its --admin-key (or the apps file's adminKey); empty: no key opens it. */
  adminKey: string;
  presence: PresenceStore;
  bans: BanStore;
  actions: AdminActions;
  /** Longest notice or reason (--max-message-length). */
  maxMessageLength: number;
}

export interface AdminApiOptions {
  /** Every app, once the service is up (undefined while it starts). */
  apps: () => Iterable<AdminApp> | undefined;
}

/** Longest ban: a year. */
const MAX_BAN_SECONDS = 365 * 24 * 3600;
const MAX_BODY = 16 * 1024;
const MAX_USER_ID = 64;

const ROOM_USERS = /^\/api\/v1\/admin\/rooms\/([^/]+)\/users$/;
const ROOM_KICK = /^\/api\/v1\/admin\/rooms\/([^/]+)\/kick$/;
const USER_DISCONNECT = /^\/api\/v1\/admin\/users\/([^/]+)\/disconnect$/;
const BAN = /^\/api\/v1\/admin\/bans\/([^/]+)$/;

/**
 * The operators' HTTP API (`/api/v1/admin/...`, README "Admin API"): rooms and their users,
 * disconnect / ban / kick a user, server notices; across every worker and node. Authenticated
 * with `Authorization: Bearer <--admin-key>`.
 */
export function adminApi(opts: AdminApiOptions) {
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    res.setHeader("Connection", "close");
    try {
      const apps = opts.apps();
      if (!apps) throw new ChatError("E_INTERNAL", "the service is starting");
      const list = [...apps];
      if (list.every((a) => a.adminKey === "")) {
        throw new ApiError("E_API_DISABLED", "the admin API is off: start with --admin-key");
      }
      // The key says which app: an app's operators see and act on that app only.
      const app = byBearer(req, list, (a) => a.adminKey);
      if (!app) {
        throw new ApiError(
          "E_API_UNAUTHORIZED",
          "missing or wrong Authorization: Bearer <admin key>",
        );
      }
      const { presence, bans, actions } = app;
      const path = new URL(req.url ?? "/", "http://x").pathname;
      const method = req.method ?? "GET";
      const roomUsers = ROOM_USERS.exec(path);
      const roomKick = ROOM_KICK.exec(path);
      const userDisconnect = USER_DISCONNECT.exec(path);
      const ban = BAN.exec(path);

      if (method === "GET" && path === "/api/v1/admin/rooms") {
        replyJson(res, 200, { ok: true, app: app.id, rooms: await presence.roomCounts() });
      } else if (method === "GET" && roomUsers) {
        const room = checkRoom(decodePathPart(roomUsers[1]));
        const users = byUser(await presence.roomConnections(room));
        replyJson(res, 200, { ok: true, room, users });
      } else if (method === "POST" && userDisconnect) {
        const userId = pathUserId(userDisconnect[1]);
        const body = await readJson(req, MAX_BODY);
        const reason = optionalText(body.reason, "reason", app.maxMessageLength);
        const banSeconds = optionalBanSeconds(body.banSeconds);
        // Banned first: a tab reconnecting while the others are disconnected is refused.
        const banned =
          banSeconds === undefined ? undefined : await bans.ban(userId, banSeconds, reason);
        const reach = await actions.everywhere({
          kind: "disconnect",
          userId,
          reason: reason || "disconnected by an operator",
          ...(banSeconds === undefined ? {} : { retryAfterMs: banSeconds * 1000 }),
        });
        replyJson(res, 200, { ok: true, userId, ...reach, ...(banned ? { ban: banned } : {}) });
      } else if (method === "POST" && roomKick) {
        const room = checkRoom(decodePathPart(roomKick[1]));
        const body = await readJson(req, MAX_BODY);
        const userId = bodyUserId(body.userId);
        const reason = optionalText(body.reason, "reason", app.maxMessageLength);
        const reach = await actions.everywhere({
          kind: "kick",
          userId,
          room,
          reason: reason || "removed from the room by an operator",
        });
        if (reach.disconnected === 0 && reach.complete) {
          throw new ChatError(
            "E_NO_RECIPIENT",
            `no user ${JSON.stringify(userId)} in room ${room}`,
          );
        }
        replyJson(res, 200, { ok: true, room, userId, ...reach });
      } else if (method === "POST" && path === "/api/v1/admin/notice") {
        const body = await readJson(req, MAX_BODY);
        const room = body.room === undefined ? undefined : checkRoom(body.room);
        const message = noticeText(body.message, app.maxMessageLength);
        actions.notice(message, room);
        replyJson(res, 200, { ok: true, ...(room === undefined ? {} : { room }) });
      } else if (method === "GET" && path === "/api/v1/admin/bans") {
        replyJson(res, 200, { ok: true, bans: await bans.list() });
      } else if (method === "DELETE" && ban) {
        const userId = pathUserId(ban[1]);
        replyJson(res, 200, { ok: true, userId, lifted: await bans.lift(userId) });
      } else {
        throw new ApiError("E_NOT_FOUND", `no route ${method} ${path}`);
      }
    } catch (err) {
      replyError(res, err);
    }
  };
}

/** A room's connections as users, each with their tabs (fd and owner: `<nodeId>/<pid>`). */
function byUser(conns: PresenceConnection[]) {
  const users = new Map<
    string,
    {
      userId: string;
      username: string;
      admin?: boolean;
      connections: { fd: string; owner: string }[];
    }
  >();
  for (const c of conns) {
    let user = users.get(c.userId);
    if (!user) {
      user = { userId: c.userId, username: c.username, connections: [] };
      if (c.admin) user.admin = true;
      users.set(c.userId, user);
    }
    user.connections.push({ fd: c.fd, owner: c.owner });
  }
  return [...users.values()];
}

function checkUserId(userId: unknown): string {
  if (typeof userId !== "string" || userId === "" || userId.length > MAX_USER_ID) {
    throw new ChatError("E_BAD_USERNAME", `userId must be a string of 1-${MAX_USER_ID} characters`);
  }
  return userId;
}

const pathUserId = (part: string) => checkUserId(decodePathPart(part, "userId", "E_BAD_USERNAME"));
const bodyUserId = (value: unknown) => checkUserId(value);

/** An optional free text (reason): "" when absent. */
function optionalText(value: unknown, what: string, max: number): string {
  if (value === undefined || value === null) return "";
  if (typeof value !== "string") throw new ChatError("E_BAD_PAYLOAD", `${what} must be a string`);
  if (value.length > max) {
    throw new ChatError("E_MESSAGE_TOO_LONG", `${what} is over ${max} characters`);
  }
  return value;
}

function noticeText(value: unknown, max: number): string {
  const text = optionalText(value, "message", max);
  if (text.trim() === "") throw new ChatError("E_EMPTY_MESSAGE", "message must not be empty");
  return text;
}

function optionalBanSeconds(value: unknown): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (
    typeof value !== "number" ||
    !Number.isSafeInteger(value) ||
    value < 1 ||
    value > MAX_BAN_SECONDS
  ) {
    throw new ChatError(
      "E_BAD_PAYLOAD",
      `banSeconds must be an integer from 1 to ${MAX_BAN_SECONDS}`,
    );
  }
  return value;
}
