// weigot-ws browser chat. Plain script, no build step: loaded after socket.io/socket.io.min.js,
// which the service's Socket.IO server serves itself. The wire protocol is src/chat/protocol.ts.
//
// Every URL is relative to the page's directory, so the page works at http://host:9601/ as well
// as behind a proxy at a sub-path (http://host:8080/ws/ → the service's /).
//
// Safety: text from the network only ever reaches the DOM through textContent or element
// properties (img.src after the scheme check), never innerHTML.

/** Server action codes: src/chat/protocol.ts `Action`. */
const Action = {
  Server: 100,
  Admin: 101,
  OtherUser: 102,
  UserInfo: 200,
  UserList: 201,
  Online: 202,
  Offline: 203,
  Message: 300,
};

/** Send "typing" at most this often while the user types. */
const TYPING_SEND_INTERVAL_MS = 2000;
/** Hide someone's typing indicator after this long without a new one. */
const TYPING_SHOW_MS = 3000;
/** Largest picked file when the service does not say its limit (its default is 1,000,000 bytes
 * of data URL, and base64 grows a file by 4/3). */
const DEFAULT_FILE_LIMIT_BYTES = 700 * 1024;
const ERROR_HIDE_MS = 10_000;
const ACK_TIMEOUT_MS = 10_000;
const MAX_NOTICES = 5;
const MAX_MESSAGES = 500;
const IMAGE_MIME_TYPES = ["image/png", "image/jpeg", "image/gif", "image/webp"];
const DATA_IMAGE_URL = /^data:image\/(png|jpeg|gif|webp)[;,]/i;

/** The directory of this page: "/" at the service's root, "/ws/" behind a proxy at /ws/. */
const basePath = location.pathname.replace(/[^/]*$/, "");

/**
 * The app (project) this page chats in: `?app=<id>` connects to the namespace `/<id>`; without
 * it, the service's default app (`/`).
 */
const APP_ID = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const appParam = new URLSearchParams(location.search).get("app");
const appId = appParam && APP_ID.test(appParam) ? appParam : "";

/** What the service may tell us through config.json (all optional). */
const config = {
  authRequired: false,
  /** 0 = unknown: only the service checks. */
  maxImageBytes: 0,
  /** 0 = unknown: only the service checks. */
  maxMessageLength: 0,
  transports: undefined,
};

const state = {
  /** The live socket, null when not joined. */
  socket: null,
  /** Our own UserInfo (action 200). */
  me: null,
  room: "",
  /** Users in the room when the 201 was cut to the presence limit (else 0). */
  total: 0,
  /** userId → UserInfo: the room's online list (201, then 202/203). */
  users: new Map(),
  /**
   * The presence version the list is at: null from a connection's 200 until its 201 (202/203
   * before it are ignored), then the 201's, then each applied 202/203's. An event whose version
   * is not greater is already in the list.
   */
  listVersion: null,
  /** UserInfo of the private-message recipient, or null for the room. */
  target: null,
  /** ids of rendered chat messages, so a message seen twice (push and ack) shows once. */
  seenIds: new Set(),
  /** The highest room seq and private pseq received: sent as since/sincePrivate on reconnect. */
  lastSeq: 0,
  lastPseq: 0,
  /** userId → { username, timer } of users typing now. */
  typing: new Map(),
  lastTypingSent: 0,
  tokenRequired: false,
  errorTimer: 0,
};

const byTestId = (id) => document.querySelector(`[data-testid="${id}"]`);
const el = {
  connState: byTestId("conn-state"),
  roomName: byTestId("room-name"),
  appName: byTestId("app-name"),
  leave: byTestId("leave"),
  errorBanner: byTestId("error-banner"),
  openModeBanner: byTestId("open-mode-banner"),
  errorText: byTestId("error-text"),
  errorClose: byTestId("error-close"),
  joinForm: byTestId("join-form"),
  joinUsername: byTestId("join-username"),
  joinRoom: byTestId("join-room"),
  joinToken: byTestId("join-token"),
  joinSubmit: byTestId("join-submit"),
  tokenField: document.querySelector(".token-field"),
  tokenHint: document.querySelector(".token-hint"),
  chat: byTestId("chat"),
  userCount: byTestId("user-count"),
  userList: byTestId("user-list"),
  notices: byTestId("notices"),
  messages: byTestId("messages"),
  typing: byTestId("typing-indicator"),
  composer: byTestId("composer"),
  privateTarget: byTestId("private-target"),
  privateCancel: byTestId("private-cancel"),
  input: byTestId("composer-input"),
  imageUrl: byTestId("image-url-input"),
  imageUrlSend: byTestId("image-url-send"),
  imageFile: byTestId("image-file-input"),
};

