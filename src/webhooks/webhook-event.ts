import { Action, type Envelope, type UserInfo } from "../chat/protocol.js";
import type { Delivery } from "../history/history-store.js";
import type { PresenceEvent } from "../presence/presence-store.js";

export type WebhookEventType =
  | "user.online"
  | "user.offline"
  | "room.occupied"
  | "room.vacated"
  | "message";

/** The user an event is about, as the receiver gets it (no fd: tabs are not announced). */
export interface WebhookUser {
  userId: string;
  username: string;
  admin?: boolean;
}

/** One event of a webhook batch (`{ sentAt, events: [...] }`). */
export interface WebhookEvent {
  /** Unique per event; the same on every resend of a failed batch: receivers dedupe by it. */
  id: string;
  type: WebhookEventType;
  /** When the change happened, epoch milliseconds. */
  time: number;
  room: string;
  /** user.*: who; room.*: the user whose arrival or departure caused it; message: the sender. */
  user?: WebhookUser;
  /** Presence events: users in the room after the change. */
  count?: number;
  /** Presence events: the room's presence version (orders changes of one room). */
  version?: number;
  /** message: the envelope as the room's clients got it (for private ones, the recipient's copy). */
  envelope?: Envelope;
}

/**
 * A change as it waits in a queue: a presence event or a stored message, numbered by the queue
 * (`n` grows by one per entry) and stamped with the time it happened.
 */
export interface QueuedChange {
  n: number;
  t: number;
  p?: PresenceEvent;
  m?: Delivery;
}

function webhookUser(user: UserInfo | undefined): WebhookUser | undefined {
  if (!user) return undefined;
  const out: WebhookUser = { userId: user.userId, username: user.username };
  if (user.admin) out.admin = true;
  return out;
}

/**
 * The webhook events of one queued change, with ids derived from `id` (so that a resend carries
 * the same ids): a first user in also occupies the room, a last user out vacates it.
 */
export function toWebhookEvents(id: string, change: QueuedChange): WebhookEvent[] {
  const { p, m, t } = change;
  if (p) {
    const user = webhookUser(p.user);
    const room = p.user.room;
    const base = { time: t, room, user, count: p.count, version: p.version };
    if (p.action === Action.Online) {
      const online: WebhookEvent = { id, type: "user.online", ...base };
      return p.count === 1
        ? [{ ...base, id: `${id}-room`, type: "room.occupied" }, online]
        : [online];
    }
    const offline: WebhookEvent = { id, type: "user.offline", ...base };
    return p.count === 0
      ? [offline, { ...base, id: `${id}-room`, type: "room.vacated" }]
      : [offline];
  }
  if (m) {
    const event: WebhookEvent = {
      id,
      type: "message",
      time: t,
      room: m.room,
      envelope: m.envelope,
    };
    const user = webhookUser(m.envelope.data?.content?.userInfo);
    if (user) event.user = user;
    return [event];
  }
  return [];
}

/**
 * Whether a stored message becomes a webhook event: room messages do, and a private message
 * once (its recipient's copy; the sender's copy is the same message).
 */
export function isWebhookMessage(d: Delivery): boolean {
  return d.user === undefined || d.user === d.envelope.data?.content?.to;
}
