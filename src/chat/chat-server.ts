import { randomBytes } from "node:crypto";
import { scopeUser } from "../apps/app-scope.js";
import type { Authenticator } from "../auth/authenticate.js";
import type { Delivery, HistoryStore } from "../history/history-store.js";
import type { FloodGuard } from "../limits/flood-guard.js";
import type { Logger } from "../log/logger.js";
import {
  appended,
  errors,
  handshakeDone,
  handshakes,
  messagesReceived,
} from "../metrics/metrics.js";
import type { PresenceEvent, PresenceStore } from "../presence/presence-store.js";
import { ChatError } from "./chat-error.js";
import type { ChatIo, ChatNamespace, ChatSocket } from "./chat-io.js";
import { envelope, errorEnvelope } from "./envelope.js";
import { BAD_FRAME_EVENT, onFrameRefusal } from "./guarded-parser.js";
import { MessageIds } from "./message-ids.js";
import { PresenceViews } from "./presence-views.js";
import type { Ack, Envelope, UserInfo } from "./protocol.js";
import { Action } from "./protocol.js";
import { type Resume, RoomFeed } from "./room-feed.js";
import { anyRoomKey, roomKey, userKey } from "./rooms.js";
import {
  type CheckedMessage,
  type MessageLimits,
  type Recipient,
  validateMessage,
} from "./validate-message.js";

export type { ChatIo, ChatNamespace, ChatSocket };

export interface ChatServerOptions extends MessageLimits {
  /** Rooms above this many users: no 202/203, connect-time 201 cut (0 = no limit). */
  presenceLimit: number;
  /** The app's namespace: its rooms, sockets and middlewares. */
  nsp: ChatNamespace;
  /** The app's id (`default` for the namespace `/`): keys of per-user limits, metrics labels. */
  app: string;
  /** Most users in one room (0 = no limit): a handshake into a full room gets E_ROOM_FULL. */
  maxRoomSize: number;
  presence: PresenceStore;
  auth: Authenticator;
  /** Most users in one onlineList reply; bigger rooms are paged. */
  listPageSize: number;
  /** Every chat message goes through it: numbered, kept, delivered in order. */
  history: HistoryStore;
  /** Messages kept per room: the most a `since` replay holds. */
  historySize: number;
  /** Last messages replayed to a new connection without `since` (0 = none). */
  historyOnJoin: number;
  /** Rate limits on what each connection sends (none in unit setups). */
  guard?: FloodGuard;
  /** Names this process in the presence store: `<nodeId>/<pid>`. */
  owner: string;
  logger: Logger;
}

/** Longest a drain waits for a handshake in the middlewares; older ones were refused. */
const HANDSHAKE_WAIT_MS = 3000;
/** Tracked handshakes before the old ones are purged (refusals by later middlewares linger). */
const MAX_TRACKED_HANDSHAKES = 1000;

/** How long a drain waits for the moved clients' transports to close. */
const DRAIN_FLUSH_MS = 3000;

const KNOWN_EVENTS = new Set(["message", "info", "onlineList"]);

/** The chat application: handshake, presence announcements and the client events. */
export class ChatServer {
  private readonly ids: MessageIds;
  private readonly feed: RoomFeed;
  private readonly log: Logger;
  private draining = false;
  /** Whether server-side closes leave their users to the primary's reaping (see drain). */
  private handOver = false;
  private readonly pendingLeaves = new Set<Promise<void>>();
  private readonly settingUp = new Set<Promise<void>>();
  /**
   * Handshakes inside the namespace's middlewares, by socket id, with their start: a drain waits
   * for them (io.close() would cut them before their 200). One a later middleware refused stays
   * until it is old enough to ignore and purge.
   */
  private readonly handshaking = new Map<string, number>();
  /** Sockets whose handshake (200, 201) is complete. */
  private readonly setUp = new WeakSet<ChatSocket>();
  private drainNotice = "";
  /** Each local client's presence view: what it was told, what is held until its 201. */
  private readonly views = new PresenceViews();

