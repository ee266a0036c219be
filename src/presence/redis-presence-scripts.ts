/**
 * The Lua scripts behind {@link RedisPresenceStore}: every operation is one script, so it is atomic
 * across every process and node sharing the Redis (that is what makes `first`/`last` exact).
 *
 * Key layout, under `B = <prefix>:presence`:
 *   B:conn:<fd>                    HASH   owner, room, user, info (the UserInfo JSON sent to clients)
 *   B:owner:<owner>                SET    the owner's fds
 *   B:owners                       SET    owners that may hold connections (what the reaper scans)
 *   B:alive:<owner>                STRING liveness key with a TTL (PX), refreshed by heartbeats
 *   B:show:<room>                  HASH   userId → the info listed for the user: their oldest connection's
 *   B:list:<room>                  ZSET   those infos → seq of the user's first connection (list order)
 *   B:user:<#room>:<room>:<userId> ZSET   fd → seq, the user's connections in the room, oldest first
 *   B:rooms                        SET    rooms with at least one user (for stats)
 *   B:seq                          STRING counter giving every connection its join order
 *   B:ver:<room>                   STRING the room's presence version (while the room has users)
 *   B:epoch                        STRING set by the first resync: its absence means Redis lost its data
 *   B:events                       CHANNEL presence events, published by the scripts themselves
 *
 * Events: a user's first connection in a room publishes `{"action":202,"count":<users in the
 * room now>,"version":<the room's version>,"user":<info>}`, their last one leaving
 * `{"action":203,…}`. Every announced change increments the room's version; a room created (again)
 * starts at Redis's clock in microseconds, above any version it had before (no room changes more
 * than once a microsecond), also after Redis lost its data. Versions are handled as strings in Lua
 * (its numbers print with 14 digits) and as exact integers in JSON (below 2^53 until year 2255).
 * `{"relist":1}` says Redis had lost its data and was rebuilt silently: every worker pushes fresh
 * 201s. Published inside the script, they reach every subscriber in the
 * order the changes happened: a 203 and the 202 of the same user's next tab, made on two nodes at
 * nearly the same time, can never be seen the wrong way round (announcing from each node after its
 * script returned could).
 *
 * B:list makes list() one native ZRANGE (10,000 users: ~2 ms in Redis; a script building the list
 * per user took ~15 ms, and every connection of a busy room asks for the list).
 *
 * Every script gets B as ARGV[1] and builds keys itself (no KEYS[]): fine on one Redis or Sentinel,
 * not on Redis Cluster. Scripts are sent with EVAL, not EVALSHA: an EVALSHA that fails with NOSCRIPT
 * (after a Redis restart) and is retried would run after commands sent later on the same connection,
 * and a join overtaken by its own leave leaves a ghost. EVAL keeps call order = execution order.
 */
import { hookLua } from "../webhooks/redis-webhook-scripts.js";

