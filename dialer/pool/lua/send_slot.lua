-- Take a send slot in every CPS window at once, or in none.
--
-- A window allows `calls` create requests in any sliding period of its length, as the
-- provider counts them. A slot counts from the moment it is granted until its holder
-- reports the provider's answer plus the window's length (`Pool.sent` lowers the score to
-- that), or until the conservative hold given here, whichever the score says: the provider
-- counts a request somewhere between those two moments, so no period of the window's length
-- at the provider can hold more requests than slots were counting at its end.
--
-- KEYS[1..m]   the windows' sorted sets (member = attempt id, score = µs of Redis `TIME`
--              until which the slot counts)
-- ARGV[1]      member
-- ARGV[2]      hold, µs: how long the slot counts if its holder never reports an answer
-- ARGV[3..]    per window: the requests it allows
--
-- Returns {1, now_us} when taken (Redis `TIME` at the grant); {-1, wait_us} when a window
-- is full: enough of its slots to take one lapse in wait_us.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
for j = 1, #KEYS do
  -- A window refilled after Redis lost writes (`Pool.fill_send_windows`) is full until then.
  local refill = tonumber(redis.call('ZSCORE', KEYS[j], 'refill') or 0)
  if refill > now then return {-1, refill - now} end
  -- Lapsed slots are purged only when they would make the window look full.
  local held = redis.call('ZCARD', KEYS[j])
  local calls = tonumber(ARGV[2 + j])
  if held >= calls then
    held = held - redis.call('ZREMRANGEBYSCORE', KEYS[j], '-inf', now)
  end
  if held >= calls then
    local lapse = redis.call('ZRANGE', KEYS[j], held - calls, held - calls, 'WITHSCORES')
    return {-1, tonumber(lapse[2]) - now}
  end
end
for j = 1, #KEYS do
  redis.call('ZADD', KEYS[j], now + tonumber(ARGV[2]), ARGV[1])
end
return {1, now}
