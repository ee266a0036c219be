/**
 * A Socket.IO parser (the Server's `parser` option) that checks every packet a client sends
 * before socket.io dispatches it. socket.io applies a packet's arguments to its listeners in a
 * process.nextTick, outside any try/catch: one `42["message",1,1,…]` with 50,000 arguments
 * overflowed the stack there and ended the worker. Junk that socket.io-parser throws on made
 * socket.io close the connection without a word.
 *
 * Here a packet is refused when its shape could hurt (too many arguments, too deep or too big a
 * payload, odd ack ids, event names, attachment counts, packet types a client may not send) or
 * when it cannot be decoded. A refused packet never reaches a handler; it becomes a substitute
 * EVENT `BAD_FRAME_EVENT` carrying a FrameRefusal (and the packet's ack id when it had a valid
 * one), which the chat server answers with E_BAD_FRAME. A refused CONNECT carries a refusal in
 * its auth, turned into a coded connect_error by `refuseBadHandshakes`.
 */
import { EventEmitter } from "node:events";
import type { Namespace, Server, Socket } from "socket.io";
import { Decoder as BaseDecoder, Encoder, type Packet, PacketType } from "socket.io-parser";

/** The event a refused packet is replaced with. A client sending it itself gets E_BAD_FRAME. */
export const BAD_FRAME_EVENT = "wws:bad-frame";

/** What a substitute BAD_FRAME_EVENT carries (JSON cannot produce one: a client cannot forge it). */
export class FrameRefusal {
  constructor(
    /** Why the packet was refused, for the client. */
    readonly reason: string,
    /** Refusals dropped without a reply before this one (over refusalRepliesPerBatch). */
    readonly dropped = 0,
  ) {}
}

export interface FrameLimits {
  /** Arguments after the event name (the protocol uses one payload; the ack id is not one). */
  maxArgs: number;
  /** Characters of an event name. */
  maxEventNameLength: number;
  /** Nesting of a packet's data (the argument array is level 1). */
  maxDepth: number;
  /** Values in a packet's data, all levels (an array or object counts, and each member). */
  maxNodes: number;
  /** Binary attachments of one packet. */
  maxAttachments: number;
  /**
   * Refusals answered per batch of frames read at once (one polling POST may hold thousands);
   * more are dropped unanswered and counted in the next reply. Sustained floods are the rate
   * limiter's (it counts refusals).
   */
  refusalRepliesPerBatch: number;
  /**
   * Packets (and attachments) taken per batch of frames read at once: one 1.4 MB polling POST
   * holds 127,000 `42["info"]`, each a promise chain and a reply (measured: 0.5 GB of heap in
   * the worker). The excess is refused; the rate limits refuse far fewer anyway.
   */
  maxPacketsPerBatch: number;
}

export const DEFAULT_FRAME_LIMITS: FrameLimits = {
  maxArgs: 4,
  maxEventNameLength: 64,
  maxDepth: 16,
  maxNodes: 1000,
  maxAttachments: 2,
  refusalRepliesPerBatch: 20,
  maxPacketsPerBatch: 256,
};

/** The main namespace: the default app's, and where refusals go when no other fits. */
const NSP = "/";

/** Where a binary placeholder sits, to put the attachment there once it has arrived. */
interface Slot {
  parent: Record<string, unknown> | unknown[];
  key: string | number;
  num: number;
}

/** Thrown by the checks: the reason is for the client. */
class Refused extends Error {}

/**
 * Walks `data` iteratively (no recursion to overflow) and checks depth and size. With
 * `attachments`, collects the binary placeholders and checks their indexes.
 */
function checkTree(data: unknown, limits: FrameLimits, attachments = 0): Slot[] {
  const slots: Slot[] = [];
  const stack: [unknown, number][] = [[data, 1]];
  // Counted when seen, before anything is walked or allocated for them.
  let nodes = 1;
  const tooMany = () => new Refused(`more than ${limits.maxNodes} values`);
  while (stack.length > 0) {
    const [value, depth] = stack.pop() as [unknown, number];
    if (typeof value !== "object" || value === null) continue;
    if (depth > limits.maxDepth) throw new Refused(`nested deeper than ${limits.maxDepth}`);
    const visit = (key: string | number, child: unknown) => {
      if (++nodes > limits.maxNodes) throw tooMany();
      const c = child as { _placeholder?: unknown; num?: unknown } | null;
      if (attachments > 0 && typeof c === "object" && c !== null && c._placeholder === true) {
        const num = c.num;
        if (typeof num !== "number" || !Number.isInteger(num) || num < 0 || num >= attachments)
          throw new Refused("a binary placeholder names no attachment");
        slots.push({ parent: value as Slot["parent"], key, num });
        return;
      }
      stack.push([child, depth + 1]);
    };
    if (Array.isArray(value)) {
      if (nodes + value.length > limits.maxNodes) throw tooMany();
      for (let i = 0; i < value.length; i++) visit(i, value[i]);
    } else {
      // JSON objects: own enumerable keys only.
      for (const key in value) visit(key, (value as Record<string, unknown>)[key]);
    }
  }
  return slots;
}