// ---------------------------------------------------------------------------------------------
// Small helpers

function make(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** "connected" | "reconnecting" | "disconnected": the text of [data-testid=conn-state]. */
function setConnState(value) {
  el.connState.textContent = value;
  el.connState.dataset.state = value;
}

/** Shows an error: a string or the protocol's { code, message }. */
function showError(error) {
  const text =
    typeof error === "string" ? error : `${error?.message || "Error"} (${error?.code || "?"})`;
  el.errorText.textContent = text;
  el.errorBanner.dataset.code = typeof error === "string" ? "" : String(error?.code || "");
  el.errorBanner.hidden = false;
  clearTimeout(state.errorTimer);
  state.errorTimer = setTimeout(hideError, ERROR_HIDE_MS);
}

function hideError() {
  clearTimeout(state.errorTimer);
  el.errorBanner.hidden = true;
}

function isSafeImageUrl(value) {
  if (typeof value !== "string") return false;
  if (DATA_IMAGE_URL.test(value)) return true;
  try {
    const url = new URL(value);
    return url.protocol === "http:" || url.protocol === "https:";
  } catch {
    return false;
  }
}

/** Local "HH:MM" of a chat message, from ts (epoch ms) or endTime ("YYYY-MM-DD HH:mm:ss"). */
function messageTime(envelope) {
  if (typeof envelope.ts === "number") {
    const date = new Date(envelope.ts);
    return {
      short: date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }),
      full: date.toLocaleString(),
      iso: date.toISOString(),
    };
  }
  const text = String(envelope.endTime || envelope.sendTime || "");
  return { short: text.slice(11, 16) || text, full: text, iso: "" };
}

function userName(userId) {
  return state.users.get(userId)?.username || userId || "someone";
}

function isMe(userId) {
  return state.me !== null && userId === state.me.userId;
}

/** Keeps the stream pinned to the newest message, unless the reader scrolled up. */
function nearBottom(list) {
  return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
}

// ---------------------------------------------------------------------------------------------
// Rendering

function renderUsers() {
  const users = [...state.users.values()].sort((a, b) => {
    if (isMe(a.userId) !== isMe(b.userId)) return isMe(a.userId) ? -1 : 1;
    return String(a.username).localeCompare(String(b.username));
  });
  const items = users.map((user) => {
    const li = make("li", "user-item");
    li.dataset.testid = "user-item";
    li.dataset.userId = user.userId;
    li.dataset.self = String(isMe(user.userId));
    const button = make("button", "user-button");
    button.type = "button";
    button.append(make("span", "user-name", user.username));
    if (isMe(user.userId)) {
      button.append(make("span", "badge", "you"));
      button.disabled = true;
    } else {
      button.title = `Write privately to ${user.username}`;
      button.setAttribute("aria-pressed", String(state.target?.userId === user.userId));
      button.addEventListener("click", () => setTarget(user));
    }
    if (user.admin) button.append(make("span", "badge admin", "admin"));
    li.append(button);
    return li;
  });
  el.userList.replaceChildren(...items);
  el.userCount.textContent =
    state.total > users.length ? `${users.length} of ${state.total}` : String(users.length);
}

function renderTarget() {
  const target = state.target;
  el.privateTarget.dataset.private = String(target !== null);
  if (target) {
    el.privateTarget.textContent = `Private to ${target.username}`;
    el.privateTarget.dataset.userId = target.userId;
    el.input.placeholder = `Private message to ${target.username}…`;
  } else {
    el.privateTarget.textContent = `To everyone in #${state.room}`;
    delete el.privateTarget.dataset.userId;
    el.input.placeholder = "Write a message…";
  }
  el.privateCancel.hidden = target === null;
  el.composer.classList.toggle("private", target !== null);
}