const PRELUDE = `
local B = ARGV[1]
local OWNERS = B .. ':owners'
local ROOMS = B .. ':rooms'
local function conn_key(fd) return B .. ':conn:' .. fd end
local function owner_key(owner) return B .. ':owner:' .. owner end
local function alive_key(owner) return B .. ':alive:' .. owner end
local function show_key(room) return B .. ':show:' .. room end
local function list_key(room) return B .. ':list:' .. room end
-- room and userId are free text: the room's length keeps ("a:b", "c") apart from ("a", "b:c").
local function user_key(room, user) return B .. ':user:' .. #room .. ':' .. room .. ':' .. user end
local function ver_key(room) return B .. ':ver:' .. room end
-- The room's next version, as a string.
local function next_version(room)
  local k = ver_key(room)
  if redis.call('EXISTS', k) == 0 then
    local t = redis.call('TIME')
    redis.call('SET', k, t[1] .. string.format('%06d', tonumber(t[2])))
  end
  redis.call('INCR', k)
  return redis.call('GET', k)
end
-- An emptied room forgets its version (the next one starts above it, from the clock).
local function forget_if_empty(room)
  if redis.call('EXISTS', show_key(room)) == 0 then
    redis.call('SREM', ROOMS, room)
    redis.call('DEL', ver_key(room))
  end
end
${hookLua(":presence")}
local function publish(action, info, room)
  local version = next_version(room)
  local count = redis.call('ZCARD', list_key(room))
  local event = '{"action":' .. action .. ',"count":' .. count .. ',"version":' .. version .. ',"user":' .. info .. '}'
  redis.call('PUBLISH', B .. ':events', event)
  -- The same event, queued for webhooks (when enabled): see redis-webhook-scripts.ts.
  hook('p', event, room)
end

-- Points the user's list entry at their oldest connection, or drops it when they have none.
-- A user already listed keeps their place (score); a new one is placed at seq.
local function refresh_entry(room, user, seq)
  local fd = redis.call('ZRANGE', user_key(room, user), 0, 0)[1]
  local info = fd and redis.call('HGET', conn_key(fd), 'info')
  local shown = redis.call('HGET', show_key(room), user)
  if info == shown then return end
  if shown then
    seq = redis.call('ZSCORE', list_key(room), shown)
    redis.call('ZREM', list_key(room), shown)
  end
  if info then
    redis.call('ZADD', list_key(room), seq, info)
    redis.call('HSET', show_key(room), user, info)
  else
    redis.call('HDEL', show_key(room), user)
  end
end

-- Records a connection (the fd must be unknown). Returns 1 when it is the user's first in the room.
-- silent: a user put back after Redis lost its data changes the version but is not announced.
local function add(fd, owner, room, user, info, silent)
  local seq = redis.call('INCR', B .. ':seq')
  redis.call('HSET', conn_key(fd), 'owner', owner, 'room', room, 'user', user, 'info', info)
  redis.call('SADD', owner_key(owner), fd)
  redis.call('SADD', OWNERS, owner)
  redis.call('ZADD', user_key(room, user), seq, fd)
  local first = redis.call('HEXISTS', show_key(room), user) == 0
  refresh_entry(room, user, seq)
  if not first then return 0 end
  redis.call('SADD', ROOMS, room)
  if silent then next_version(room) else publish(202, info, room) end
  return 1
end

-- Removes a connection. Returns its info (nil if unknown) and whether it was the user's last.
local function remove(fd)
  local c = redis.call('HMGET', conn_key(fd), 'owner', 'room', 'user', 'info')
  if not c[1] then return nil, false end
  local owner, room, user = c[1], c[2], c[3]
  redis.call('DEL', conn_key(fd))
  redis.call('SREM', owner_key(owner), fd)
  redis.call('ZREM', user_key(room, user), fd)
  refresh_entry(room, user)
  local last = redis.call('EXISTS', user_key(room, user)) == 0
  if last then
    publish(203, c[4], room)
    forget_if_empty(room)
  end
  return c[4], last
end

-- Removes every connection of the owner and the owner itself. Returns the infos of users gone offline.
local function remove_owner(owner)
  local offline = {}
  for _, fd in ipairs(redis.call('SMEMBERS', owner_key(owner))) do
    local info, last = remove(fd)
    if last then offline[#offline + 1] = info end
  end
  redis.call('DEL', owner_key(owner), alive_key(owner))
  redis.call('SREM', OWNERS, owner)
  return offline
end

-- One JSON array for the whole reply: one JSON.parse instead of one per user.
local function json_array(items) return '[' .. table.concat(items, ',') .. ']' end
`;

const script = (body: string): string => `${PRELUDE}\n${body}`;

/** ARGV: B, fd, owner, room, userId, info, ttlMs → 1 when first, else 0. */
export const JOIN = script(`
local fd, owner = ARGV[2], ARGV[3]
-- A process that joins is alive: give it a liveness key if it has none (never shortens one), so its
-- connections are not reaped before its first heartbeat.
redis.call('SET', alive_key(owner), '1', 'PX', ARGV[7], 'NX')
if redis.call('EXISTS', conn_key(fd)) == 1 then return 0 end
return add(fd, owner, ARGV[4], ARGV[5], ARGV[6])
`);

/** ARGV: B, fd → nil when unknown, else [info, 1 when last else 0]. */
export const LEAVE = script(`
local info, last = remove(ARGV[2])
if not info then return false end
return { info, last and 1 or 0 }
`);

/** ARGV: B, room, stop index ("-1": all) → [version ("0": none), users, infos]. */
export const SNAPSHOT = script(`
local room = ARGV[2]
local version = redis.call('GET', ver_key(room)) or '0'
return { version, redis.call('ZCARD', list_key(room)), redis.call('ZRANGE', list_key(room), 0, ARGV[3]) }
`);

/**
 * ARGV: B, room, userId, info → 1 when the user is not online in the room and a 203 was published
 * for them (a leave Redis lost or refused), else 0.
 */
export const ANNOUNCE_GONE = script(`
local room, user = ARGV[2], ARGV[3]
if redis.call('HEXISTS', show_key(room), user) == 1 then return 0 end
publish(203, ARGV[4], room)
forget_if_empty(room)
return 1
`);

/** ARGV: B, room, userId or fd → info of the user's oldest connection, or nil. userId wins. */
export const FIND = script(`
local room, id = ARGV[2], ARGV[3]
local info = redis.call('HGET', show_key(room), id)
if info then return info end
local c = redis.call('HMGET', conn_key(id), 'room', 'user')
if c[1] == room then return redis.call('HGET', show_key(room), c[2]) end
return false
`);