  constructor(private readonly opts: ChatServerOptions) {
    // A random tag per process: unique across nodes without coordination.
    this.ids = new MessageIds(randomBytes(5).toString("hex"));
    this.feed = new RoomFeed({
      nsp: opts.nsp,
      history: opts.history,
      historyOnJoin: opts.historyOnJoin,
      replayLimit: opts.historySize,
      logger: opts.logger,
    });
    this.log = opts.logger.child({ component: "chat" });
    const { nsp } = opts;
    nsp.use((socket, next) => {
      this.noteHandshake(socket.id);
      // Read at each handshake: an apps reload replaces the app's authenticator.
      this.opts.auth
        .authenticate(socket.handshake.auth)
        .then(async (identity) => {
          await refuseFdAsUserId(this.opts.presence, identity.room, identity.userId);
          await this.refuseFullRoom(identity.room, identity.userId);
          return identity;
        })
        .then(
          (identity) => {
            socket.data.user = {
              fd: socket.id,
              userId: identity.userId,
              username: identity.username,
              room: identity.room,
            };
            if (identity.admin) socket.data.user.admin = true;
            next();
          },
          (err: unknown) => {
            const e =
              err instanceof ChatError ? err : new ChatError("E_INTERNAL", "authentication failed");
            const refusal = new Error(e.message) as Error & { data: unknown };
            refusal.data = { code: e.code, message: e.message };
            handshakes.inc({ result: e.code, app: this.opts.app });
            this.handshaking.delete(socket.id);
            next(refusal);
          },
        );
    });
    nsp.on("connection", (socket) => {
      const setup = this.onConnection(socket).catch((err) => this.fail(socket, err));
      this.settingUp.add(setup);
      setup.finally(() => this.settingUp.delete(setup));
    });
  }

  /**
   * An apps reload changed this app: new handshakes and messages use the new secrets and limits
   * (connections already in keep the rate limits they were admitted with).
   */
  reconfigure(next: Partial<Omit<ChatServerOptions, "nsp" | "app">>): void {
    Object.assign(this.opts, next);
    this.feed.reconfigure({
      historyOnJoin: this.opts.historyOnJoin,
      replayLimit: this.opts.historySize,
    });
  }

  /** Refuses a handshake into a room that is full, unless the user is in it already (a tab). */
  private async refuseFullRoom(room: string, userId: string): Promise<void> {
    const max = this.opts.maxRoomSize;
    if (max <= 0) return;
    if ((await this.opts.presence.count(room)) < max) return;
    if (await this.opts.presence.find(room, userId).then((u) => u?.userId === userId)) return;
    throw new ChatError("E_ROOM_FULL", `room ${room} has ${max} users, its most`);
  }

  /**
   * The app was removed: its clients are told (100 with E_UNKNOWN_APP) and disconnected (they do
   * not reconnect by themselves), and its presence entries removed as they go.
   */
  closeApp(message: string): void {
    // Not a drain: the app may be added back by a later reload, and its new clients stay.
    const out = errorEnvelope("E_UNKNOWN_APP", message);
    for (const socket of this.opts.nsp.sockets.values()) {
      socket.emit("message", out);
      setImmediate(() => socket.disconnect(true));
    }
  }

  /**
   * Delivers a presence change to this worker's clients of the room (each worker gets each one):
   * held back for a client whose 201 is being built, dropped for a client whose 201 (or an
   * earlier event) already reflects it (version), never sent to the user's own connections.
   */
  deliverPresence(event: PresenceEvent): void {
    const { action, user, count, version } = event;
    // In a room this big every join would cost a message to everyone: clients ask onlineList.
    const limit = this.opts.presenceLimit;
    if (limit > 0 && (action === Action.Online ? count : count + 1) > limit) return;
    const { nsp } = this.opts;
    const ids = nsp.adapter.rooms.get(roomKey(user.room));
    if (!ids) return;
    const message = `${user.username} ${action === Action.Online ? "joined" : "left"}`;
    // Encoded once for all its recipients (a broadcast to their socket ids), not once per member.
    const to: string[] = [];
    for (const id of ids) {
      const verdict = this.views.offer(id, event);
      const socket = nsp.sockets.get(id);
      if (!socket) continue;
      if (verdict === "deliver" && socket.data.user.userId !== user.userId) {
        to.push(id);
      } else if (verdict === "overflow") {
        // Its 201 took too long in a busy room: it reconnects and gets a fresh one.
        socket.conn.close();
      }
    }
    if (to.length > 0) {
      const out = envelope(action, "state", { userInfo: user, message, version });
      nsp.local.to(to).emit("message", out);
    }
  }

