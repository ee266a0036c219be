/**
 * Redis mode's webhook queue: the presence and history scripts push every change onto one list,
 * inside the same script that makes the change (atomic with it: a change is queued exactly once,
 * whichever node made it, and nothing is lost with a node that dies after it), and one process of
 * the whole service, the holder of a lease, sends them.
 *
 * Keys, under `H = <prefix>:webhooks` (the default app's), `<prefix>:webhooks:app:<id>` (an app's):
 *   H:cfg     HASH   cap (queue size), messages ("1": queue chat messages); kept by every process
 *                    running with --webhook-url (30 s TTL, refreshed): without it nothing is queued
 *   H:queue   LIST   changes, newest at the head: `{"n":<H:seq>,"t":<epoch ms>,"p"|"m":<event>}`
 *   H:seq     STRING the last change's number
 *   H:dropped STRING changes dropped because the queue was full (the oldest go)
 *   H:lease   STRING the sender's owner id (`<nodeId>/<pid>`), with a TTL
 *
 * The sender reads the oldest entries without removing them and removes them (by number) once the
 * receiver answered 2xx, so a sender that dies mid-POST leaves its batch for the next one.
 *
 * Redis Cluster (slot groups, see slot-groups.ts): every group has its own H (`<prefix>{g}:webhooks`:
 * cfg, queue, seq, dropped), filled by the scripts of its rooms; the lease alone lives in
 * `<prefix>{webhooks}:webhooks:lease`, and the holder sends the groups' queues in turn.
 */

/**
 * Lua for the stores' scripts: defines `hook(kind, json)` ('p' presence event, 'm' delivery).
 * `base` is the store's B (`<prefix>:presence` or `<prefix>:history`); `suffix` that part after
 * the prefix, so that H is found from B alone.
 */
export const hookLua = (suffix: string): string => `
local HOOKS_BASE = string.sub(B, 1, #B - ${suffix.length}) .. ':webhooks'
local function hook(kind, body, room)
  -- An app's room is '<app>/<room>' (apps/app-scope.ts): its changes go to the app's own queue.
  local HOOKS = HOOKS_BASE
  local slash = string.find(room, '/', 1, true)
  if slash then HOOKS = HOOKS .. ':app:' .. string.sub(room, 1, slash - 1) end
  local cfg = redis.call('HMGET', HOOKS .. ':cfg', 'cap', 'messages')
  local cap = tonumber(cfg[1])
  if not cap or (kind == 'm' and cfg[2] ~= '1') then return end
  local n = redis.call('INCR', HOOKS .. ':seq')
  local t = redis.call('TIME')
  local ms = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
  local len = redis.call('LPUSH', HOOKS .. ':queue', '{"n":' .. n .. ',"t":' .. ms .. ',"' .. kind .. '":' .. body .. '}')
  if len > cap then
    redis.call('LTRIM', HOOKS .. ':queue', 0, cap - 1)
    redis.call('INCRBY', HOOKS .. ':dropped', len - cap)
  end
end
`;

/**
 * ARGV: H, owner, lease ttl ms, cap, messages ("1"/"0"), cfg ttl ms → 1 when the owner holds
 * the lease (kept or taken), else 0. Also (re)writes the queue's settings.
 */
export const LEASE = `
local H, me, ttl = ARGV[1], ARGV[2], ARGV[3]
redis.call('HSET', H .. ':cfg', 'cap', ARGV[4], 'messages', ARGV[5])
redis.call('PEXPIRE', H .. ':cfg', ARGV[6])
local holder = redis.call('GET', H .. ':lease')
if holder == me then
  redis.call('PEXPIRE', H .. ':lease', ttl)
  return 1
end
if not holder then
  redis.call('SET', H .. ':lease', me, 'PX', ttl)
  return 1
end
return 0
`;

/** ARGV: H, cap, messages ("1"/"0"), cfg ttl ms → 1. A group's settings (slot groups). */
export const CONFIG = `
redis.call('HSET', ARGV[1] .. ':cfg', 'cap', ARGV[2], 'messages', ARGV[3])
redis.call('PEXPIRE', ARGV[1] .. ':cfg', ARGV[4])
return 1
`;

/** ARGV: H, max → { dropped, entries... } with the oldest `max` entries, newest first. */
export const PEEK = `
local H = ARGV[1]
local out = { tonumber(redis.call('GET', H .. ':dropped') or '0') }
for _, e in ipairs(redis.call('LRANGE', H .. ':queue', -tonumber(ARGV[2]), -1)) do out[#out + 1] = e end
return out
`;

/**
 * ARGV: H, owner, last, lease check ("1"/"0") → entries removed: those numbered up to `last`, if
 * owner holds the lease. Slot groups: the lease is in another slot, not checked (removing what
 * this process sent is harmless even after losing the lease: the numbers only go up).
 */
export const ACK = `
local H, me, last = ARGV[1], ARGV[2], tonumber(ARGV[3])
if ARGV[4] ~= '0' and redis.call('GET', H .. ':lease') ~= me then return 0 end
local removed = 0
while true do
  local e = redis.call('LINDEX', H .. ':queue', -1)
  if not e then break end
  local n = tonumber(string.match(e, '^{"n":(%d+)'))
  -- An entry without a number cannot be sent: it goes with the batch it blocks.
  if n and n > last then break end
  redis.call('RPOP', H .. ':queue')
  removed = removed + 1
end
return removed
`;

/** ARGV: H, owner → releases the lease if the owner holds it (a stopping sender). */
export const RELEASE = `
if redis.call('GET', ARGV[1] .. ':lease') == ARGV[2] then redis.call('DEL', ARGV[1] .. ':lease') end
return 1
`;
