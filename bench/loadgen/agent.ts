/**
 * A load-generator agent: a forked process holding up to ~15,000 Socket.IO connections spoken
 * over raw `ws` (Engine.IO v4 / Socket.IO v5 text frames), driven by the harness over IPC.
 * Kept lean: frames are Buffers, never parsed as JSON; the send time travels in the message text
 * (`bm~<epochMicros>:<tag>~`) and is found with indexOf.
 */
import WebSocket from "ws";
import {
  type AgentCommand,
  type AgentMessage,
  type CollectCommand,
  type ConnectCommand,
  MARK,
  nowMicros,
  type SendCommand,
} from "./messages.js";
import { namespacePrefix, socketIoTarget } from "./target.js";

const MARK_BUF = Buffer.from(MARK);
const ERROR_BUF = Buffer.from('"action":100');
const CODE_RE = /"code":"(E_[A-Z_]+)"/;
const PENDING = 0;
const OPEN = 1;
const CLOSED = 2;

interface Conn {
  ws: WebSocket;
  node: number;
  state: number;
  startedUs: number;
  startedMs: number;
  auth: string;
  /** `` or `/<appId>,`: every packet this socket sends names its namespace. */
  nsp: string;
}

interface Store {
  count: number;
  n: number;
  samples: Uint32Array;
}

const groups = new Map<string, Conn[]>();
/** The room size each group was connected with (connection i is in room ⌊i / size⌋). */
const roomSizes = new Map<string, number>();
let stores = new Map<number, Store>();
let frames = 0;
let serverErrors = 0;
let lastServerError: string | undefined;
const errorCodes: Record<string, number> = {};
let disconnects = 0;
const closeCodes: Record<string, number> = {};
let open = 0;
let lastFrameAtMs = 0;

/** Counts the error code named in a frame or response body (if any). */
function noteCode(text: string): void {
  const code = CODE_RE.exec(text)?.[1];
  if (code) errorCodes[code] = (errorCodes[code] ?? 0) + 1;
}

function reply(msg: AgentMessage): void {
  process.send?.(msg);
}

function record(key: number, latencyUs: number): void {
  let s = stores.get(key);
  if (!s) {
    s = { count: 0, n: 0, samples: new Uint32Array(4096) };
    stores.set(key, s);
  }
  s.count++;
  if (s.n === s.samples.length) {
    const bigger = new Uint32Array(s.samples.length * 2);
    bigger.set(s.samples);
    s.samples = bigger;
  }
  s.samples[s.n++] = Math.min(Math.max(latencyUs, 1), 0xffffffff);
}

function onEvent(conn: Conn, data: Buffer): void {
  frames++;
  lastFrameAtMs = Date.now();
  const at = data.indexOf(MARK_BUF, 2);
  if (at < 0) {
    if (data.indexOf(ERROR_BUF, 2) >= 0) {
      serverErrors++;
      lastServerError = data.toString("utf8", 0, Math.min(data.length, 300));
      noteCode(data.toString("utf8", 0, Math.min(data.length, 2000)));
    }
    return;
  }
  let i = at + MARK_BUF.length;
  let sent = 0;
  let c = data[i];
  while (c >= 48 && c <= 57) {
    sent = sent * 10 + (c - 48);
    c = data[++i];
  }
  if (c !== 58) return; // ':'
  let tag = 0;
  c = data[++i];
  while (c >= 48 && c <= 57) {
    tag = tag * 10 + (c - 48);
    c = data[++i];
  }
  record(tag * 16 + conn.node, nowMicros() - sent);
}