  /**
   * Pushes a fresh 201 to this worker's clients, one list per room (after a Redis outage: events
   * may have been lost). Each client's events are held while its list is read, as on connect.
   */
  async refreshLists(): Promise<void> {
    const { nsp } = this.opts;
    const rooms = [...nsp.adapter.rooms.entries()].filter(([r]) => r.startsWith(roomKey("")));
    for (const [key, members] of rooms) {
      // Clients still waiting for their connect-time 201 get that one.
      const ids = [...members].filter((id) => this.views.isLive(id) && this.views.hold(id));
      if (ids.length === 0) continue;
      let content: Envelope["data"]["content"] | undefined;
      try {
        content = await this.listContent(key.slice(roomKey("").length));
      } finally {
        for (const id of ids) {
          const socket = nsp.sockets.get(id);
          if (socket && content) this.sendList(socket, content);
          else this.views.release(id);
        }
      }
    }
  }

  /**
   * A 201's content: the room's users, cut to --presence-limit with `total` in a big room, and
   * the room's presence version (read with the list, atomically).
   */
  private async listContent(room: string): Promise<Envelope["data"]["content"]> {
    const { presence, presenceLimit: limit } = this.opts;
    const { userList, total, version } = await presence.snapshot(
      room,
      limit > 0 ? limit : undefined,
    );
    return total > userList.length ? { userList, total, version } : { userList, version };
  }

  /**
   * Sends a 201 (its version in content.version), then the events held back meanwhile that it
   * does not reflect. From then on the client gets every change after that version, in order.
   */
  private sendList(socket: ChatSocket, content: Envelope["data"]["content"]): void {
    socket.emit("message", envelope(Action.UserList, "state", content));
    const self = socket.data.user.userId;
    for (const event of this.views.release(socket.id, content.version)) {
      if (event.user.userId === self) continue;
      const { action, user, version } = event;
      const message = `${user.username} ${action === Action.Online ? "joined" : "left"}`;
      socket.emit("message", envelope(action, "state", { userInfo: user, message, version }));
    }
  }

  /**
   * Sends every client a notice, then closes their transports so they reconnect elsewhere
   * (socket.io-client does not reconnect after "io server disconnect"). With `graceMs` > 0 their
   * users are handed over, not removed: the primary reaps this process's entries after the grace
   * (Redis mode: they expire), so that clients moving to another worker or node do not flap
   * offline and online. Resolves when every connection's presence has been settled.
   */
  async drain(notice: string, graceMs: number): Promise<void> {
    this.draining = true;
    this.handOver = graceMs > 0;
    this.drainNotice = notice;
    for (const socket of this.opts.nsp.sockets.values()) {
      // A client whose handshake is half done would lose its 201: onConnection closes it after.
      if (this.setUp.has(socket)) this.moveAway(socket);
    }
    await new Promise<void>((resolve) => setImmediate(resolve));
    // Handshakes still in the middlewares (ban check, connection slots) become connections, set
    // up and then moved away, rather than being cut before their 200.
    while (this.handshakesInFlight()) await new Promise<void>((r) => setTimeout(r, 10));
    while (this.settingUp.size > 0 || this.pendingLeaves.size > 0) {
      await Promise.allSettled([...this.settingUp, ...this.pendingLeaves]);
    }
    // A polling client gets its notice with its next request, and its transport closes after it:
    // let them go before the server closes (nothing else waits here now that leaves are handed
    // over), but not for ever.
    const deadline = Date.now() + DRAIN_FLUSH_MS;
    while (this.opts.nsp.sockets.size > 0 && Date.now() < deadline) {
      await new Promise<void>((resolve) => setTimeout(resolve, 20));
    }
  }

  /** Tells a client the server is going, then closes its transport so that it reconnects. */
  private moveAway(socket: ChatSocket): void {
    socket.emit("message", envelope(Action.Server, "state", { message: this.drainNotice }));
    // Let the notice flush before the transport goes.
    setImmediate(() => socket.conn.close());
  }

  private noteHandshake(id: string): void {
    if (this.handshaking.size >= MAX_TRACKED_HANDSHAKES) {
      const old = Date.now() - HANDSHAKE_WAIT_MS;
      for (const [k, t] of this.handshaking) if (t < old) this.handshaking.delete(k);
    }
    this.handshaking.set(id, Date.now());
  }