function setTarget(user) {
  state.target = user;
  renderTarget();
  renderUsers();
  el.input.focus();
}

function renderTyping() {
  const names = [...state.typing.values()].map((entry) => entry.username);
  el.typing.hidden = names.length === 0;
  if (names.length === 0) el.typing.textContent = "";
  else if (names.length === 1) el.typing.textContent = `${names[0]} is typing…`;
  else if (names.length === 2) el.typing.textContent = `${names[0]} and ${names[1]} are typing…`;
  else el.typing.textContent = `${names.length} people are typing…`;
}

function stopTyping(userId) {
  const entry = state.typing.get(userId);
  if (!entry) return;
  clearTimeout(entry.timer);
  state.typing.delete(userId);
  renderTyping();
}

function clearTyping() {
  for (const entry of state.typing.values()) clearTimeout(entry.timer);
  state.typing.clear();
  renderTyping();
}

function appendToStream(li) {
  const pinned = nearBottom(el.messages);
  el.messages.append(li);
  while (el.messages.childElementCount > MAX_MESSAGES) {
    const first = el.messages.firstElementChild;
    if (first.dataset.id) state.seenIds.delete(first.dataset.id);
    first.remove();
  }
  if (pinned) el.messages.scrollTop = el.messages.scrollHeight;
}

/** A line about the room itself (joins, leaves, reconnects): not a chat message. */
function addSystemLine(text) {
  const li = make("li", "system-line", text);
  li.dataset.testid = "system-item";
  appendToStream(li);
}

function renderMessage(envelope) {
  const id = envelope.id === undefined ? "" : String(envelope.id);
  if (id) {
    if (state.seenIds.has(id)) return;
    state.seenIds.add(id);
  }
  const type = envelope.data.type === "img" ? "img" : "text";
  const content = envelope.data.content;
  const from = content.userInfo || {};
  const isPrivate = envelope.private === true;
  const mine = isMe(from.userId);

  const li = make("li", "message-item");
  li.dataset.testid = "message-item";
  li.dataset.type = type;
  li.dataset.private = String(isPrivate);
  li.dataset.from = String(from.userId || "");
  if (id) li.dataset.id = id;
  li.classList.toggle("mine", mine);
  li.classList.toggle("private", isPrivate);

  const meta = make("div", "meta");
  meta.append(make("span", "sender", mine ? `${from.username || "me"} (you)` : from.username));
  if (isPrivate) {
    const label = mine ? `private to ${userName(content.to)}` : "private to you";
    meta.append(make("span", "private-label", label));
  }
  const time = messageTime(envelope);
  const timeNode = make("time", "time", time.short);
  timeNode.title = time.full;
  if (time.iso) timeNode.dateTime = time.iso;
  meta.append(timeNode);

  const body = make("div", "body");
  const text = typeof content.message === "string" ? content.message : "";
  if (type === "img") {
    if (isSafeImageUrl(text)) {
      const img = make("img", "picture");
      img.alt = `Image from ${from.username || "someone"}`;
      img.referrerPolicy = "no-referrer";
      img.decoding = "async";
      img.addEventListener("load", () => {
        if (nearBottom(el.messages) || el.messages.lastElementChild === li) {
          el.messages.scrollTop = el.messages.scrollHeight;
        }
      });
      img.addEventListener("error", () => {
        img.replaceWith(make("span", "refused", "The image could not be loaded."));
      });
      img.addEventListener("click", () => img.classList.toggle("expanded"));
      img.src = text;
      body.append(img);
    } else {
      body.append(make("span", "refused", "Image refused: not an http(s) or image data URL."));
    }
  } else {
    body.textContent = text;
  }
  li.append(meta, body);
  appendToStream(li);
  if (from.userId) stopTyping(from.userId);
}