/** ARGV: B, owner, onlyIfExpired ("1"/"0") → JSON array of infos of users gone offline. */
export const REMOVE_OWNER = script(`
local owner = ARGV[2]
-- The reaper's check and removal are one step: an owner that heartbeats in between is spared.
if ARGV[3] == '1' and redis.call('EXISTS', alive_key(owner)) == 1 then return '[]' end
return json_array(remove_owner(owner))
`);

/** ARGV: B, nodeId → JSON array of infos of users gone offline with every `<nodeId>/…` owner. */
export const REMOVE_NODE = script(`
local head = ARGV[2] .. '/'
local offline = {}
for _, owner in ipairs(redis.call('SMEMBERS', OWNERS)) do
  if string.sub(owner, 1, #head) == head then
    for _, info in ipairs(remove_owner(owner)) do offline[#offline + 1] = info end
  end
end
return json_array(offline)
`);

/** ARGV: B → owners whose liveness key is gone. */
export const EXPIRED_OWNERS = script(`
local out = {}
for _, owner in ipairs(redis.call('SMEMBERS', OWNERS)) do
  if redis.call('EXISTS', alive_key(owner)) == 0 then out[#out + 1] = owner end
end
return out
`);

/**
 * ARGV: B, owner, ttlMs, expected connection count ("" = don't check) → 1 when Redis still had the
 * owner (liveness key present and, if given, as many connections as expected), else 0: resync.
 */
export const HEARTBEAT = script(`
local owner, expected = ARGV[2], ARGV[4]
local intact = redis.call('EXISTS', alive_key(owner)) == 1
redis.call('SET', alive_key(owner), '1', 'PX', ARGV[3])
redis.call('SADD', OWNERS, owner)
if intact and expected ~= '' then
  intact = redis.call('SCARD', owner_key(owner)) == tonumber(expected)
end
return intact and 1 or 0
`);

/**
 * ARGV: B, owner, ttlMs, then (fd, room, userId, info) per connection, oldest first. Makes the
 * owner's entries exactly these: drops the others, adds the missing ones (in the given order),
 * keeps the present ones (and their place in lists). Users it puts back are announced (202) when
 * Redis kept its data (this owner had been reaped: clients were told 203); when Redis lost it
 * (no B:epoch), they are put back silently and `{"relist":1}` is published once: every client
 * then gets a fresh 201 instead of a 202 per user (who, for clients, never left).
 */
export const RESYNC = script(`
local owner = ARGV[2]
local lost = redis.call('SET', B .. ':epoch', '1', 'NX') ~= false
local wanted = {}
for i = 4, #ARGV, 4 do wanted[ARGV[i]] = true end
for _, fd in ipairs(redis.call('SMEMBERS', owner_key(owner))) do
  if not wanted[fd] then remove(fd) end
end
for i = 4, #ARGV, 4 do
  local fd, room, user, info = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local c = redis.call('HMGET', conn_key(fd), 'owner', 'room', 'user')
  if c[1] == owner and c[2] == room and c[3] == user then
    redis.call('HSET', conn_key(fd), 'info', info)
    refresh_entry(room, user)
  else
    if c[1] then remove(fd) end
    add(fd, owner, room, user, info, lost)
  end
end
redis.call('SET', alive_key(owner), '1', 'PX', ARGV[3])
redis.call('SADD', OWNERS, owner)
if lost then redis.call('PUBLISH', B .. ':events', '{"relist":1}') end
return 1
`);

/** ARGV: B → [connections, users (summed over rooms)]. */
export const STATS = script(`
local conns, users = 0, 0
for _, owner in ipairs(redis.call('SMEMBERS', OWNERS)) do
  conns = conns + redis.call('SCARD', owner_key(owner))
end
for _, room in ipairs(redis.call('SMEMBERS', ROOMS)) do
  users = users + redis.call('HLEN', show_key(room))
end
return { conns, users }
`);

/** ARGV: B → [room, users, connections] per room with users (O(users of every room): admin only). */
export const ROOM_COUNTS = script(`
local out = {}
for _, room in ipairs(redis.call('SMEMBERS', ROOMS)) do
  local users = redis.call('HKEYS', show_key(room))
  local conns = 0
  for _, user in ipairs(users) do conns = conns + redis.call('ZCARD', user_key(room, user)) end
  out[#out + 1] = { room, #users, conns }
end
return out
`);

/** ARGV: B, room → [owner, info] per connection: users in list order, each one's oldest first. */
export const ROOM_CONNECTIONS = script(`
local room = ARGV[2]
local out = {}
for _, shown in ipairs(redis.call('ZRANGE', list_key(room), 0, -1)) do
  local user = cjson.decode(shown).userId
  for _, fd in ipairs(redis.call('ZRANGE', user_key(room, user), 0, -1)) do
    local c = redis.call('HMGET', conn_key(fd), 'owner', 'info')
    if c[1] then out[#out + 1] = { c[1], c[2] } end
  end
end
return out
`);
