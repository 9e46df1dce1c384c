-- Release a lease from every scope; idempotent. Wakes the pacer when a slot was freed, and
-- one pacer (of any account) that waits for room in the provider account's scope.
--
-- KEYS[1..n-2]  the scopes' sorted sets
-- KEYS[n-1]     the pacer's wake list
-- KEYS[n]       the provider account's waiters: a set of the wake lists of pacers that
--               found its scope full (each freed slot wakes one, taken at random)
-- ARGV[1]       member (attempt id)
-- Returns how many scopes held the lease.
local removed = 0
for i = 1, #KEYS - 2 do
  removed = removed + redis.call('ZREM', KEYS[i], ARGV[1])
end
if removed == 0 then return 0 end
-- The wake list is kept short (a pacer empties it when it wakes; none may run for a while).
if redis.call('LPUSH', KEYS[#KEYS - 1], ARGV[1]) > 1000 then
  redis.call('LTRIM', KEYS[#KEYS - 1], 0, 999)
end
-- A waiter's wake list is named by the waiter (it is another account's key: the pool runs
-- on one Redis, see dialer.pool).
local waiter = redis.call('SPOP', KEYS[#KEYS])
if waiter then
  redis.call('LPUSH', waiter, ARGV[1])
  redis.call('LTRIM', waiter, 0, 999)
end
return removed