function addNotice(kind, text, envelope) {
  const li = make("li", `notice ${kind}`);
  li.dataset.testid = "notice-item";
  li.dataset.kind = kind;
  li.append(make("span", "notice-kind", kind === "admin" ? "Admin" : "Server"));
  li.append(make("span", "notice-text", text));
  const time = messageTime(envelope);
  if (time.short) li.append(make("time", "time", time.short));
  const close = make("button", "close", "×");
  close.type = "button";
  close.setAttribute("aria-label", "Dismiss notice");
  close.addEventListener("click", () => li.remove());
  li.append(close);
  el.notices.append(li);
  while (el.notices.childElementCount > MAX_NOTICES) el.notices.firstElementChild.remove();
}

// ---------------------------------------------------------------------------------------------
// Protocol

/**
 * Whether a 202/203 changes our list: none before our 201, none the 201 (or an event applied
 * since) already reflects. Moves the list's version on when it does.
 */
function isNewPresence(content) {
  if (state.listVersion === null) return false;
  if (typeof content.version === "number") {
    if (content.version <= state.listVersion) return false;
    state.listVersion = content.version;
  }
  return true;
}

function onEnvelope(envelope) {
  if (!envelope || typeof envelope !== "object" || !envelope.data) return;
  const content = envelope.data.content || {};
  envelope.data.content = content;
  switch (envelope.action) {
    case Action.UserInfo:
      if (content.userInfo) {
        // A (re)connection starts here: presence events count again from its 201.
        state.listVersion = null;
        state.me = content.userInfo;
        state.room = content.userInfo.room || state.room;
        el.roomName.textContent = `#${state.room}`;
        renderTarget();
        renderUsers();
      }
      break;
    case Action.UserList: {
      // Sent on every (re)connect: it replaces the list, never adds to it.
      state.users = new Map();
      for (const user of content.userList || []) state.users.set(user.userId, user);
      state.listVersion = typeof content.version === "number" ? content.version : 0;
      // A room above the service's presence limit: the list is cut and no 202/203 follow.
      state.total = typeof content.total === "number" ? content.total : 0;
      if (state.target && !state.users.has(state.target.userId)) state.target = null;
      renderTarget();
      renderUsers();
      break;
    }
    case Action.Online: {
      const user = content.userInfo;
      if (!user || !isNewPresence(content)) break;
      const known = state.users.has(user.userId);
      state.users.set(user.userId, user);
      renderUsers();
      if (!known && !isMe(user.userId)) addSystemLine(content.message || `${user.username} joined`);
      break;
    }
    case Action.Offline: {
      const user = content.userInfo;
      if (!user || !isNewPresence(content)) break;
      const known = state.users.delete(user.userId);
      stopTyping(user.userId);
      if (state.target?.userId === user.userId) {
        state.target = null;
        renderTarget();
      }
      renderUsers();
      if (known) addSystemLine(content.message || `${user.username} left`);
      break;
    }
    case Action.Message:
      noteSequence(envelope);
      renderMessage(envelope);
      break;
    case Action.OtherUser: {
      const user = content.userInfo;
      if (!user || isMe(user.userId)) break;
      if (content.message === "typing") {
        const previous = state.typing.get(user.userId);
        if (previous) clearTimeout(previous.timer);
        const timer = setTimeout(() => stopTyping(user.userId), TYPING_SHOW_MS);
        state.typing.set(user.userId, { username: user.username, timer });
        renderTyping();
      } else {
        stopTyping(user.userId);
      }
      break;
    }
    case Action.Server:
      if (content.error) showError(content.error);
      else if (content.message) addNotice("server", content.message, envelope);
      break;
    case Action.Admin:
      noteSequence(envelope);
      if (content.message && !state.seenIds.has(String(envelope.id))) {
        if (envelope.id !== undefined) state.seenIds.add(String(envelope.id));
        addNotice("admin", content.message, envelope);
      }
      break;
    default:
      break;
  }
}

/** Remembers how far this page has read, so that a reconnect asks for the rest (since). */
function noteSequence(envelope) {
  if (Number.isSafeInteger(envelope.seq) && envelope.seq > state.lastSeq)
    state.lastSeq = envelope.seq;
  if (Number.isSafeInteger(envelope.pseq) && envelope.pseq > state.lastPseq) {
    state.lastPseq = envelope.pseq;
  }
}