  /** Whether a handshake that began less than HANDSHAKE_WAIT_MS ago is still in the middlewares. */
  private handshakesInFlight(): boolean {
    const recent = Date.now() - HANDSHAKE_WAIT_MS;
    for (const t of this.handshaking.values()) if (t >= recent) return true;
    return false;
  }

  private async onConnection(socket: ChatSocket): Promise<void> {
    this.handshaking.delete(socket.id);
    const user = socket.data.user;
    const { presence } = this.opts;
    socket.emit("message", envelope(Action.UserInfo, "state", { userInfo: user }));
    socket.join([roomKey(user.room), userKey(user.room, user.userId), anyRoomKey(user.userId)]);
    // Live messages wait until this client's replay is done (in the same tick as the join).
    this.feed.hold(socket);
    socket.on("disconnect", (reason) => this.onDisconnect(socket, reason));
    // Before any other middleware: nothing a client sends escapes the limits.
    this.opts.guard?.attach(socket, scopeUser(this.opts.app, user.userId));
    this.bindEvents(socket);
    // 202 for the others comes from the store's event stream (see deliverPresence). This
    // client's events are held from now until its 201 is sent, then filtered by its version.
    this.views.hold(socket.id);
    // Sent together: both stores run calls in order, so the list already holds this join, and the
    // handshake costs one round trip instead of two.
    const [, content] = await Promise.all([
      presence.join({ ...user, owner: this.opts.owner }),
      this.listContent(user.room),
    ]);
    this.sendList(socket, content);
    handshakeDone(socket.handshake.issued, this.opts.app);
    await this.feed.replay(socket, resumeOf(socket.handshake.auth));
    this.setUp.add(socket);
    if (this.draining) this.moveAway(socket);
  }

  private onDisconnect(socket: ChatSocket, reason: string): void {
    this.views.forget(socket.id);
    const user = socket.data.user;
    if (!user) return;
    const serverSide = this.draining || reason === "server shutting down";
    // Handed over: the entry stays until the primary reaps this process's owner after the grace
    // (or, in Redis mode, its liveness expires), so a client back by then causes no 203/202.
    if (serverSide && this.handOver) return;
    // 203, when it was the user's last connection, comes from the store's event stream.
    const run = this.opts.presence.leave(socket.id).then(
      () => {},
      (err: unknown) => {
        this.log.error("presence leave failed", { fd: socket.id, err: String(err) });
      },
    );
    this.pendingLeaves.add(run);
    run.finally(() => this.pendingLeaves.delete(run));
  }

  private bindEvents(socket: ChatSocket): void {
    const user = socket.data.user;
    socket.on("message", (payload: unknown, ack?: unknown) => {
      // Success is acknowledged only when asked: the sender already gets the broadcast.
      this.onMessage(socket, payload).then(
        (reply) => typeof ack === "function" && (ack as Ack)(reply),
        (err) => this.reply(socket, ack, err),
      );
    });
    socket.on("info", (ack?: unknown) => {
      respond(socket, ack, envelope(Action.UserInfo, "state", { userInfo: user }));
    });
    socket.on("onlineList", (request?: unknown, ack?: unknown) => {
      // onlineList(ack) as before, or onlineList({ cursor, limit }, ack) for the next page.
      const [page, reply] = typeof request === "function" ? [undefined, request] : [request, ack];
      this.listPage(user.room, page).then(
        (content) => respond(socket, reply, envelope(Action.UserList, "state", content)),
        (err) => this.reply(socket, reply, err),
      );
    });
    // Packets the frame guard refused (guarded-parser.ts): answered, and counted as refusals.
    onFrameRefusal(socket, (reason, ack) => {
      if (this.opts.guard) this.opts.guard.refuse(socket, ack, "E_BAD_FRAME", reason);
      else this.reply(socket, ack, new ChatError("E_BAD_FRAME", reason));
    });
    // A middleware rather than onAny: onAny listeners run before middlewares, so unknown events
    // would escape the rate limits.
    socket.use((packet, next) => {
      const [event] = packet;
      if (typeof event === "string" && (KNOWN_EVENTS.has(event) || event === BAD_FRAME_EVENT)) {
        next();
        return;
      }
      this.reply(
        socket,
        packet[packet.length - 1],
        new ChatError(
          "E_UNKNOWN_EVENT",
          `unknown event ${JSON.stringify(String(event).slice(0, 64))}; use message, info or onlineList`,
        ),
      );
    });
  }

