/**
 * The wire protocol: action codes, message types, the envelope and the typed Socket.IO events.
 * Inherited from the PHP weigot/swoole service (see README "Protocol"); imported by the server,
 * the tests, the benchmarks and (as documentation) the browser page.
 */

/** Server action codes (`envelope.action`). */
export const Action = {
  /** A server notice: shutdown, errors (content.error). */
  Server: 100,
  /** An admin notice. */
  Admin: 101,
  /** Another user's operation: typing / status (`state` messages). */
  OtherUser: 102,
  /** The connection's own details. */
  UserInfo: 200,
  /** The room's online users, one entry per user. */
  UserList: 201,
  /** A user came online in the room. */
  Online: 202,
  /** A user went offline (their last connection in the room is gone). */
  Offline: 203,
  /** A chat message. */
  Message: 300,
} as const;
export type ActionCode = (typeof Action)[keyof typeof Action];

export const MessageTypes = ["text", "img", "state"] as const;
export type MessageType = (typeof MessageTypes)[number];

/** A connected user as seen by others. `fd` is the socket id of one of the user's connections. */
export interface UserInfo {
  fd: string;
  userId: string;
  username: string;
  room: string;
  /** Present and true for admins. */
  admin?: boolean;
}

export interface ErrorInfo {
  code: ErrorCode;
  message: string;
  /** E_RATE_LIMITED: milliseconds until the refused action would be accepted again. */
  retryAfterMs?: number;
}

export interface EnvelopeContent {
  message?: string;
  userList?: UserInfo[];
  userInfo?: UserInfo;
  /** Set on error envelopes (action 100). */
  error?: ErrorInfo;
  /** For private messages: the recipient's userId. */
  to?: string;
  /** On a connect-time 201 cut to --presence-limit entries, or a paged list: the room's users. */
  total?: number;
  /** A paged 201 (onlineList): the cursor of the next page, when there is one. */
  next?: number;
  /**
   * On 202/203 and on pushed 201s: the room's presence version. A 201 reflects every change up to
   * its version; apply a later 202/203 only if its version is greater than your list's.
   */
  version?: number;
  /**
   * On the 100 that opens a replay: whether every message after the client's `since` is still
   * held (false: some were dropped from history; the replay starts at `from`).
   */
  recovered?: boolean;
  /** With `recovered`: the first seq (or pseq, for private messages) the replay holds. */
  from?: number;
  /** With `recovered`: "room" for room messages (seq), "private" for private ones (pseq). */
  stream?: "room" | "private";
}

/** Every push from the server is a "message" event carrying one of these. */
export interface Envelope {
  action: ActionCode;
  data: { type: MessageType; content: EnvelopeContent };
  /** Server send time, "YYYY-MM-DD HH:mm:ss" (server local time). */
  endTime: string;
  /** Same as endTime: the name the original PHP code used. */
  sendTime: string;
  /** Chat messages (300) only: unique and increasing per room. */
  id?: string;
  /** Chat messages (300) only: epoch milliseconds. */
  ts?: number;
  /** Chat messages (300) only: true when the message was private. */
  private?: boolean;
  /**
   * Room messages (300, 101 to the whole room): the room's sequence number, from 1, one more per
   * message, the same on every node. A gap means a missed message (reconnect with `since`).
   */
  seq?: number;
  /** Private messages: the user's own sequence of private messages in the room (`sincePrivate`). */
  pseq?: number;
  /** Sent again from history on connect (`since`, or the room's last messages), not live. */
  replay?: boolean;
  /** The sender's client message id, when it sent one (retries with it are not delivered twice). */
  cid?: string;
}

/**
 * Who a private message is for. `{ userId }` and `{ fd }` say which; the old string form means the
 * fd of a live connection in the room if it is one, else a userId (no userId may equal a live fd:
 * such handshakes are refused).
 */
export type Recipient = string | { userId: string } | { fd: string };

/** What a client sends with the `message` event. */
export interface ClientMessage {
  type: MessageType;
  content: { message: string };
  /** Makes the message private to that user (and the sender). */
  to?: Recipient;
  /** Admins only: send a text as an admin notice (101) instead of a chat message (300). */
  notice?: boolean;
  /**
   * A client message id (1–64 characters): a resend with the same cid within 5 minutes is
   * answered with the original envelope and delivered to nobody again.
   */
  cid?: string;
}

export type Ack = (reply: Envelope) => void;

/** What `onlineList` may ask: a page of the list (see README "Client events"). */
export interface ListRequest {
  /** Where the page starts: 0, or the `next` of the previous page. */
  cursor?: number;
  /** Most users in the page (capped by --list-page-size). */
  limit?: number;
}

/** Stable error codes; every one is listed in the README's error table. */
export const ErrorCodes = [
  "E_AUTH_REQUIRED",
  "E_AUTH_INVALID",
  "E_AUTH_EXPIRED",
  "E_BAD_USERNAME",
  "E_BAD_ROOM",
  "E_BAD_PAYLOAD",
  "E_BAD_TYPE",
  "E_EMPTY_MESSAGE",
  "E_MESSAGE_TOO_LONG",
  "E_BAD_IMAGE",
  "E_IMAGE_TOO_LARGE",
  "E_NO_RECIPIENT",
  "E_FORBIDDEN",
  "E_UNKNOWN_EVENT",
  "E_INTERNAL",
  /** A frame socket.io cannot or must not dispatch (shape, size of its parts, junk). */
  "E_BAD_FRAME",
  /** Over a rate limit; carries retryAfterMs. Also the reason of a disconnect for abuse. */
  "E_RATE_LIMITED",
  /** The connection did not read what was sent to it: dropped. */
  "E_SLOW_CONSUMER",
  /** Connection caps: per address, per user. */
  "E_TOO_MANY_CONNECTIONS",
  /** Node-wide caps (max connections, pending connections). */
  "E_SERVER_BUSY",
  /** The page's Origin is not in --allowed-origins. */
  "E_ORIGIN_FORBIDDEN",
  /** A userId or username that is reserved or would impersonate (system, another fd). */
  "E_RESERVED_NAME",
  /** The message could not be stored (Redis unreachable): not delivered to anyone; retry. */
  "E_UNAVAILABLE",
  /** An operator disconnected the user everywhere (admin API); retryAfterMs when also banned. */
  "E_DISCONNECTED",
  /** An operator removed the user from the room (admin API). */
  "E_KICKED",
  /** A handshake of a banned user (admin API); carries retryAfterMs. */
  "E_BANNED",
  /** A namespace that names no app (connect_error), or an app removed while connected. */
  "E_UNKNOWN_APP",
  /** The room has --max-room-size users already (connect_error). */
  "E_ROOM_FULL",
] as const;
export type ErrorCode = (typeof ErrorCodes)[number];

export interface ClientToServerEvents {
  message: (payload: ClientMessage, ack?: Ack) => void;
  info: (ack?: Ack) => void;
  onlineList: (requestOrAck?: ListRequest | Ack, ack?: Ack) => void;
}

export interface ServerToClientEvents {
  message: (envelope: Envelope) => void;
}

// biome-ignore lint/complexity/noBannedTypes: no server-to-server events; socket.io wants the type
export type InterServerEvents = {};

export interface SocketData {
  user: UserInfo;
}
