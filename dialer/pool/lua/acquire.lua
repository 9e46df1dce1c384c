-- Acquire leases for a batch of requests, in order: each takes one lease in every one of its
-- scopes at once, or in none, within its CPS limits.
--
-- KEYS[1..S]        the scopes' sorted sets (member = attempt id, score = lease expiry, ms)
-- KEYS[S+1..S+L]    the GCRA keys (theoretical arrival time, µs)
-- KEYS[S+L+1..S+L+D] the caller IDs' dial windows (sorted sets: member = attempt id,
--                   score = admission time, ms of the dial clock)
-- KEYS[S+L+D+1..]   optional: the pool's generation keys (the account's, the provider
--                   account's), which must all exist (else the pool was lost with Redis
--                   and must be rebuilt before any lease is taken); then, when a fencing
--                   token ends ARGV, the pacer's lock (last key)
-- ARGV[1], ARGV[2]  S, L
-- ARGV[3]           booking horizon, µs: a call may be booked this far ahead of now
-- ARGV[4..3+S]      each scope's cap
-- ARGV[4+S..3+S+L]  each limit's emission interval, µs (1e6 / calls per second)
-- then              R, the number of requests, and per request: member, lease length (ms),
--                   its own scope's index (0: none), its scopes' count and indexes (the
--                   first is the account's), its limits' count and indexes, its caller-ID
--                   candidates' count, how many of them are preferred, and their indexes
-- then              the dial clock: now (ms; 0: Redis TIME), a minute's and a day's length
--                   (ms); D, the caller IDs (caller ID c's dial window is KEYS[S+L+c]), and
--                   per caller ID: its scope's index (live calls presenting it), its most
--                   calls a minute and a day (0: no limit)
-- then, optional    the pacer's fencing token (`dialer.pool.Fence`): nothing is taken
--                   unless the pacer's lock (the last key) holds it
--
-- Returns a list with one {code, detail, caller} per request handled: {-2, 0} when a
-- generation key is missing (the only entry); {1, delay_us, c} when acquired: the call's
-- slot is delay_us from now (0: at once), presenting caller ID c (0: the request had no
-- candidate); {0, i} when scope i is full; {-1, wait_us} when the CPS limits have no slot
-- within the horizon for wait_us more; {-4, 0} when the fencing token is given and the
-- pacer's lock no longer holds it (the only entry); {-3, wait_us} when no candidate caller ID may
-- present another call: at their concurrency cap, or at their minute's or day's limit
-- (wait_us: until the first window lets one, 0 when only a release can). The batch stops
-- after a {-1, _} and after a {0, i} where scope i is not the request's own (the account,
-- the provider account: every later request would be refused too); a request whose own
-- scope (its campaign's) is full, or whose caller IDs are spent, is refused and the batch
-- goes on.
--
-- Caller-ID selection (dialer.pool.caller_ids orders the candidates): the preferred ones
-- (the number the contact was last called from, then local ones) in order, the first that
-- may present the call; else, of the others, the least used: fewest live calls plus calls
-- in the last day, counted in Redis as this batch takes them. A caller ID's limits are
-- sliding windows over its admissions (kept one day, trimmed as they are read): calls a
-- minute and a day, so a number at either limit is skipped, never over-used.
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
  pos = pos + tonumber(ARGV[pos]) + 1
  req.cands, req.pref = {}, tonumber(ARGV[pos + 1])
  for k = 1, tonumber(ARGV[pos]) do req.cands[k] = tonumber(ARGV[pos + 1 + k]) end
  pos = pos + tonumber(ARGV[pos]) + 1  -- the last field read: the next request follows it
  requests[r] = req
end
local wnow = tonumber(ARGV[pos + 1])
if wnow == 0 then wnow = now end
local minute_ms, day_ms = tonumber(ARGV[pos + 2]), tonumber(ARGV[pos + 3])
local D, callers = tonumber(ARGV[pos + 4]), {}
pos = pos + 4
for c = 1, D do
  callers[c] = {scope = tonumber(ARGV[pos + 1]), window = S + L + c,
                minute = tonumber(ARGV[pos + 2]), day = tonumber(ARGV[pos + 3]), adds = {}}
  pos = pos + 3
end

local generations = #KEYS - S - L - D
local token = ARGV[pos + 1]
if token then
  generations = generations - 1
  if redis.call('GET', KEYS[#KEYS]) ~= token then return {{-4, 0}} end
end
if generations > 0 and redis.call('EXISTS', unpack(KEYS, S + L + D + 1, S + L + D + generations))
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

-- A caller ID's calls in its dial window's last minute and day: Redis's (trimmed to the
-- day once) plus this batch's.
local function dials(c)
  local caller = callers[c]
  if caller.in_day == nil then
    local key = KEYS[caller.window]
    redis.call('ZREMRANGEBYSCORE', key, '-inf', wnow - day_ms)
    caller.in_day = redis.call('ZCARD', key)
    caller.in_minute = redis.call('ZCOUNT', key, '(' .. (wnow - minute_ms), '+inf')
    caller.stored_minute = caller.in_minute
  end
  return caller
end

-- Microseconds until caller c's window of `length` ms lets one more call, with `count`
-- calls in it (`stored` of them in Redis, the rest this batch's, at `wnow`) and `limit`.
local function window_wait(c, length, count, stored, limit)
  local leaving = count - limit  -- 0-based rank of the call that must leave the window
  if leaving >= stored then return length * 1000 end
  local first = redis.call('ZRANGEBYSCORE', KEYS[callers[c].window], '(' .. (wnow - length),
    '+inf', 'WITHSCORES', 'LIMIT', leaving, 1)
  return math.max(0, (tonumber(first[2]) + length - wnow) * 1000)
end

-- Whether caller ID c may present one more call now; if not, how long until it may (µs;
-- 0: when a call presenting it ends).
local function may_present(c)
  local caller = callers[c]
  if not has_room(caller.scope) then return false, 0 end
  dials(c)
  if caller.day > 0 and caller.in_day >= caller.day then
    return false, window_wait(c, day_ms, caller.in_day, caller.in_day - #caller.adds / 2,
      caller.day)
  end
  if caller.minute > 0 and caller.in_minute >= caller.minute then
    return false, window_wait(c, minute_ms, caller.in_minute, caller.stored_minute,
      caller.minute)
  end
  return true, 0
end

local function pick(req)
  local wait = nil
  local function refused(w)
    if w > 0 and (wait == nil or w < wait) then wait = w end
  end
  for k = 1, req.pref do
    local ok, w = may_present(req.cands[k])
    if ok then return req.cands[k] end
    refused(w)
  end
  local best, best_use = nil, nil
  for k = req.pref + 1, #req.cands do
    local c = req.cands[k]
    local ok, w = may_present(c)
    if ok then
      local use = counts[callers[c].scope] + callers[c].in_day
      if best == nil or use < best_use then best, best_use = c, use end
    else
      refused(w)
    end
  end
  return best, wait or 0
end

local function take(req)
  if held[req.member] then return {1, 0, 0} end
  for _, i in ipairs(req.scopes) do
    if not has_room(i) then return {0, i} end
  end
  local caller = nil
  if #req.cands > 0 then
    local wait
    caller, wait = pick(req)
    if caller == nil then return {-3, wait} end
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
  local taken = {unpack(req.scopes)}
  if caller then
    local c = callers[caller]
    table.insert(taken, c.scope)
    c.in_day, c.in_minute = c.in_day + 1, c.in_minute + 1
    table.insert(c.adds, wnow)
    table.insert(c.adds, req.member)
  end
  for _, i in ipairs(taken) do
    counts[i] = counts[i] + 1
    adds[i] = adds[i] or {}
    table.insert(adds[i], now + req.lease)
    table.insert(adds[i], req.member)
  end
  held[req.member] = true
  return {1, slot - now_us, caller or 0}
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
for _, caller in ipairs(callers) do
  if #caller.adds > 0 then
    redis.call('ZADD', KEYS[caller.window], unpack(caller.adds))
    redis.call('PEXPIRE', KEYS[caller.window], day_ms + 60000)
  end
end
return out
