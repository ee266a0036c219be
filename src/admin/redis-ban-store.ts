import type { RedisCommandClient } from "../presence/redis-presence-store.js";
import type { Ban, BanStore } from "./ban-store.js";

/**
 * Bans shared by every node through Redis: `<prefix>:ban:<userId>` holds the ban with a TTL (what
 * a handshake checks, one GET), `<prefix>:bans` indexes them by expiry for listing. Both change
 * in one script; the index drops expired entries whenever it is read or written.
 */
export class RedisBanStore implements BanStore {
  private readonly base: string;

  /**
   * @param hashTag Redis Cluster: a hash tag put after the prefix (`<prefix>{bans}:ban…`) so
   * that a ban and the index share a slot. @default "" (the key names of one Redis)
   */
  constructor(
    private readonly client: RedisCommandClient,
    prefix: string,
    hashTag = "",
  ) {
    this.base = `${prefix}${hashTag}:ban`;
  }

  async ban(userId: string, seconds: number, reason: string): Promise<Ban> {
    const now = Date.now();
    const ban: Ban = { userId, reason, until: now + seconds * 1000 };
    await this.eval(BAN, [userId, JSON.stringify(ban), String(seconds * 1000), String(ban.until)]);
    return ban;
  }

  async lift(userId: string): Promise<boolean> {
    return (await this.eval(LIFT, [userId])) === 1;
  }

  async get(userId: string): Promise<Ban | undefined> {
    const raw = (await this.send(["GET", `${this.base}:${userId}`])) as string | null;
    return raw ? (JSON.parse(raw) as Ban) : undefined;
  }

  async list(): Promise<Ban[]> {
    const raws = (await this.eval(LIST, [String(Date.now())])) as string[];
    return raws.map((raw) => JSON.parse(raw) as Ban);
  }

  private eval(script: string, args: string[]): Promise<unknown> {
    return this.send(["EVAL", script, "0", this.base, ...args]);
  }

  /** On a cluster, on the node holding the bans' slot. */
  private send(args: string[]): Promise<unknown> {
    const { client } = this;
    return client.sendCommandFor
      ? client.sendCommandFor(this.base, args)
      : client.sendCommand(args);
  }
}

// Keys are built in the scripts from ARGV[1] (the base), as the presence scripts do.
const BAN = `
local base, user = ARGV[1], ARGV[2]
redis.call('SET', base .. ':' .. user, ARGV[3], 'PX', ARGV[4])
redis.call('ZADD', base .. 's', ARGV[5], user)
redis.call('ZREMRANGEBYSCORE', base .. 's', '-inf', tonumber(ARGV[5]) - tonumber(ARGV[4]))
return 1
`;

const LIFT = `
local base, user = ARGV[1], ARGV[2]
redis.call('ZREM', base .. 's', user)
return redis.call('DEL', base .. ':' .. user)
`;

const LIST = `
local base = ARGV[1]
redis.call('ZREMRANGEBYSCORE', base .. 's', '-inf', ARGV[2])
local out = {}
for _, user in ipairs(redis.call('ZRANGE', base .. 's', 0, -1)) do
  local raw = redis.call('GET', base .. ':' .. user)
  if raw then out[#out + 1] = raw else redis.call('ZREM', base .. 's', user) end
end
return out
`;
