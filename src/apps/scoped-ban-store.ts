import type { Ban, BanStore } from "../admin/ban-store.js";
import { scopeUser, unscopeUser } from "./app-scope.js";

/** One app's bans in the service's ban store: a userId banned in one app is free in another. */
export class ScopedBanStore implements BanStore {
  constructor(
    private readonly inner: BanStore,
    private readonly app: string,
  ) {}

  private plain(ban: Ban): Ban {
    return { ...ban, userId: unscopeUser(ban.userId).userId };
  }

  async ban(userId: string, seconds: number, reason: string): Promise<Ban> {
    return this.plain(await this.inner.ban(scopeUser(this.app, userId), seconds, reason));
  }

  lift(userId: string): Promise<boolean> {
    return this.inner.lift(scopeUser(this.app, userId));
  }

  async get(userId: string): Promise<Ban | undefined> {
    const ban = await this.inner.get(scopeUser(this.app, userId));
    return ban && this.plain(ban);
  }

  async list(): Promise<Ban[]> {
    return (await this.inner.list())
      .filter((b) => unscopeUser(b.userId).app === this.app)
      .map((b) => this.plain(b));
  }
}