/** A client message id: the service delivers a message resent with the same one only once. */
function newCid() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** What comes back through an ack: an error envelope, or the message itself. */
function onReply(reply) {
  if (!reply || typeof reply !== "object" || !reply.data) return false;
  const error = reply.data.content?.error;
  if (error) {
    showError(error);
    return false;
  }
  if (reply.action === Action.Message && reply.id !== undefined) onEnvelope(reply);
  return true;
}

/** How long a message is retried (same cid) before the page gives up on it. */
const SEND_RETRY_MS = 120_000;
/** Errors after which a resend can succeed: the message was not stored, nobody got it. */
const RETRYABLE = new Set(["E_UNAVAILABLE", "E_INTERNAL"]);

/**
 * Sends a `message` and resolves true once the service has stored it (its ack). Until then it
 * is resent with the same cid (after a lost ack, a refusal to store it, or while reconnecting):
 * the service delivers it once however many times it arrives.
 */
function sendMessage(type, message) {
  const socket = state.socket;
  if (!socket) {
    showError("Not connected: the message was not sent.");
    return Promise.resolve(false);
  }
  const payload = { type, content: { message }, cid: newCid() };
  // { userId }, not a bare string: a string could also be read as an fd.
  if (state.target) payload.to = { userId: state.target.userId };
  const giveUpAt = Date.now() + SEND_RETRY_MS;
  return new Promise((resolve) => {
    const attempt = () => {
      if (state.socket !== socket) return resolve(false);
      if (Date.now() > giveUpAt) {
        showError("The service did not confirm the message; it was not delivered.");
        return resolve(false);
      }
      if (!socket.connected) {
        socket.once("connect", attempt);
        return;
      }
      socket.timeout(ACK_TIMEOUT_MS).emit("message", payload, (timeoutError, reply) => {
        if (timeoutError) return attempt();
        const error = reply?.data?.content?.error;
        if (error && RETRYABLE.has(error.code)) {
          const wait = Math.min(Math.max(error.retryAfterMs ?? 1000, 500), 10_000);
          setTimeout(attempt, wait);
          return;
        }
        resolve(onReply(reply));
      });
    };
    attempt();
  });
}

function sendTyping() {
  const socket = state.socket;
  const now = Date.now();
  if (!socket?.connected || now - state.lastTypingSent < TYPING_SEND_INTERVAL_MS) return;
  state.lastTypingSent = now;
  const payload = { type: "state", content: { message: "typing" } };
  if (state.target) payload.to = { userId: state.target.userId };
  socket.emit("message", payload);
}

// ---------------------------------------------------------------------------------------------
// Joining, connection state, leaving

function showTokenField() {
  state.tokenRequired = true;
  el.tokenField.hidden = false;
  el.tokenHint.hidden = false;
  el.joinUsername.required = false;
  el.joinUsername.placeholder = "your name (or from the token)";
}

function showJoinForm() {
  el.chat.hidden = true;
  el.joinForm.hidden = false;
  el.leave.hidden = true;
  el.roomName.hidden = true;
  el.joinSubmit.disabled = false;
}

function resetRoomState() {
  state.me = null;
  state.users = new Map();
  state.listVersion = null;
  state.target = null;
  state.seenIds.clear();
  state.lastSeq = 0;
  state.lastPseq = 0;
  state.lastTypingSent = 0;
  clearTyping();
  el.messages.replaceChildren();
  el.notices.replaceChildren();
  renderUsers();
}

