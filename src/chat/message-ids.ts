/**
 * Chat message ids: `<epoch ms, 13 digits>-<6 base-36 sequence digits>-<process tag>`.
 * Unique without a shared counter (local delivery must not wait for Redis), and increasing per
 * process; across processes they sort by send time.
 */
export class MessageIds {
  private lastMs = 0;
  private seq = 0;

  constructor(private readonly tag: string) {}

  next(now: number): string {
    if (now === this.lastMs) {
      this.seq++;
    } else {
      this.lastMs = now;
      this.seq = 0;
    }
    return `${String(now).padStart(13, "0")}-${this.seq.toString(36).padStart(6, "0")}-${this.tag}`;
  }
}