  /**
   * One page of a room's online list: at most --list-page-size users from `cursor` (an offset);
   * `total` and `next` say when there is more. Pages of a room that changes meanwhile may skip
   * or repeat a user at their edges; 202/203 keep the view exact.
   */
  private async listPage(room: string, request: unknown): Promise<Envelope["data"]["content"]> {
    const { presence, listPageSize } = this.opts;
    const r = (typeof request === "object" && request !== null ? request : {}) as {
      cursor?: unknown;
      limit?: unknown;
    };
    const cursor = r.cursor === undefined ? 0 : Number(r.cursor);
    const asked = r.limit === undefined ? listPageSize : Number(r.limit);
    if (!Number.isSafeInteger(cursor) || cursor < 0 || !Number.isSafeInteger(asked) || asked < 1) {
      throw new ChatError(
        "E_BAD_PAYLOAD",
        "onlineList takes { cursor?: integer >= 0, limit?: integer >= 1 }",
      );
    }
    const limit = Math.min(asked, listPageSize);
    const users = await presence.list(room, limit + 1, cursor);
    if (users.length <= limit) {
      return cursor === 0 ? { userList: users } : { userList: users, total: cursor + users.length };
    }
    const userList = users.slice(0, limit);
    return { userList, total: await presence.count(room), next: cursor + limit };
  }

  /** Returns the envelope to acknowledge the sender with (the sender also receives broadcasts). */
  private async onMessage(socket: ChatSocket, payload: unknown): Promise<Envelope> {
    return this.deliver(
      socket.data.user,
      validateMessage(payload, this.opts),
      socket.data.user.admin === true,
    );
  }

  /**
   * A message from a backend (the HTTP push API): delivered as if sent by `from` (default: a
   * `system` user), which has no connection of its own. Backends may send notices.
   */
  push(
    room: string,
    msg: CheckedMessage,
    from?: { userId: string; username: string },
  ): Promise<Envelope> {
    if (msg.type === "state") throw new ChatError("E_BAD_TYPE", "a push is text or img");
    const sender: UserInfo = {
      fd: "",
      userId: from?.userId ?? "system",
      username: from?.username ?? "system",
      room,
    };
    return this.deliver(sender, msg, true);
  }

  private async deliver(
    sender: UserInfo,
    msg: CheckedMessage,
    mayNotice: boolean,
  ): Promise<Envelope> {
    const { nsp, presence } = this.opts;
    messagesReceived.inc({ type: msg.type, app: this.opts.app });
    const room = sender.room;
    let target: UserInfo | undefined;
    if (msg.to !== undefined) {
      target = await findRecipient(presence, room, msg.to);
      if (!target) {
        throw new ChatError("E_NO_RECIPIENT", `no user ${JSON.stringify(msg.to)} in room ${room}`);
      }
    }
    // A pushed message has no sender connection to include or leave out.
    const senderKey = sender.fd ? userKey(room, sender.userId) : undefined;
    if (msg.type === "state") {
      const out = envelope(Action.OtherUser, "state", {
        message: msg.content.message,
        userInfo: sender,
      });
      const to = nsp.to(target ? userKey(room, target.userId) : roomKey(room));
      (senderKey ? to.except(senderKey) : to).emit("message", out);
      return out;
    }
    if (msg.notice && !mayNotice) {
      throw new ChatError("E_FORBIDDEN", "only admins can send notices");
    }
    const now = Date.now();
    const content: Envelope["data"]["content"] = { message: msg.content.message, userInfo: sender };
    if (target) content.to = target.userId;
    const out = envelope(msg.notice ? Action.Admin : Action.Message, msg.type, content, now);
    out.id = this.ids.next(now);
    out.ts = now;
    if (target) out.private = true;
    if (msg.cid !== undefined) out.cid = msg.cid;
    // Delivered by the store's stream (see deliverMessage), in the store's order, once stored:
    // the ack promises it reaches every member and every client reconnecting with `since`.
    const started = performance.now();
    try {
      const stored = await this.opts.history.append({
        room,
        envelope: out,
        // The recipient first, the sender last (its copy is the ack); a backend has no inbox.
        inboxes: target
          ? senderKey
            ? [target.userId, sender.userId]
            : [target.userId]
          : undefined,
        dedupe: msg.cid === undefined ? undefined : { userId: sender.userId, cid: msg.cid },
      });
      appended(started, true);
      return stored.envelope;
    } catch (err) {
      appended(started, false);
      this.log.warn("message not stored", { room, err: String(err) });
      throw new ChatError(
        "E_UNAVAILABLE",
        "the message could not be stored (history unreachable) and was delivered to nobody; retry",
      );
    }
  }