function join(username, room, token) {
  const auth = {};
  if (token) auth.token = token;
  if (username) auth.username = username;
  if (room) auth.room = room;

  resetRoomState();
  state.room = room;
  el.roomName.textContent = `#${room}`;
  renderTarget();
  el.joinForm.hidden = true;
  el.chat.hidden = false;
  el.leave.hidden = false;
  el.roomName.hidden = false;
  hideError();

  // An app's namespace on this page's origin (io() alone is the default app's, "/").
  const socket = io(appId ? `/${appId}` : undefined, {
    path: `${basePath}socket.io`,
    // A function: every reconnect tells the service how far this page has read, and gets the
    // messages it missed meanwhile (replayed in order, each once).
    auth: (cb) => {
      const resume = { ...auth };
      if (state.lastSeq > 0) resume.since = state.lastSeq;
      if (state.lastPseq > 0) resume.sincePrivate = state.lastPseq;
      cb(resume);
    },
    forceNew: true,
    reconnectionDelayMax: 10_000,
    ...(config.transports ? { transports: config.transports } : {}),
  });
  state.socket = socket;

  socket.on("connect", () => {
    setConnState("connected");
    el.chat.classList.remove("offline");
  });
  socket.on("disconnect", (reason) => {
    clearTyping();
    el.chat.classList.add("offline");
    if (reason === "io client disconnect") {
      setConnState("disconnected");
    } else if (reason === "io server disconnect") {
      // The service closed this session on purpose; socket.io does not retry by itself.
      setConnState("disconnected");
      showError("The service closed the connection. Leave and join again to reconnect.");
    } else {
      setConnState("reconnecting");
    }
  });
  socket.on("connect_error", (err) => {
    if (socket.active) {
      // A network problem: the manager retries with back-off.
      setConnState("reconnecting");
      return;
    }
    // The service refused the handshake (err.data = { code, message }): no automatic retry.
    const info = err?.data?.code ? err.data : { code: "E_CONNECT", message: err?.message };
    socket.close();
    if (state.socket === socket) state.socket = null;
    setConnState("disconnected");
    showJoinForm();
    if (String(info.code).startsWith("E_AUTH")) {
      showTokenField();
      el.joinToken.focus();
    }
    showError(info);
  });
  socket.on("message", onEnvelope);
  socket.io.on("reconnect_attempt", () => setConnState("reconnecting"));
  socket.io.on("reconnect", () => addSystemLine("Reconnected."));
  socket.io.on("reconnect_failed", () => setConnState("disconnected"));
}

function leave() {
  const socket = state.socket;
  state.socket = null;
  socket?.close();
  setConnState("disconnected");
  resetRoomState();
  showJoinForm();
  el.joinUsername.focus();
}

// ---------------------------------------------------------------------------------------------
// UI events

el.joinForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const username = el.joinUsername.value.trim();
  const room = el.joinRoom.value.trim();
  const token = el.joinToken.value.trim();
  if (state.tokenRequired && !token) {
    showError("This service requires a token.");
    el.joinToken.focus();
    return;
  }
  if (!username && !token) {
    showError("Enter a username.");
    el.joinUsername.focus();
    return;
  }
  if (!room) {
    showError("Enter a room.");
    el.joinRoom.focus();
    return;
  }
  try {
    localStorage.setItem("weigot-ws.username", username);
  } catch {
    // storage may be disabled: remembering the name is only a convenience
  }
  el.joinSubmit.disabled = true;
  join(username, room, token);
});

el.composer.addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = el.input.value;
  if (text.trim() === "") return;
  if (config.maxMessageLength > 0 && text.length > config.maxMessageLength) {
    showError(`The message is too long (at most ${config.maxMessageLength} characters).`);
    return;
  }
  el.input.value = "";
  state.lastTypingSent = 0;
  const ok = await sendMessage("text", text);
  if (!ok && el.input.value === "") el.input.value = text;
  el.input.focus();
});

el.input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    el.composer.requestSubmit();
  } else if (event.key === "Escape" && state.target) {
    setTarget(null);
  }
});

el.input.addEventListener("input", () => {
  if (el.input.value.trim() !== "") sendTyping();
});

el.privateCancel.addEventListener("click", () => setTarget(null));
el.leave.addEventListener("click", leave);
el.errorClose.addEventListener("click", hideError);

function imageBytesLimit() {
  return config.maxImageBytes > 0 ? config.maxImageBytes : Number.POSITIVE_INFINITY;
}