const isAckId = (id: unknown): id is number => Number.isSafeInteger(id) && (id as number) >= 0;

/** Checks a decoded packet; returns the slots of its binary placeholders. */
function checkPacket(p: Packet, limits: FrameLimits): Slot[] {
  switch (p.type) {
    case PacketType.CONNECT:
      if (p.data !== undefined) checkTree(p.data, limits);
      return [];
    case PacketType.DISCONNECT:
      return [];
    case PacketType.EVENT:
    case PacketType.BINARY_EVENT:
    case PacketType.ACK:
    case PacketType.BINARY_ACK:
      break;
    default:
      throw new Refused(`a client may not send packet type ${p.type}`);
  }
  const isEvent = p.type === PacketType.EVENT || p.type === PacketType.BINARY_EVENT;
  if (p.id !== undefined && !isAckId(p.id)) throw new Refused("bad ack id");
  if (!isEvent && p.id === undefined) throw new Refused("an ack without an id");
  const data = p.data as unknown[];
  if (!Array.isArray(data)) throw new Refused("an event or ack without its data array");
  if (isEvent) {
    const name = data[0];
    if (typeof name !== "string" || name.length === 0 || name.length > limits.maxEventNameLength)
      throw new Refused(
        `the event name must be a string of 1-${limits.maxEventNameLength} characters`,
      );
    if (data.length - 1 > limits.maxArgs)
      throw new Refused(`more than ${limits.maxArgs} arguments`);
  } else if (data.length > limits.maxArgs) {
    throw new Refused(`more than ${limits.maxArgs} arguments`);
  }
  const binary = p.type === PacketType.BINARY_EVENT || p.type === PacketType.BINARY_ACK;
  return checkTree(data, limits, binary ? (p.attachments ?? 0) : 0);
}

/**
 * The header of a frame socket.io-parser could not decode: its packet type, attachment count and
 * ack id, as far as they can be read (`<type>[<n>-][/<nsp>,][<id>]…`).
 */
function readHeader(frame: string): {
  type: number;
  attachments: number;
  id?: number;
  nsp?: string;
} {
  const type = frame.charCodeAt(0) - 48;
  let i = 1;
  let attachments = 0;
  if (type === PacketType.BINARY_EVENT || type === PacketType.BINARY_ACK) {
    const m = /^(\d{1,15})-/.exec(frame.slice(1, 18));
    if (m) {
      attachments = Number(m[1]);
      i += m[0].length;
    }
  }
  let nsp: string | undefined;
  if (frame[i] === "/") {
    const comma = frame.indexOf(",", i);
    nsp = frame.slice(i, comma === -1 ? Math.min(frame.length, i + 100) : Math.min(comma, i + 100));
    i = comma === -1 ? frame.length : comma + 1;
  }
  const digits = /^\d{1,16}/.exec(frame.slice(i, i + 16))?.[0];
  const id = digits === undefined ? undefined : Number(digits);
  return { type, attachments, id: isAckId(id) ? id : undefined, nsp };
}

const isBinaryData = (obj: unknown) => obj instanceof ArrayBuffer || ArrayBuffer.isView(obj);

/** Marks a refused CONNECT's auth (a symbol: no JSON auth can carry it). */
const REFUSED_AUTH = Symbol("refused handshake");

/**
 * A Decoder as socket.io's Client uses it (`add`, `destroy`, "decoded" events), with
 * socket.io-parser doing the decoding and the checks above deciding what is emitted.
 */
export class GuardedDecoder extends EventEmitter {
  private readonly base = new BaseDecoder() as unknown as { decodeString(s: string): Packet };
  private pending: { packet: Packet; slots: Slot[]; buffers: unknown[] } | undefined;
  /** Attachments still to come of a refused binary packet: dropped without a word. */
  private discard = 0;
  private repliesInBatch = 0;
  private packetsInBatch = 0;
  private batchEnds = false;
  private dropped = 0;
  /** What the current `add` emits once its checks are done. */
  private out: Packet[] = [];
  /** The connection's sockets by namespace, once connected (see refuseBadHandshakes). */
  private readonly sockets = new Map<string, { connected: boolean }>();

  constructor(private readonly limits: FrameLimits = DEFAULT_FRAME_LIMITS) {
    super();
  }