async function connect(cmd: ConnectCommand): Promise<void> {
  const conns: Conn[] = groups.get(cmd.group) ?? [];
  groups.set(cmd.group, conns);
  if (cmd.roomSize) roomSizes.set(cmd.group, cmd.roomSize);
  const handshakeUs: number[] = [];
  const doneAtMs: number[] = [];
  const failedAtMs: number[] = [];
  const reasons: Record<string, number> = {};
  let started = 0;
  let opened = 0;
  let failed = 0;
  let pending = 0;
  const pendingSet = new Set<Conn>();
  // A namespace in a URL's path is the namespace (as socket.io-client reads it), not a path.
  const targets = cmd.urls.map(socketIoTarget);
  const t0 = Date.now();

  await new Promise<void>((resolve) => {
    const overBudget = () => cmd.budgetMs !== undefined && Date.now() - t0 > cmd.budgetMs;
    const finishIfDone = () => {
      if (opened + failed === cmd.count || (overBudget() && opened + failed === started)) {
        clearInterval(ticker);
        clearInterval(sweeper);
        clearInterval(progress);
        resolve();
      }
    };
    const fail = (conn: Conn, reason: string) => {
      if (conn.state !== PENDING) return;
      conn.state = CLOSED;
      pendingSet.delete(conn);
      pending--;
      failed++;
      failedAtMs.push(Date.now());
      reasons[reason] = (reasons[reason] ?? 0) + 1;
      conn.ws.terminate();
      finishIfDone();
    };
    const openOne = (i: number) => {
      const node = i % cmd.urls.length;
      const { engineUrl, namespace } = targets[node];
      const nsp = namespacePrefix(namespace);
      const ws = new WebSocket(engineUrl, {
        localAddress: cmd.localAddresses[i % cmd.localAddresses.length],
        perMessageDeflate: false,
        skipUTF8Validation: true,
        handshakeTimeout: cmd.timeoutMs,
      });
      const conn: Conn = {
        ws,
        node,
        state: PENDING,
        startedUs: nowMicros(),
        startedMs: Date.now(),
        nsp,
        auth: `40${nsp}${JSON.stringify({
          username: `${cmd.usernamePrefix}${i}`,
          room: cmd.roomSize ? `${cmd.room}-${Math.floor(i / cmd.roomSize)}` : cmd.room,
        })}`,
      };
      conns.push(conn);
      pendingSet.add(conn);
      pending++;
      ws.on("message", (data: Buffer) => {
        const b0 = data[0];
        if (b0 === 0x32 && data.length === 1) {
          ws.send("3");
        } else if (b0 === 0x34) {
          const b1 = data[1];
          if (b1 === 0x32) onEvent(conn, data);
          else if (b1 === 0x30 && conn.state === PENDING) {
            conn.state = OPEN;
            pendingSet.delete(conn);
            pending--;
            opened++;
            open++;
            handshakeUs.push(nowMicros() - conn.startedUs);
            doneAtMs.push(Date.now());
            finishIfDone();
          } else if (b1 === 0x34) {
            noteCode(data.toString("utf8", 0, Math.min(data.length, 2000)));
            fail(conn, `connect_error ${data.toString("utf8", 2, Math.min(data.length, 80))}`);
          }
        } else if (b0 === 0x30) {
          ws.send(conn.auth);
        } else if (b0 === 0x31 && conn.state === OPEN) {
          closeCodes.engineClose = (closeCodes.engineClose ?? 0) + 1;
        }
      });
      // A refused upgrade (429/503/403 from the admission guards): name its code.
      ws.on("unexpected-response", (req, res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          if (body.length < 2000) body += chunk;
        });
        const done = () => {
          noteCode(body);
          const code = CODE_RE.exec(body)?.[1];
          const why = /"message":"([^"]{0,60})/.exec(body)?.[1];
          fail(conn, `HTTP ${res.statusCode}${code ? ` ${code}` : ""}${why ? ` ${why}` : ""}`);
          req.destroy();
        };
        res.on("end", done);
        res.on("error", done);
        res.on("aborted", done);
      });
      ws.on("error", (err: Error & { code?: string }) => {
        fail(conn, err.code ?? err.message);
      });
      ws.on("close", (code: number) => {
        if (conn.state === PENDING) fail(conn, `closed before connect (${code})`);
        else if (conn.state === OPEN) {
          conn.state = CLOSED;
          open--;
          disconnects++;
          closeCodes[code] = (closeCodes[code] ?? 0) + 1;
        }
      });
    };
    const ticker = setInterval(() => {
      if (overBudget()) return finishIfDone();
      const due = Math.min(cmd.count, Math.floor(((Date.now() - t0) * cmd.rate) / 1000) + 1);
      while (started < due && pending < cmd.maxPending) openOne(started++);
    }, 5);
    const sweeper = setInterval(() => {
      const now = Date.now();
      for (const conn of pendingSet) {
        if (now - conn.startedMs > cmd.timeoutMs) fail(conn, "timeout");
      }
    }, 250);
    const progress = setInterval(() => {
      reply({ type: "progress", group: cmd.group, opened, failed, pending });
    }, 1000);
    if (cmd.count === 0) finishIfDone();
  });
  reply({
    type: "connected",
    id: cmd.id,
    opened,
    failed,
    notStarted: cmd.count - started,
    handshakeUs: Uint32Array.from(handshakeUs),
    doneAtMs: Float64Array.from(doneAtMs),
    failedAtMs: Float64Array.from(failedAtMs),
    reasons,
    elapsedMs: Date.now() - t0,
  });
}

