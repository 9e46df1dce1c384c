-- Acquire one lease in every scope at once, or in none, within the CPS limits.
--
-- KEYS[1..n]      the scopes' sorted sets (member = attempt id, score = lease expiry, ms)
-- KEYS[n+1..n+m]  the GCRA keys (theoretical arrival time, µs)
-- KEYS[n+m+1]     optional: the pool's generation key, which must exist (else the pool
--                 was lost with Redis and must be rebuilt before any lease is taken)
-- ARGV[1]         n, the number of scopes
-- ARGV[2]         m, the number of rate limits
-- ARGV[3]         member (attempt id)
-- ARGV[4]         lease length, ms
-- ARGV[5]         booking horizon, µs: a call may be booked this far ahead of now
-- ARGV[6..5+n]    each scope's cap
-- ARGV[6+n..]     per limit: its emission interval, µs (1e6 / calls per second)
--
-- Returns {-2, 0} when the generation key is missing; {1, delay_us} when acquired: the
-- call's slot is delay_us from now (0: at once); {0, i} when scope i is full; {-1, wait_us}
-- when the CPS limits have no slot within the horizon for wait_us more.
--
-- Leases are taken in every scope at once and normally released from every scope, so the
-- first scope tells whether the member holds one; lapsed leases (a crash) are purged from a
-- scope only when they would make it look full.
--
-- GCRA (Brandur Leach, "Rate limiting, cells, and GCRA", 2015, after the ATM Forum's
-- Generic Cell Rate Algorithm) without burst tolerance: a call's slot is its limit's
-- theoretical arrival time, or now if that has passed, so booked calls are at least one
-- interval apart. Booking a little ahead lets one pacer round schedule several calls
-- instead of one.
local n = tonumber(ARGV[1])
local m = tonumber(ARGV[2])
local member = ARGV[3]
local lease_ms = tonumber(ARGV[4])
local horizon = tonumber(ARGV[5])
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now = math.floor(now_us / 1000)

if #KEYS > n + m and redis.call('EXISTS', KEYS[n + m + 1]) == 0 then
  return {-2, 0}
end

local held = redis.call('ZSCORE', KEYS[1], member)
if held and tonumber(held) > now then
  return {1, 0}
end
for i = 1, n do
  local cap = tonumber(ARGV[5 + i])
  if redis.call('ZCARD', KEYS[i]) >= cap then
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    if redis.call('ZCARD', KEYS[i]) >= cap then
      return {0, i}
    end
  end
end

-- The slot: the latest of now and every limit's theoretical arrival time.
local slot = now_us
local tats = {}
for j = 1, m do
  local tat = tonumber(redis.call('GET', KEYS[n + j]) or now_us)
  tats[j] = tat
  if tat > slot then slot = tat end
end
if slot - now_us > horizon then
  return {-1, slot - now_us - horizon}
end

for j = 1, m do
  local interval = tonumber(ARGV[5 + n + j])
  local tat = math.max(tats[j], slot) + interval
  redis.call('SET', KEYS[n + j], string.format('%d', tat),
    'PX', math.ceil((tat - now_us) / 1000) + 1000)
end
for i = 1, n do
  redis.call('ZADD', KEYS[i], now + lease_ms, member)
end
return {1, slot - now_us}
