-- Acquire leases for a batch of requests, in order: each takes one lease in every one of its
-- scopes at once, or in none, within its CPS limits.
--
-- KEYS[1..S]        the scopes' sorted sets (member = attempt id, score = lease expiry, ms)
-- KEYS[S+1..S+L]    the GCRA keys (theoretical arrival time, µs)
-- KEYS[S+L+1..]     optional: the pool's generation keys (the account's, the provider
--                   account's), which must all exist (else the pool was lost with Redis
--                   and must be rebuilt before any lease is taken); then, when a fencing
--                   token follows the requests in ARGV, the pacer's lock (last key)
-- ARGV[1], ARGV[2]  S, L
-- ARGV[3]           booking horizon, µs: a call may be booked this far ahead of now
-- ARGV[4..3+S]      each scope's cap
-- ARGV[4+S..3+S+L]  each limit's emission interval, µs (1e6 / calls per second)
-- then              R, the number of requests, and per request: member, lease length (ms),
--                   its own scope's index (0: none), its scopes' count and indexes (the
--                   first is the account's), its limits' count and indexes
--
-- Returns a list with one {code, detail} per request handled: {-2, 0} when a generation
-- key is missing (the only entry); {1, delay_us} when acquired: the call's slot is delay_us
-- from now (0: at once); {0, i} when scope i is full; {-1, wait_us} when the CPS limits
-- have no slot within the horizon for wait_us more. The batch stops after a {-1, _} and
-- after a {0, i} where scope i is not the request's own (the account, a caller ID: every
-- later request would be refused too); a request whose own scope (its campaign's) is full
-- is refused and the batch goes on.
--
-- Leases are taken in every scope at once and normally released from every scope, so the
-- first scope tells whether a member holds one already (it is then acquired again without
-- a new slot); lapsed leases (a crash) are purged from a scope only when they would make it
-- look full.
--
-- GCRA (Brandur Leach, "Rate limiting, cells, and GCRA", 2015, after the ATM Forum's
-- Generic Cell Rate Algorithm) without burst tolerance: a call's slot is its limits'
-- latest theoretical arrival time, or now if that has passed, so booked calls are at least
-- one interval apart. Booking a little ahead lets one pacer round schedule several calls.
local S = tonumber(ARGV[1])
local L = tonumber(ARGV[2])
local horizon = tonumber(ARGV[3])
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now = math.floor(now_us / 1000)

local caps, intervals = {}, {}
for i = 1, S do caps[i] = tonumber(ARGV[3 + i]) end
for j = 1, L do intervals[j] = tonumber(ARGV[3 + S + j]) end
local pos = 4 + S + L
local requests = {}
for r = 1, tonumber(ARGV[pos]) do
  local req = {member = ARGV[pos + 1], lease = tonumber(ARGV[pos + 2]),
               own = tonumber(ARGV[pos + 3]), scopes = {}, limits = {}}
  pos = pos + 4
  for k = 1, tonumber(ARGV[pos]) do req.scopes[k] = tonumber(ARGV[pos + k]) end
  pos = pos + tonumber(ARGV[pos]) + 1
  for k = 1, tonumber(ARGV[pos]) do req.limits[k] = tonumber(ARGV[pos + k]) end
  pos = pos + tonumber(ARGV[pos])  -- the last field read: the next request follows it
  requests[r] = req
end

local generations = #KEYS - S - L
if ARGV[pos + 1] then
  generations = generations - 1
  if redis.call('GET', KEYS[#KEYS]) ~= ARGV[pos + 1] then return {{-3, 0}} end
end
if generations > 0 and redis.call('EXISTS', unpack(KEYS, S + L + 1, S + L + generations))
    < generations then
  return {{-2, 0}}
end

-- Leases already held, one ZMSCORE per first scope.
local held, asked = {}, {}
for _, req in ipairs(requests) do
  local first = req.scopes[1]
  asked[first] = asked[first] or {}
  table.insert(asked[first], req.member)
end
for i, members in pairs(asked) do
  local scores = redis.call('ZMSCORE', KEYS[i], unpack(members))
  for k, member in ipairs(members) do
    if scores[k] and tonumber(scores[k]) > now then held[member] = true end
  end
end

local counts, purged, tats, booked, adds = {}, {}, {}, {}, {}
local function has_room(i)
  if counts[i] == nil then counts[i] = redis.call('ZCARD', KEYS[i]) end
  if counts[i] >= caps[i] and not purged[i] then
    purged[i] = true
    counts[i] = counts[i] - redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  end
  return counts[i] < caps[i]
end

local function take(req)
  if held[req.member] then return {1, 0} end
  for _, i in ipairs(req.scopes) do
    if not has_room(i) then return {0, i} end
  end
  local slot = now_us
  for _, j in ipairs(req.limits) do
    if tats[j] == nil then tats[j] = tonumber(redis.call('GET', KEYS[S + j]) or now_us) end
    if tats[j] > slot then slot = tats[j] end
  end
  if slot - now_us > horizon then return {-1, slot - now_us - horizon} end
  for _, j in ipairs(req.limits) do
    tats[j] = math.max(tats[j], slot) + intervals[j]
    booked[j] = true
  end
  for _, i in ipairs(req.scopes) do
    counts[i] = counts[i] + 1
    adds[i] = adds[i] or {}
    table.insert(adds[i], now + req.lease)
    table.insert(adds[i], req.member)
  end
  held[req.member] = true
  return {1, slot - now_us}
end

local out = {}
for r, req in ipairs(requests) do
  local got = take(req)
  out[r] = got
  if got[1] == -1 or (got[1] == 0 and got[2] ~= req.own) then break end
end

for j in pairs(booked) do
  redis.call('SET', KEYS[S + j], string.format('%d', tats[j]),
    'PX', math.ceil((tats[j] - now_us) / 1000) + 1000)
end
for i, members in pairs(adds) do
  redis.call('ZADD', KEYS[i], unpack(members))
end
return out