async function sendImageUrl() {
  const url = el.imageUrl.value.trim();
  if (url === "") return;
  if (!isSafeImageUrl(url)) {
    showError("Only http(s) image URLs (or PNG, JPEG, GIF or WebP data URLs) can be sent.");
    return;
  }
  if (url.length > imageBytesLimit()) {
    showError("The image URL is too long.");
    return;
  }
  if (await sendMessage("img", url)) el.imageUrl.value = "";
}

el.imageUrlSend.addEventListener("click", sendImageUrl);
el.imageUrl.addEventListener("keydown", (event) => {
  if (event.key === "Enter") {
    event.preventDefault();
    sendImageUrl();
  }
});

el.imageFile.addEventListener("change", () => {
  const file = el.imageFile.files?.[0];
  el.imageFile.value = "";
  if (!file) return;
  if (!IMAGE_MIME_TYPES.includes(file.type)) {
    showError("Only PNG, JPEG, GIF or WebP images can be sent.");
    return;
  }
  // A data URL is the file in base64 (4/3 of its size) plus a short prefix.
  const fileLimit =
    config.maxImageBytes > 0
      ? Math.floor(((config.maxImageBytes - 40) * 3) / 4)
      : DEFAULT_FILE_LIMIT_BYTES;
  if (file.size > fileLimit) {
    const kb = (bytes) => `${Math.ceil(bytes / 1024)} KB`;
    showError(`The image is too large (${kb(file.size)}; at most ${kb(fileLimit)}).`);
    return;
  }
  const reader = new FileReader();
  reader.addEventListener("load", () => {
    const dataUrl = String(reader.result);
    if (!DATA_IMAGE_URL.test(dataUrl) || dataUrl.length > imageBytesLimit()) {
      showError("The image could not be sent (unsupported or too large).");
      return;
    }
    sendMessage("img", dataUrl);
  });
  reader.addEventListener("error", () => showError("The file could not be read."));
  reader.readAsDataURL(file);
});

// ---------------------------------------------------------------------------------------------
// Start-up

/** Open mode (no --jwt-secret): names are not checked by anyone, so the page says so. */
function showOpenModeBanner() {
  el.openModeBanner.textContent =
    "Development mode: anyone can claim any name; run with --jwt-secret in production.";
  el.openModeBanner.hidden = false;
}

/** Shows which app the page chats in (its name from the service), or that it does not exist. */
function showApp(app) {
  if (!appId) return;
  if (app && typeof app.name === "string") {
    el.appName.textContent = app.name;
    el.appName.title = `app ${appId}`;
    el.appName.hidden = false;
    document.title = `${app.name} · weigot-ws`;
  } else {
    showError({ code: "E_UNKNOWN_APP", message: `There is no app "${appId}" on this service` });
    el.joinSubmit.disabled = true;
  }
}

async function loadConfig() {
  try {
    const query = appId ? `?app=${encodeURIComponent(appId)}` : "";
    const response = await fetch(`config.json${query}`, { cache: "no-store" });
    if (!response.ok) return;
    const body = await response.json();
    showApp(body.app);
    if (body.authRequired === true) showTokenField();
    if (body.open === true) showOpenModeBanner();
    if (Number.isInteger(body.maxImageBytes) && body.maxImageBytes > 0) {
      config.maxImageBytes = body.maxImageBytes;
    }
    if (Number.isInteger(body.maxMessageLength) && body.maxMessageLength > 0) {
      config.maxMessageLength = body.maxMessageLength;
    }
    if (Array.isArray(body.transports) && body.transports.length > 0) {
      config.transports = body.transports;
    }
  } catch {
    // No config.json: the token field appears when the service answers E_AUTH_REQUIRED.
  }
}

function start() {
  setConnState("disconnected");
  const params = new URLSearchParams(location.search);
  const room = params.get("room");
  if (room) el.joinRoom.value = room;
  let username = params.get("username");
  if (!username) {
    try {
      username = localStorage.getItem("weigot-ws.username");
    } catch {
      username = null;
    }
  }
  if (username) el.joinUsername.value = username;
  if (typeof io !== "function") {
    showError("The Socket.IO client (socket.io/socket.io.min.js) could not be loaded.");
    el.joinSubmit.disabled = true;
    return;
  }
  loadConfig();
}

start();