  add(obj: unknown): void {
    const out: Packet[] = [];
    this.out = out;
    try {
      this.startBatch();
      if (++this.packetsInBatch > this.limits.maxPacketsPerBatch) {
        // Not even decoded: the point is to do (almost) nothing for these.
        this.pending = undefined;
        this.refuse(`more than ${this.limits.maxPacketsPerBatch} packets at once`);
      } else if (typeof obj === "string") this.addString(obj);
      else if (isBinaryData(obj)) this.addBinary(obj);
      else this.refuse("data of an unknown kind");
    } catch {
      // A slip in the checks must not become socket.io's silent close (it catches what add
      // throws).
      this.refuse("a packet that could not be checked");
    }
    // Emitted after the checks, outside the try: what socket.io's listeners throw stays theirs.
    for (const packet of out) this.emit("decoded", packet);
  }

  destroy(): void {
    this.pending = undefined;
    this.sockets.clear();
  }

  /** Tells the decoder a socket of the connection: a CONNECT while it is connected is refused. */
  bind(nsp: string, socket: { connected: boolean }): void {
    this.sockets.set(nsp, socket);
  }

  private connectedTo(nsp: string): boolean {
    return this.sockets.get(nsp)?.connected === true;
  }

  /**
   * Where a refusal of a packet for `nsp` is answered: that namespace when the client is
   * connected to it, else one it is connected to (socket.io closes a connection that gets a
   * packet for a namespace it has no socket on), else nowhere.
   */
  private replyNsp(nsp: string | undefined): string | undefined {
    if (nsp !== undefined && this.connectedTo(nsp)) return nsp;
    if (this.connectedTo(NSP)) return NSP;
    for (const [name, socket] of this.sockets) if (socket.connected) return name;
    return undefined;
  }

  private addString(frame: string): void {
    if (this.pending) {
      const { id, type } = this.pending.packet;
      this.pending = undefined;
      this.refuse("a binary packet's attachments are missing", type, id);
    }
    this.discard = 0;
    let packet: Packet;
    try {
      packet = this.base.decodeString(frame);
    } catch {
      const header = readHeader(frame);
      if (header.type === PacketType.CONNECT && this.connectedTo(header.nsp ?? NSP)) {
        this.refuse("already connected", undefined, undefined, header.nsp);
      } else if (header.type === PacketType.CONNECT) {
        this.refuseConnect("a malformed handshake", header.nsp);
      } else {
        this.discard = header.attachments;
        this.refuse("a malformed packet", header.type, header.id, header.nsp);
      }
      return;
    }
    if (packet.type === PacketType.CONNECT && this.connectedTo(packet.nsp)) {
      // socket.io would close the connection ("invalid state").
      this.refuse("already connected", undefined, undefined, packet.nsp);
      return;
    }
    let slots: Slot[];
    try {
      slots = checkPacket(packet, this.limits);
    } catch (err) {
      if (!(err instanceof Refused)) throw err;
      if (packet.type === PacketType.CONNECT) {
        this.refuseConnect(err.message, packet.nsp);
      } else {
        this.discard = packet.attachments ?? 0;
        this.refuse(err.message, packet.type, packet.id, packet.nsp);
      }
      return;
    }
    const attachments = packet.attachments ?? 0;
    let refusal: string | undefined;
    if (attachments > this.limits.maxAttachments) {
      refusal = `more than ${this.limits.maxAttachments} attachments`;
    } else if (packet.type !== PacketType.CONNECT && !this.connectedTo(packet.nsp)) {
      // socket.io would close the connection: this client has no socket on that namespace.
      refusal = `not connected to namespace ${packet.nsp.slice(0, 64)}`;
    }
    if (refusal !== undefined) {
      this.discard = attachments;
      this.refuse(refusal, packet.type, packet.id, packet.nsp);
    } else if (attachments > 0) {
      this.pending = { packet, slots, buffers: [] };
    } else {
      this.out.push(packet);
    }
  }

  private addBinary(data: unknown): void {
    if (this.discard > 0) {
      this.discard--;
      return;
    }
    const pending = this.pending;
    if (!pending) {
      this.refuse("binary data outside a binary packet");
      return;
    }
    pending.buffers.push(data);
    if (pending.buffers.length < (pending.packet.attachments ?? 0)) return;
    this.pending = undefined;
    const { packet, slots, buffers } = pending;
    for (const { parent, key, num } of slots) {
      (parent as Record<string, unknown>)[key] = buffers[num];
    }
    packet.type = packet.type === PacketType.BINARY_EVENT ? PacketType.EVENT : PacketType.ACK;
    delete packet.attachments;
    this.out.push(packet);
  }