async function send(cmd: SendCommand): Promise<void> {
  const groupNames = cmd.groups ?? [cmd.group];
  const every = Math.max(1, cmd.every ?? 1);
  const stride = cmd.stride ?? 0;
  // Rooms of a group connected with `roomSize` (one group only): deliveries each message should reach.
  const all = groups.get(cmd.group) ?? [];
  const roomSize = cmd.groups ? undefined : roomSizes.get(cmd.group);
  /** A group's senders: every `every`-th connection; with `stride`, one per room before a second. */
  const pick = (list: Conn[]) => {
    const order: number[] = [];
    for (let i = 0; i < list.length; i += every) order.push(i);
    if (stride > 0) order.sort((x, y) => (x % stride) - (y % stride) || x - y);
    const out: { c: Conn; i: number }[] = [];
    for (const i of order) {
      if (out.length >= Math.max(1, cmd.senders)) break;
      if (list[i].state === OPEN) out.push({ c: list[i], i });
    }
    return out;
  };
  // Each group's senders, interleaved (g0 s0, g1 s0, …, g0 s1, …): every group its share.
  const perGroup = groupNames.map((g) => pick(groups.get(g) ?? []));
  const senders: Conn[] = [];
  const senderIndex: number[] = [];
  const groupOf: number[] = [];
  for (let j = 0; j < Math.max(0, ...perGroup.map((l) => l.length)); j++) {
    perGroup.forEach((l, g) => {
      if (j < l.length) {
        senders.push(l[j].c);
        senderIndex.push(l[j].i);
        groupOf.push(g);
      }
    });
  }
  const sentByGroup = perGroup.map(() => 0);
  /** Open connections in the room of connection i (its group's rooms of `roomSize`). */
  const reach = (i: number) => {
    if (!roomSize) return 0;
    const first = Math.floor(i / roomSize) * roomSize;
    let n = 0;
    for (let k = first; k < Math.min(all.length, first + roomSize); k++) {
      if (all[k].state === OPEN) n++;
    }
    return n;
  };
  let roomReach = 0;
  const sentByNode: number[] = [];
  let sent = 0;
  const pad = "x".repeat(cmd.pad);
  const t0 = Date.now();
  if (senders.length > 0 && cmd.rate > 0) {
    await new Promise<void>((resolve) => {
      const tick = () => {
        const elapsed = Date.now() - t0;
        const due = Math.floor((Math.min(elapsed, cmd.durationMs) * cmd.rate) / 1000);
        while (sent < due) {
          const k = sent % senders.length;
          const conn = senders[k];
          sent++;
          if (conn.state !== OPEN) continue;
          sentByNode[conn.node] = (sentByNode[conn.node] ?? 0) + 1;
          if (roomSize) roomReach += reach(senderIndex[k]);
          sentByGroup[groupOf[k]]++;
          const tag = cmd.tag * 16 + conn.node;
          conn.ws.send(
            `42${conn.nsp}["message",{"type":"text","content":{"message":"${MARK}${nowMicros()}:${tag}~${pad}"}}]`,
          );
        }
        if (elapsed >= cmd.durationMs) {
          clearInterval(timer);
          resolve();
        }
      };
      const timer = setInterval(tick, 2);
    });
  }
  const delivered = sentByNode.reduce((a, b) => a + (b ?? 0), 0);
  reply({
    type: "sent",
    id: cmd.id,
    sent: delivered,
    sentByNode: Array.from(sentByNode, (v) => v ?? 0),
    ...(roomSize ? { roomReach } : {}),
    sentByGroup,
    elapsedMs: Date.now() - t0,
  });
}

function collect(cmd: CollectCommand): void {
  const deliveries: Record<string, { count: number; samples?: Uint32Array }> = {};
  for (const [key, s] of stores) {
    deliveries[`${Math.floor(key / 16)}:${key % 16}`] = {
      count: s.count,
      samples: cmd.samples ? s.samples.slice(0, s.n) : undefined,
    };
  }
  reply({
    type: "collected",
    id: cmd.id,
    deliveries,
    frames,
    serverErrors,
    lastServerError,
    errorCodes,
    disconnects,
    closeCodes,
    open,
    lastFrameAtMs,
  });
  if (cmd.reset) {
    stores = new Map();
    frames = 0;
    serverErrors = 0;
    lastServerError = undefined;
  }
}

function close(id: number, group?: string): void {
  let closed = 0;
  for (const [name, conns] of groups) {
    if (group !== undefined && name !== group) continue;
    for (const conn of conns) {
      if (conn.state === OPEN) {
        open--;
        closed++;
      }
      conn.state = CLOSED;
      conn.ws.terminate();
    }
    groups.delete(name);
    roomSizes.delete(name);
  }
  reply({ type: "closed", id, closed });
}

process.on("message", (cmd: AgentCommand) => {
  const run = async () => {
    switch (cmd.type) {
      case "connect":
        return connect(cmd);
      case "send":
        return send(cmd);
      case "collect":
        return collect(cmd);
      case "close":
        return close(cmd.id, cmd.group);
    }
  };
  run().catch((err: Error) =>
    reply({ type: "error", id: cmd.id, message: err.stack ?? String(err) }),
  );
});
process.on("disconnect", () => process.exit(0));
