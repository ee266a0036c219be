import type { PresenceEvent } from "../presence/presence-store.js";

/** What to do with a presence event for one socket. */
export type Verdict = "deliver" | "held" | "skip" | "overflow";

interface View {
  /** The version the client's view is at: its 201's, then each event's it was given. */
  version: number;
  /** Events held back while the socket's 201 is being built, in arrival order. */
  held?: PresenceEvent[];
}

/**
 * Each local socket's presence view, so that a client gets no 202/203 of its room before its 201
 * and, after it, exactly the events the 201 does not reflect (version > the 201's). Events arrive
 * in version order per room, but not in order with the store's replies (Redis: another
 * connection; IPC: replies resolve promises, whose continuations run after queued events).
 */
export class PresenceViews {
  private readonly views = new Map<string, View>();

  /** @param maxHeld events held for one socket at most; beyond, the socket must start again. */
  constructor(private readonly maxHeld = 10_000) {}

  /**
   * Starts holding back events for a socket whose 201 is about to be read. Returns false when
   * it is already held (a 201 is already being built for it).
   */
  hold(id: string): boolean {
    const view = this.views.get(id);
    if (!view) {
      this.views.set(id, { version: 0, held: [] });
      return true;
    }
    if (view.held) return false;
    view.held = [];
    return true;
  }

  /** Whether the socket has a view that is not held (its 201 was sent). */
  isLive(id: string): boolean {
    const view = this.views.get(id);
    return view !== undefined && view.held === undefined;
  }

  /**
   * The socket's 201 of `version` is being sent (undefined: no 201 could be read, the view stays
   * where it was). Returns the held events it does not reflect, in order, for the caller to send
   * right after it.
   */
  release(id: string, version?: number): PresenceEvent[] {
    const view = this.views.get(id);
    if (!view) return [];
    const held = view.held ?? [];
    view.held = undefined;
    if (version !== undefined) view.version = version;
    const out = held.filter((e) => e.version > view.version);
    if (out.length > 0) view.version = out[out.length - 1].version;
    return out;
  }

  /** An event of the socket's room arrived. */
  offer(id: string, event: PresenceEvent): Verdict {
    const view = this.views.get(id);
    if (!view) return "skip";
    if (view.held) {
      if (view.held.length >= this.maxHeld) {
        this.views.delete(id);
        return "overflow";
      }
      view.held.push(event);
      return "held";
    }
    if (event.version <= view.version) return "skip";
    view.version = event.version;
    return "deliver";
  }

  forget(id: string): void {
    this.views.delete(id);
  }

  get size(): number {
    return this.views.size;
  }
}
