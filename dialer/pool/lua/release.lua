-- Release a lease from every scope; idempotent. Wakes the pacer when a slot was freed.
--
-- KEYS[1..n-1]  the scopes' sorted sets
-- KEYS[n]       the pacer's wake list
-- ARGV[1]       member (attempt id)
-- Returns how many scopes held the lease.
local removed = 0
for i = 1, #KEYS - 1 do
  removed = removed + redis.call('ZREM', KEYS[i], ARGV[1])
end
-- The wake list is kept short (a pacer empties it when it wakes; none may run for a while).
if removed > 0 and redis.call('LPUSH', KEYS[#KEYS], ARGV[1]) > 1000 then
  redis.call('LTRIM', KEYS[#KEYS], 0, 999)
end
return removed