  /** Queues the substitute event: with the ack id only if the refused packet asked for one. */
  private refuse(reason: string, type?: number, id?: number, nsp?: string): void {
    const to = this.replyNsp(nsp);
    if (++this.repliesInBatch > this.limits.refusalRepliesPerBatch || to === undefined) {
      this.dropped++;
      return;
    }
    // An ack id is the refused packet's only on its own namespace.
    const asksAck = (type === PacketType.EVENT || type === PacketType.BINARY_EVENT) && to === nsp;
    const substitute: Packet = {
      type: PacketType.EVENT,
      nsp: to,
      data: [BAD_FRAME_EVENT, new FrameRefusal(reason, this.dropped)],
    };
    if (asksAck && isAckId(id)) substitute.id = id;
    this.dropped = 0;
    this.out.push(substitute);
  }

  /**
   * Counts from the first packet of a batch: what was read in one go has been handed over by the
   * time immediates run.
   */
  private startBatch(): void {
    if (this.batchEnds) return;
    this.batchEnds = true;
    setImmediate(() => {
      this.batchEnds = false;
      this.repliesInBatch = 0;
      this.packetsInBatch = 0;
    });
  }

  /** A CONNECT goes on (socket.io answers it), its auth replaced by the refusal. */
  private refuseConnect(reason: string, nsp = NSP): void {
    this.out.push({ type: PacketType.CONNECT, nsp, data: { [REFUSED_AUTH]: reason } });
  }
}

/**
 * socket.io-parser's Encoder, with one change: socket.io's own refusal of a namespace nobody
 * serves ("Invalid namespace") becomes the service's coded E_UNKNOWN_APP, as clients of an app
 * that does not exist should see it.
 */
export class GuardedEncoder extends Encoder {
  override encode(obj: Packet): ReturnType<Encoder["encode"]> {
    const data = obj.data as { message?: unknown; data?: unknown } | undefined;
    if (
      obj.type === PacketType.CONNECT_ERROR &&
      data?.message === "Invalid namespace" &&
      data.data === undefined
    ) {
      const message = `no app ${JSON.stringify(obj.nsp.slice(1, 65))} on this service`;
      return super.encode({ ...obj, data: { message, data: { code: "E_UNKNOWN_APP", message } } });
    }
    return super.encode(obj);
  }
}

/** The Server `parser` option: the guarded encoder and decoder. */
export const guardedParser = { Encoder: GuardedEncoder, Decoder: GuardedDecoder };

/**
 * The first connection middleware: a refused handshake gets a connect_error whose data is
 * `{ code: "E_BAD_FRAME", message }`, like the chat server's own refusals. Also tells each
 * connection's decoder its socket once connected.
 */
export function refuseBadHandshakes(io: Server | Namespace): void {
  const name = "name" in io ? io.name : NSP;
  io.on("connection", (socket) => {
    // socket.io keeps the decoder private; without it a second CONNECT closes the connection.
    const decoder = (socket.client as unknown as { decoder?: unknown }).decoder;
    if (decoder instanceof GuardedDecoder) decoder.bind(name, socket);
  });
  io.use((socket, next) => {
    const reason = (socket.handshake.auth as { [REFUSED_AUTH]?: string })[REFUSED_AUTH];
    if (reason === undefined) return next();
    const err = new Error(reason) as Error & { data: unknown };
    err.data = { code: "E_BAD_FRAME", message: reason };
    next(err);
  });
}

/**
 * Listens for refused packets on a socket (socket.io's typed events do not know the substitute
 * event). `ack` is the refused packet's ack callback when it had one. A client emitting
 * BAD_FRAME_EVENT itself lands here too.
 */
export function onFrameRefusal(
  // biome-ignore lint/suspicious/noExplicitAny: any typed Socket
  socket: Socket<any, any, any, any>,
  handler: (reason: string, ack: unknown) => void,
): void {
  (socket as unknown as EventEmitter).on(BAD_FRAME_EVENT, (...args: unknown[]) => {
    const refusal = args[0];
    const last = args[args.length - 1];
    let reason = `the event name ${BAD_FRAME_EVENT} is reserved`;
    if (refusal instanceof FrameRefusal) {
      reason = refusal.reason;
      if (refusal.dropped > 0) reason += ` (and ${refusal.dropped} earlier bad frames unanswered)`;
    }
    handler(reason, typeof last === "function" ? last : undefined);
  });
}

/** For socket.use middlewares (the rate limiter): whether an incoming event is a refused packet. */
export function frameRefusalOf(event: unknown[]): FrameRefusal | undefined {
  return event[0] === BAD_FRAME_EVENT && event[1] instanceof FrameRefusal ? event[1] : undefined;
}