  /** A stored message from the store's stream, for this worker's clients. */
  deliverMessage(delivery: Delivery): void {
    this.feed.deliver(delivery);
  }

  /** After the store's stream was down: local rooms fetch the messages they missed. */
  catchUpMessages(): Promise<void> {
    return this.feed.catchUp();
  }

  private reply(socket: ChatSocket, ack: unknown, err: unknown): void {
    if (!(err instanceof ChatError)) {
      this.log.error("handler failed", { fd: socket.id, err: String(err) });
    }
    const e =
      err instanceof ChatError ? err : new ChatError("E_INTERNAL", "internal error, try again");
    errors.inc({ code: e.code });
    respond(socket, ack, errorEnvelope(e.code, e.message));
  }

  private fail(socket: ChatSocket, err: unknown): void {
    this.log.error("connection setup failed", { fd: socket.id, err: String(err) });
    errors.inc({ code: "E_INTERNAL" });
    socket.emit("message", errorEnvelope("E_INTERNAL", "presence is unavailable, reconnecting"));
    // Close the transport, not the socket: the client reconnects by itself.
    socket.conn.close();
  }
}

/** The reply goes to the ack callback when the client gave one, else it is pushed as "message". */
function respond(socket: ChatSocket, ack: unknown, reply: Envelope): void {
  if (typeof ack === "function") (ack as Ack)(reply);
  else socket.emit("message", reply);
}

/** Socket.IO's socket ids (base64id: 15 random bytes, base64url): what an fd looks like. */
const FD_SHAPE = /^[A-Za-z0-9_-]{20}$/;

/**
 * Refuses a userId that is the fd of a live connection of the room: messages sent `to` that fd
 * would reach the claimant. Only fd-shaped userIds cost a lookup.
 */
async function refuseFdAsUserId(presence: PresenceStore, room: string, userId: string) {
  if (!FD_SHAPE.test(userId)) return;
  const found = await presence.find(room, userId);
  if (found && found.userId !== userId) {
    throw new ChatError("E_RESERVED_NAME", "userId is the fd of another connection");
  }
}

/**
 * The user a private message is for. The stores match a userId before an fd, so the kind of
 * match is read from the answer: a userId match returns that userId. `{ fd }` ignores userId
 * matches (a stale fd someone later took as userId reaches nobody), `{ userId }` ignores fd
 * matches; a string takes either, and since no userId equals a live fd, an fd wins.
 */
async function findRecipient(
  presence: PresenceStore,
  room: string,
  to: Recipient,
): Promise<UserInfo | undefined> {
  const [id, by] =
    typeof to === "string" ? [to, "any"] : "fd" in to ? [to.fd, "fd"] : [to.userId, "userId"];
  const found = await presence.find(room, id);
  if (!found) return undefined;
  const byUserId = found.userId === id;
  if ((by === "fd" && byUserId) || (by === "userId" && !byUserId)) return undefined;
  return found;
}

/** Where a reconnecting client resumes (`auth.since`, `auth.sincePrivate`), checked at handshake. */
function resumeOf(auth: unknown): Resume {
  const a = (typeof auth === "object" && auth !== null ? auth : {}) as Record<string, unknown>;
  return { since: sequence(a.since), sincePrivate: sequence(a.sincePrivate) };
}

/** A seq a client gives: undefined when absent; bad values were refused at handshake. */
function sequence(value: unknown): number | undefined {
  const n = typeof value === "string" && value.trim() !== "" ? Number(value) : value;
  return typeof n === "number" && Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}
