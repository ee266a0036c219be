import type { IncomingMessage, ServerResponse } from "node:http";
import { checkRoom } from "../auth/authenticate.js";
import { ChatError } from "../chat/chat-error.js";
import type { ChatServer } from "../chat/chat-server.js";
import { validateMessage } from "../chat/validate-message.js";
import type { HistoryStore } from "../history/history-store.js";
import type { PresenceStore } from "../presence/presence-store.js";
import {
  ApiError,
  byBearer,
  decodePathPart,
  readJson,
  replyError,
  replyJson,
} from "./api-common.js";

/** What the API reaches of one app: a key opens that app, and nothing of the others. */
export interface PushApp {
  id: string;
  /** Its --api-key (or the apps file's apiKey); empty: no key opens it. */
  apiKey: string;
  chat: ChatServer;
  presence: PresenceStore;
  history: HistoryStore;
  maxMessageLength: number;
  maxImageBytes: number;
}

export interface PushApiOptions {
  /** Every app, once the service is up (undefined while it starts). */
  apps: () => Iterable<PushApp> | undefined;
  /** The largest image any app accepts (the body limit). */
  maxImageBytes: number;
}

const ROOM_USERS = /^\/api\/v1\/rooms\/([^/]+)\/users$/;
const ROOM_MESSAGES = /^\/api\/v1\/rooms\/([^/]+)\/messages$/;

/**
 * The backends' HTTP API, on the service port: push a message into a room or to one user
 * (`POST /api/v1/push`) and read a room's online list (`GET /api/v1/rooms/<room>/users`).
 * Authenticated with `Authorization: Bearer <--api-key>`.
 */
export function pushApi(opts: PushApiOptions) {
  const maxBody = opts.maxImageBytes + 16 * 1024;

  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    res.setHeader("Connection", "close");
    const reply = (status: number, body: unknown) => replyJson(res, status, body);
    try {
      const apps = opts.apps();
      if (!apps) throw new ChatError("E_INTERNAL", "the service is starting");
      const list = [...apps];
      if (list.every((a) => a.apiKey === ""))
        throw new ApiError("E_API_DISABLED", "the HTTP API is off: start with --api-key");
      // The key says which app: the API never reaches another app's rooms.
      const app = byBearer(req, list, (a) => a.apiKey);
      if (!app)
        throw new ApiError(
          "E_API_UNAUTHORIZED",
          "missing or wrong Authorization: Bearer <api key>",
        );
      const { chat, presence, history } = app;
      const url = new URL(req.url ?? "/", "http://x");
      const usersMatch = ROOM_USERS.exec(url.pathname);
      if (req.method === "GET" && usersMatch) {
        const room = checkRoom(decodePathPart(usersMatch[1]));
        reply(200, { app: app.id, room, users: await presence.list(room) });
        return;
      }
      if (req.method === "POST" && url.pathname === "/api/v1/push") {
        const body = await readJson(req, maxBody);
        const room = checkRoom(body.room);
        const msg = validateMessage(
          {
            type: body.type ?? "text",
            content: { message: body.message },
            to: body.to,
            notice: body.notice,
            cid: body.cid,
          },
          app,
        );
        const from = parseFrom(body.from);
        const sent = await chat.push(room, msg, from);
        reply(200, {
          ok: true,
          app: app.id,
          id: sent.id,
          action: sent.action,
          endTime: sent.endTime,
          ...(sent.seq === undefined ? {} : { seq: sent.seq }),
          ...(sent.pseq === undefined ? {} : { pseq: sent.pseq }),
        });
        return;
      }
      const messagesMatch = ROOM_MESSAGES.exec(url.pathname);
      if (req.method === "GET" && messagesMatch) {
        const room = checkRoom(decodePathPart(messagesMatch[1]));
        const since = url.searchParams.get("since");
        const limitParam = url.searchParams.get("limit");
        const after = since === null || since === "" ? undefined : Number(since);
        const limit = limitParam === null || limitParam === "" ? 100 : Number(limitParam);
        if (
          (after !== undefined && (!Number.isSafeInteger(after) || after < 0)) ||
          !Number.isSafeInteger(limit) ||
          limit < 1 ||
          limit > 1000
        ) {
          throw new ChatError(
            "E_BAD_PAYLOAD",
            "since must be an integer >= 0 and limit an integer 1-1000",
          );
        }
        const range = await history.range(room, after, limit).catch(() => {
          throw new ChatError("E_UNAVAILABLE", "history is unreachable; retry");
        });
        reply(200, { app: app.id, room, ...range });
        return;
      }
      throw new ApiError("E_NOT_FOUND", `no route ${req.method} ${url.pathname}`);
    } catch (err) {
      replyError(res, err);
    }
  };
}

function parseFrom(from: unknown): { userId: string; username: string } | undefined {
  if (from === undefined) return undefined;
  const f = from as Record<string, unknown>;
  if (
    typeof from !== "object" ||
    from === null ||
    typeof f.userId !== "string" ||
    f.userId === ""
  ) {
    throw new ChatError("E_BAD_PAYLOAD", "from must be { userId, username? }");
  }
  const username = typeof f.username === "string" && f.username !== "" ? f.username : f.userId;
  return { userId: f.userId.slice(0, 64), username: username.slice(0, 32) };
}
