/**
 * A few real socket.io-client connections per scenario that check the payloads are right
 * (the raw load generator only looks for its timestamp marker).
 */
import { io, type Socket } from "socket.io-client";
import { Action, type Envelope } from "../../src/chat/protocol.js";
import { MARK } from "../loadgen/messages.js";
import { socketIoTarget } from "../loadgen/target.js";
import { isWeigot, type SystemName } from "./systems.js";

export class Checker {
  readonly socket: Socket;
  readonly problems: string[] = [];
  problemCount = 0;
  /** Bench chat messages received and checked. */
  messages = 0;
  /** Reconnection attempts (socket.io-client retries a connect that got no answer). */
  reconnects = 0;
  /** Envelopes per action (weigot-ws). */
  readonly actions: Record<number, number> = {};
  /** Oddities that are not wrong as such (e.g. a 202 between the 200 and the 201). */
  readonly notes: string[] = [];
  private seen: number[] = [];

  constructor(
    readonly system: SystemName,
    url: string,
    readonly username: string,
    readonly room: string,
  ) {
    this.socket = io(url, {
      transports: ["websocket"],
      auth: { username, room },
      forceNew: true,
      // socket.io-client's defaults: a lost connect answer (the baseline's sticky race) is retried
      timeout: 20_000,
    });
    this.socket.io.on("reconnect_attempt", () => {
      this.reconnects++;
    });
    this.socket.on("message", (payload: unknown) => this.check(payload));
  }

  private problem(what: string, payload: unknown): void {
    this.problemCount++;
    if (this.problems.length < 5) {
      this.problems.push(`${this.username}: ${what}: ${JSON.stringify(payload).slice(0, 300)}`);
    }
  }

  private check(payload: unknown): void {
    if (this.system === "baseline") {
      const p = payload as { type?: unknown; content?: { message?: unknown } };
      const text = p?.content?.message;
      if (p?.type !== "text" || typeof text !== "string" || !text.startsWith(MARK)) {
        this.problem("unexpected broadcast", payload);
      } else this.messages++;
      return;
    }
    const env = payload as Envelope;
    if (!env || typeof env.action !== "number" || !env.data || typeof env.endTime !== "string") {
      this.problem("not an envelope", payload);
      return;
    }
    this.actions[env.action] = (this.actions[env.action] ?? 0) + 1;
    if (!this.seen.includes(Action.UserList)) this.seen.push(env.action);
    const content = env.data.content ?? {};
    switch (env.action) {
      case Action.UserInfo:
        if (content.userInfo?.username !== this.username || content.userInfo?.room !== this.room) {
          this.problem("200 without this user's details", payload);
        }
        break;
      case Action.UserList:
        // a room over --presence-limit gets a 201 cut to its first users (with `total`): the
        // newcomer need not be among them
        if (
          !(content.total !== undefined && content.total > (content.userList?.length ?? 0)) &&
          !content.userList?.some((u) => u.username === this.username)
        ) {
          this.problem("201 without this user in the list", payload);
        }
        break;
      case Action.Online:
      case Action.Offline:
        if (typeof content.userInfo?.username !== "string") {
          this.problem(`${env.action} without userInfo`, payload);
        }
        break;
      case Action.Message: {
        const text = content.message;
        if (typeof text !== "string" || !text.startsWith(MARK)) break;
        this.messages++;
        if (
          env.data.type !== "text" ||
          typeof content.userInfo?.username !== "string" ||
          content.userInfo.room !== this.room ||
          typeof env.id !== "string" ||
          typeof env.ts !== "number" ||
          env.sendTime !== env.endTime
        ) {
          this.problem("300 envelope incomplete", payload);
        }
        break;
      }
      case Action.Server:
        this.problem("server notice", payload);
        break;
    }
  }

  /** Resolves once connected (and, for weigot-ws, once 200 and 201 arrived in that order). */
  async ready(timeoutMs = 90_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const gotList = this.seen.includes(Action.UserList);
      if (this.socket.connected && (this.system === "baseline" || gotList)) {
        if (isWeigot(this.system)) {
          const between = this.seen.slice(1, -1);
          if (this.seen[0] !== Action.UserInfo || between.some((a) => a !== 202 && a !== 203)) {
            this.problem(
              `first envelopes were ${this.seen.join(", ")}, expected 200 then 201`,
              null,
            );
          } else if (between.length > 0) {
            this.notes.push(
              `${this.username}: got ${between.join(", ")} between its 200 and its 201 (another user's presence)`,
            );
          }
        }
        return;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(
      `checker ${this.username} did not connect (and get 200, 201) in ${timeoutMs} ms`,
    );
  }

  close(): void {
    this.socket.io.reconnection(false);
    this.socket.disconnect();
  }
}

/**
 * Starts one checker per URL (an Engine.IO URL, or `http://host:port/<namespace>`: see
 * loadgen/target.ts) and waits until they are connected.
 */
export async function startCheckers(
  system: SystemName,
  urls: string[],
  room: string,
  prefix: string,
): Promise<Checker[]> {
  const checkers: Checker[] = [];
  for (const [i, url] of urls.entries()) {
    const c = new Checker(system, socketIoTarget(url).clientUrl, `${prefix}${i}`, room);
    checkers.push(c);
    await c.ready();
  }
  return checkers;
}

/** Oddities noted by the checkers (not errors). */
export function checkerNotes(checkers: Checker[]): string[] {
  return checkers.flatMap((c) => [
    ...c.notes,
    ...(c.reconnects > 0 ? [`${c.username}: ${c.reconnects} reconnection attempt(s)`] : []),
  ]);
}

/** Problems seen by the checkers, as a list of messages. */
export function checkerProblems(checkers: Checker[]): string[] {
  return checkers.flatMap((c) =>
    c.problemCount > 0 ? [`${c.problemCount} payload problem(s): ${c.problems.join(" | ")}`] : [],
  );
}
