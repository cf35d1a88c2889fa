"""The Lua scripts that keep an account's limits in Redis, and the keys they use.

Each script runs atomically inside Redis, reads the time with ``TIME`` (Redis'
clock, the same for every process on every host) and touches only keys of one
account, all under one hash tag, so that a Redis Cluster keeps them in one slot.

Per gate (the account's, and each key's, the key named by its fingerprint):

* ``log``: a sorted set of the last ``burst`` starts, member = grant id,
  score = where the start is counted (the grant time plus the margin, later
  moved to the send time plus what the answer left of the margin);
* ``lease``: a sorted set of in-flight places, score = when the lease
  expires (a crashed holder's places come back then);
* ``meta``: a hash with ``pause`` (no start before) and ``dropped`` (the
  latest counted time of a start that fell out of the log).

Per account: ``queue`` (the waiting tickets, score = arrival), ``queue:exp``
(when each ticket lapses unless its waiter asks again) and ``ready`` (per key
fingerprint, the earliest its key would allow a start, for the
first-come-first-served check).

Numbers come back as strings: Redis turns a Lua number into an integer.
"""

from __future__ import annotations

__all__: list[str] = []

# Shared by both scripts: how a gate's earliest start is computed, and the
# bookkeeping that keeps its log at `burst` entries.
_COMMON = """
local INF = 1e300
local function num(x, default)
  if x then return tonumber(x) end
  return default
end
local function now_of_redis()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function ready(log, lease, meta, window, burst, in_flight, now)
  redis.call('ZREMRANGEBYSCORE', lease, '-inf', now)
  if redis.call('ZCARD', lease) >= in_flight then return INF end
  local at = math.max(num(redis.call('HGET', meta, 'pause'), -INF),
                      num(redis.call('HGET', meta, 'dropped'), -INF) + window)
  if redis.call('ZCARD', log) >= burst then
    local oldest = redis.call('ZRANGE', log, 0, 0, 'WITHSCORES')
    at = math.max(at, tonumber(oldest[2]) + window)
  end
  return at
end
local function add(log, meta, burst, member, at)
  redis.call('ZADD', log, at, member)
  local extra = redis.call('ZCARD', log) - burst
  if extra > 0 then
    local gone = redis.call('ZRANGE', log, 0, extra - 1, 'WITHSCORES')
    local dropped = num(redis.call('HGET', meta, 'dropped'), -INF)
    for i = 2, #gone, 2 do dropped = math.max(dropped, tonumber(gone[i])) end
    redis.call('HSET', meta, 'dropped', string.format('%.17g', dropped))
    redis.call('ZREMRANGEBYRANK', log, 0, extra - 1)
  end
end
local function keep(keys, seconds)
  local ms = math.ceil(seconds * 1000)
  for _, key in ipairs(keys) do redis.call('PEXPIRE', key, ms) end
end
"""

ACQUIRE = (
    _COMMON
    + """
-- KEYS: 1-3 account log/lease/meta, 4-6 key log/lease/meta, 7 queue, 8 queue:exp, 9 ready
-- ARGV: 1 ticket, 2 seconds waited before, 3 key fingerprint,
--       4 account margin, 5 key margin, 6-8 account window/burst/in_flight,
--       9-11 key window/burst/in_flight, 12 lease seconds, 13 grant id,
--       14 ticket lifetime, 15 keep seconds, 16 the next waiter's ticket (or ''),
--       17 seconds the next waiter has waited
local now = now_of_redis()
local ticket, fp = ARGV[1], ARGV[3]
local stale = redis.call('ZRANGEBYSCORE', KEYS[8], '-inf', now)
for _, gone in ipairs(stale) do
  redis.call('ZREM', KEYS[7], gone)
  redis.call('ZREM', KEYS[8], gone)
end
redis.call('ZADD', KEYS[7], 'NX', now - tonumber(ARGV[2]), ticket)
redis.call('ZADD', KEYS[8], now + tonumber(ARGV[14]), ticket)
if ARGV[16] ~= '' then
  -- The waiter behind this one in its process takes its place in the queue now,
  -- not only once it is first there; never before this one (whose place was
  -- taken at its first ask, on a clock read a thread hop later): the first
  -- ticket in the queue must always be one that asks.
  local behind = tonumber(redis.call('ZSCORE', KEYS[7], ticket)) + 0.000001
  redis.call('ZADD', KEYS[7], 'NX', math.max(now - tonumber(ARGV[17]), behind), ARGV[16])
  redis.call('ZADD', KEYS[8], now + tonumber(ARGV[14]), ARGV[16])
end
local account_at = ready(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[6]), tonumber(ARGV[7]),
                         tonumber(ARGV[8]), now)
local key_at = ready(KEYS[4], KEYS[5], KEYS[6], tonumber(ARGV[9]), tonumber(ARGV[10]),
                     tonumber(ARGV[11]), now)
redis.call('HSET', KEYS[9], fp, string.format('%.17g', key_at))
local at = math.max(account_at, key_at)
if at > now then
  return {0, string.format('%.17g', now), string.format('%.17g', at)}
end
-- First come, first served: an earlier ticket whose key allows a start now goes
-- first (its waiter asks again shortly; a ticket whose waiter stopped asking has
-- lapsed above).
local rank = redis.call('ZRANK', KEYS[7], ticket)
if rank > 0 then
  local ahead = 0
  local process = string.match(ticket, '^[^|]*|([^|]*)|')
  for _, other in ipairs(redis.call('ZRANGE', KEYS[7], 0, rank - 1)) do
    local other_fp, other_process = string.match(other, '^([^|]*)|([^|]*)|')
    -- This process's own waiters queue in it, in order: one in Redis' queue
    -- behind this one can only be the next, put there early.
    if other_process ~= process then
      local other_at = num(redis.call('HGET', KEYS[9], other_fp or ''), INF)
      if other_fp == fp then other_at = key_at end
      if math.max(other_at, account_at) <= now then ahead = ahead + 1 end
    end
  end
  if ahead > 0 then
    -- Ask again when the account would allow this one, the earlier ones served
    -- first: when the start `ahead` places into its log has aged out.
    local later = redis.call('ZRANGE', KEYS[1], ahead, ahead, 'WITHSCORES')
    local again = now
    if #later > 0 and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[7]) then
      again = math.max(now, tonumber(later[2]) + tonumber(ARGV[6]))
    end
    return {0, string.format('%.17g', now), string.format('%.17g', again)}
  end
end
local id = ARGV[13]
add(KEYS[1], KEYS[3], tonumber(ARGV[7]), id, now + tonumber(ARGV[4]))
add(KEYS[4], KEYS[6], tonumber(ARGV[10]), id, now + tonumber(ARGV[5]))
local expires = now + tonumber(ARGV[12])
redis.call('ZADD', KEYS[2], expires, id)
redis.call('ZADD', KEYS[5], expires, id)
redis.call('ZREM', KEYS[7], ticket)
redis.call('ZREM', KEYS[8], ticket)
local key_next = ready(KEYS[4], KEYS[5], KEYS[6], tonumber(ARGV[9]), tonumber(ARGV[10]),
                       tonumber(ARGV[11]), now)
redis.call('HSET', KEYS[9], fp, string.format('%.17g', key_next))
keep(KEYS, tonumber(ARGV[15]))
return {1, string.format('%.17g', now), string.format('%.17g', now)}
"""
)

