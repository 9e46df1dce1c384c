-- Acquire one lease in every scope at once, or in none, within the CPS limits.
--
-- KEYS[1..n]      the scopes' sorted sets (member = attempt id, score = lease expiry, ms)
-- KEYS[n+1..n+m]  the GCRA keys (theoretical arrival time, µs)
-- ARGV[1]         n, the number of scopes
-- ARGV[2]         m, the number of rate limits
-- ARGV[3]         member (attempt id)
-- ARGV[4]         lease length, ms
-- ARGV[5..4+n]    each scope's cap
-- ARGV[5+n..]     each limit's emission interval, µs (1e6 / calls per second)
--
-- Returns {1, 0} when acquired, {0, i} when scope i is full, {-1, wait_us} when a CPS
-- limit needs wait_us more. GCRA: Brandur Leach, "Rate limiting, cells, and GCRA" (2015),
-- after the ATM Forum's Generic Cell Rate Algorithm; burst tolerance zero, so no one-second
-- window ever holds more than the limit's calls.
local n = tonumber(ARGV[1])
local m = tonumber(ARGV[2])
local member = ARGV[3]
local lease_ms = tonumber(ARGV[4])
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now = math.floor(now_us / 1000)

for i = 1, n do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  if redis.call('ZSCORE', KEYS[i], member) then
    return {1, 0}
  end
  if redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[4 + i]) then
    return {0, i}
  end
end

local tats = {}
local wait = 0
for j = 1, m do
  local interval = tonumber(ARGV[4 + n + j])
  local tat = tonumber(redis.call('GET', KEYS[n + j]) or now_us)
  if tat < now_us then tat = now_us end
  if tat > now_us then
    wait = math.max(wait, tat - now_us)
  end
  tats[j] = tat + interval
end
if wait > 0 then
  return {-1, wait}
end

for j = 1, m do
  local interval = tonumber(ARGV[4 + n + j])
  redis.call('SET', KEYS[n + j], string.format('%d', tats[j]), 'PX', math.ceil(interval / 1000) + 1000)
end
for i = 1, n do
  redis.call('ZADD', KEYS[i], now + lease_ms, member)
end
return {1, 0}
