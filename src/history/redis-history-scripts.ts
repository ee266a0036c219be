/**
 * The Lua scripts behind {@link RedisHistoryStore}: an append is one script, so numbering,
 * storing, deduplicating and publishing happen atomically and in one order for every node.
 *
 * Key layout, under `B = <prefix>:history`, with `R = #room:room` and `U = R:#user:user` (the
 * lengths keep free-text names apart):
 *   B:seq:R          STRING  the room's last seq
 *   B:log:R          STREAM  the room's last `size` messages (exact MAXLEN), entry id `<seq>-0`, field `e` = envelope
 *   B:pseq:U         STRING  the user's last pseq in the room
 *   B:inbox:U        STREAM  the user's private messages in the room, id `<pseq>-0`
 *   B:cid:R:#u:u:cid STRING  the envelope a client message id got (5 minutes)
 *   B:messages       CHANNEL every stored message, `{"room":…,"user"?:…,"envelope":…}`
 *
 * Envelopes are JSON text built by the worker without seq; the script prefixes `{"seq":N,` (or
 * pseq) by string, not cjson, which would rewrite numbers. Counters and logs expire together
 * after the TTL (idle rooms); should Redis lose a counter but keep its log, the next number
 * continues after the log's last entry, never below it.
 */
import { hookLua } from "../webhooks/redis-webhook-scripts.js";

const PRELUDE = `
local B = ARGV[1]
local function len_key(s) return #s .. ':' .. s end
${hookLua(":history")}local function number_after(counter, log)
  local n = redis.call('INCR', counter)
  local top = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)[1]
  if top then
    local top_n = tonumber(string.match(top[1], '^(%d+)'))
    if n <= top_n then
      n = top_n + 1
      redis.call('SET', counter, n)
    end
  end
  return n
end
local function store(counter, log, field, body, maxlen, ttl)
  local n = number_after(counter, log)
  local out = '{"' .. field .. '":' .. n .. ',' .. body
  redis.call('XADD', log, 'MAXLEN', maxlen, n .. '-0', 'e', out)
  redis.call('EXPIRE', counter, ttl)
  redis.call('EXPIRE', log, ttl)
  return out
end
`;

/**
 * ARGV: B, room, envelope JSON (no seq), maxlen, ttl seconds, cid user ('' = none), cid,
 * inbox count n, then n users (recipient first, sender last; n = 0 for a room message).
 * Returns { envelope as the sender sees it, 1 if it was a duplicate else 0 }.
 */
export const APPEND = `${PRELUDE}
local room, env, maxlen, ttl = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local cid_user, cid, n = ARGV[6], ARGV[7], tonumber(ARGV[8])
local R = len_key(room)
local cid_key = B .. ':cid:' .. R .. ':' .. len_key(cid_user) .. ':' .. cid
if cid ~= '' then
  local seen = redis.call('GET', cid_key)
  if seen then return {seen, 1} end
end
local body = string.sub(env, 2)
local room_json = cjson.encode(room)
local mine
if n == 0 then
  mine = store(B .. ':seq:' .. R, B .. ':log:' .. R, 'seq', body, maxlen, ttl)
  local delivery = '{"room":' .. room_json .. ',"envelope":' .. mine .. '}'
  redis.call('PUBLISH', B .. ':messages', delivery)
  hook('m', delivery, room)
else
  local done = {}
  for i = 1, n do
    local user = ARGV[8 + i]
    if not done[user] then
      done[user] = true
      local U = R .. ':' .. len_key(user)
      mine = store(B .. ':pseq:' .. U, B .. ':inbox:' .. U, 'pseq', body, maxlen, ttl)
      local delivery = '{"room":' .. room_json .. ',"user":' .. cjson.encode(user) .. ',"envelope":' .. mine .. '}'
      redis.call('PUBLISH', B .. ':messages', delivery)
      -- Webhooks get a private message once: the recipient's copy (the first inbox).
      if i == 1 then hook('m', delivery, room) end
    end
  end
end
if cid ~= '' then redis.call('SET', cid_key, mine, 'PX', ARGV[9 + n]) end
return {mine, 0}
`;

/**
 * ARGV: B, counter key suffix kind ('seq' | 'pseq'), log kind ('log' | 'inbox'), key part,
 * after ('' = the last `limit`), limit. Returns { last, first, envelope... }.
 */
export const RANGE = `${PRELUDE}
local counter = B .. ':' .. ARGV[2] .. ':' .. ARGV[4]
local log = B .. ':' .. ARGV[3] .. ':' .. ARGV[4]
local after, limit = ARGV[5], tonumber(ARGV[6])
local last = tonumber(redis.call('GET', counter) or '0')
local oldest = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)[1]
local first = 0
if oldest then first = tonumber(string.match(oldest[1], '^(%d+)')) end
local top = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)[1]
if top then
  local top_n = tonumber(string.match(top[1], '^(%d+)'))
  if top_n > last then last = top_n end
end
local out = {last, first}
if limit <= 0 then return out end
local entries
if after == '' then
  entries = redis.call('XREVRANGE', log, '+', '-', 'COUNT', limit)
  for i = #entries, 1, -1 do out[#out + 1] = entries[i][2][2] end
else
  entries = redis.call('XRANGE', log, '(' .. after .. '-0', '+', 'COUNT', limit)
  for i = 1, #entries do out[#out + 1] = entries[i][2][2] end
end
return out
`;