FINISH = (
    _COMMON
    + """
-- KEYS: as for ACQUIRE.
-- ARGV: 1 mode ('release', 'untake' or 'abandon'), 2 grant id or ticket, 3 key fingerprint,
--       4 account start (or ''), 5 key start (or ''),
--       6 key pause seconds (or ''), 7 account pause seconds (or ''),
--       8-9 account rate/burst, 10-11 key rate/burst, 12 account margin, 13 key margin,
--       14-15 account window/in_flight, 16-17 key window/in_flight
local now = now_of_redis()
local mode, id, fp = ARGV[1], ARGV[2], ARGV[3]
if mode == 'abandon' then
  redis.call('ZREM', KEYS[7], id)
  redis.call('ZREM', KEYS[8], id)
  return 1
end
redis.call('ZREM', KEYS[2], id)
redis.call('ZREM', KEYS[5], id)
local function recount(log, meta, at)
  if at == '' then return end
  at = tonumber(at)
  if redis.call('ZSCORE', log, id) then
    redis.call('ZADD', log, 'XX', at, id)
  elseif at > num(redis.call('HGET', meta, 'dropped'), -INF) then
    -- Fell out of the log: only the latest such time still counts.
    redis.call('HSET', meta, 'dropped', string.format('%.17g', at))
  end
end
local function pause(log, meta, seconds, rate, burst, margin)
  if seconds == '' then return end
  local pause_end = now + tonumber(seconds)
  if pause_end <= num(redis.call('HGET', meta, 'pause'), -INF) then return end
  redis.call('HSET', meta, 'pause', string.format('%.17g', pause_end))
  -- As if the last `burst` requests had gone 1/rate apart, the newest 1/rate
  -- before the end: afterwards they resume at `rate`, not all at once.
  local entries = redis.call('ZRANGE', log, 0, -1, 'WITHSCORES')
  local have = #entries / 2
  for k = 0, burst - 1 do
    local at = pause_end - (burst - k) / rate + margin
    local i = k - (burst - have)
    if i >= 0 then
      local member, score = entries[2 * i + 1], tonumber(entries[2 * i + 2])
      if at > score then redis.call('ZADD', log, 'XX', at, member) end
    else
      redis.call('ZADD', log, at, 'pause:' .. k .. ':' .. string.format('%.6f', pause_end))
    end
  end
end
if mode == 'untake' then
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[4], id)
else
  recount(KEYS[1], KEYS[3], ARGV[4])
  recount(KEYS[4], KEYS[6], ARGV[5])
  pause(KEYS[4], KEYS[6], ARGV[6], tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[13]))
  pause(KEYS[1], KEYS[3], ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[12]))
end
local key_next = ready(KEYS[4], KEYS[5], KEYS[6], tonumber(ARGV[16]), tonumber(ARGV[11]),
                       tonumber(ARGV[17]), now)
redis.call('HSET', KEYS[9], fp, string.format('%.17g', key_next))
return 1
"""
)
