import type { Envelope } from "../../src/chat/protocol.js";
import type { ChatClient } from "./chat-client.js";

/**
 * A client's online list built the way the README tells clients to: from each connection's 201,
 * ignoring 202/203 before it and those whose version is not above the list's, applying the rest.
 * Counts what would break a client that trusts the events: events before the 201, events without
 * a version, and applied events that contradict the view (a 202 for someone listed, a 203 for
 * someone not listed).
 */
export class PresenceView {
  readonly users = new Set<string>();
  /** null from a connection's 200 until its 201. */
  version: number | null = null;
  early = 0;
  stale = 0;
  unversioned = 0;
  contradictions: string[] = [];
  /** userId → 202/203 received (applied or not) after a 201, for storm counts. */
  readonly changes = new Map<string, number[]>();

  constructor(readonly client: ChatClient) {
    client.socket.on("message", (env: Envelope) => this.apply(env));
  }

  private apply(env: Envelope): void {
    const content = env.data?.content ?? {};
    if (env.action === 200) {
      this.version = null;
      return;
    }
    if (env.action === 201) {
      this.users.clear();
      for (const u of content.userList ?? []) this.users.add(u.userId);
      this.version = content.version ?? Number.NaN;
      if (typeof content.version !== "number") this.unversioned++;
      return;
    }
    if (env.action !== 202 && env.action !== 203) return;
    const userId = content.userInfo?.userId ?? "";
    if (this.version === null) {
      this.early++;
      return;
    }
    this.changes.set(userId, [...(this.changes.get(userId) ?? []), env.action]);
    if (typeof content.version !== "number") {
      this.unversioned++;
      return;
    }
    if (content.version <= this.version) {
      this.stale++;
      return;
    }
    this.version = content.version;
    const listed = this.users.has(userId);
    if (env.action === 202) {
      if (listed) this.contradictions.push(`202 ${userId} already listed (v${content.version})`);
      this.users.add(userId);
    } else {
      if (!listed) this.contradictions.push(`203 ${userId} not listed (v${content.version})`);
      this.users.delete(userId);
    }
  }

  /** The view, sorted, plus the client's own user (it gets no events about itself). */
  sorted(self: string): string[] {
    return [...new Set([...this.users, self])].sort();
  }

  /** 202/203 received for users in `ids` since the last reset. */
  changesFor(ids: Iterable<string>): number {
    let n = 0;
    for (const id of ids) n += this.changes.get(id)?.length ?? 0;
    return n;
  }

  resetChanges(): void {
    this.changes.clear();
  }
}
