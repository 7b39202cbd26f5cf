"""The one Lua script that checks and then updates every tier of a request in Redis.

Redis runs a script atomically, so two requests from two processes can never
both see the same remaining quota: the check of all tiers and the update of all
tiers happen as one step, and a request refused by one tier consumes nothing
from the others (exactly as :class:`~secmw.ratelimit.memory.MemoryStore` does in
one process). Times are milliseconds; ``now`` is the Redis server's ``TIME``
unless the caller passes one (tests with a fake clock do).

``KEYS[i]`` is the counter of check ``i``; ``ARGV`` is ``now`` (or empty) and
then six values per check: algorithm (1 fixed, 2 moving, 3 sliding-window
counter, 4 GCRA), amount, window (ms), cost, burst and shadow (``1``/``0``).
The reply has four integers per check: allowed, remaining, reset (ms) and
retry-after (ms). Every state string holds its own times, so expiry (PEXPIRE)
is only garbage collection.
"""

from __future__ import annotations

import hashlib

ALGORITHM_CODES = {"fixed-window": 1, "moving-window": 2, "sliding-window-counter": 3, "gcra": 4}

SCRIPT = r"""
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
local function fmt(x) return string.format('%.17g', x) end
local out, plan = {}, {}
local admitted = true
for i = 1, #KEYS do
  local b = 1 + (i - 1) * 6
  local algo, amount = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
  local window, cost = tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  local burst, shadow = tonumber(ARGV[b + 5]), ARGV[b + 6] == '1'
  local key = KEYS[i]
  local ok, remaining, reset, retry = false, 0, 0, 0
  local state, ttl, start = nil, 0, 0
  if algo == 1 then
    local count, wend = 0, now + window
    local raw = redis.call('GET', key)
    if raw then
      local c, e = string.match(raw, '^(%S+) (%S+)$')
      if tonumber(e) > now then count, wend = tonumber(c), tonumber(e) end
    end
    reset = wend - now
    if count + cost > amount then
      remaining = amount - count
      if cost <= amount then retry = wend - now else retry = window end
    else
      ok, count = true, count + cost
      remaining, state, ttl = amount - count, fmt(count) .. ' ' .. fmt(wend), wend - now
    end
  elseif algo == 2 then
    -- The log is ascending: the first live entry is found by bisection and only
    -- the entries the answer needs are read (LRANGE of a long log made every
    -- refused request cost O(amount) of the server's time).
    local n = redis.call('LLEN', key)
    local lo, hi = 0, n
    while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      if tonumber(redis.call('LINDEX', key, mid)) > now - window then hi = mid else lo = mid + 1 end
    end
    start = lo + 1
    local live = n - lo
    if live + cost > amount then
      if cost > amount then retry = window
      else
        local oldest = redis.call('LINDEX', key, lo + live + cost - amount - 1)
        retry = tonumber(oldest) + window - now
      end
      if live > 0 then reset = tonumber(redis.call('LINDEX', key, lo)) + window - now end
      remaining = math.max(0, amount - live)
    else
      ok, remaining, ttl = true, amount - live - cost, window
      if live > 0 then reset = tonumber(redis.call('LINDEX', key, lo)) + window - now
      elseif cost > 0 then reset = window end
    end
  elseif algo == 3 then
    local index = math.floor(now / window)
    local cur, prev = 0, 0
    local raw = redis.call('GET', key)
    if raw then
      local si, sc, sp = string.match(raw, '^(%S+) (%S+) (%S+)$')
      si = tonumber(si)
      if si == index then cur, prev = tonumber(sc), tonumber(sp)
      elseif si == index - 1 then prev = tonumber(sc) end
    end
    local elapsed = now - index * window
    local to_end = window - elapsed
    local weighted = prev * to_end / window + cur
    reset = to_end
    if weighted + cost > amount + 1e-9 then
      remaining = math.max(0, amount - math.ceil(weighted))
      if cost > amount then retry = window
      elseif cur + cost <= amount then
        retry = math.max(0, window - (amount - cur - cost) * window / prev - elapsed)
      else
        retry = to_end + math.max(0, window - (amount - cost) * window / cur)
      end
    else
      ok = true
      remaining = math.max(0, math.floor(amount - (weighted + cost)))
      state = fmt(index) .. ' ' .. fmt(cur + cost) .. ' ' .. fmt(prev)
      ttl = (index + 2) * window - now
    end
  else
    local interval = window / amount
    -- Relative to now, with 1 microsecond of tolerance: TAT - tau in epoch
    -- milliseconds carries rounding that would refuse a cost equal to the burst.
    local tat = tonumber(redis.call('GET', key) or '')
    local lead = 0
    if tat and tat > now then lead = tat - now end
    local wait = lead + interval * (cost - burst)
    if wait > 1e-3 then
      remaining = math.max(0, math.floor(burst - (lead - 1e-3) / interval + 1e-9))
      reset = lead
      if cost <= burst then retry = wait else retry = window end
    else
      ok = true
      lead = lead + interval * cost
      remaining = math.max(0, math.floor(burst - (lead - 1e-3) / interval + 1e-9))
      reset, state, ttl = lead, fmt(now + lead), lead
    end
  end
  if not ok and not shadow then admitted = false end
  plan[i] = {ok, algo, state, ttl, start, cost}
  local n = #out
  out[n + 1] = ok and 1 or 0
  out[n + 2] = remaining
  out[n + 3] = math.ceil(reset)
  out[n + 4] = math.ceil(retry)
end
if admitted then
  for i = 1, #KEYS do
    local p = plan[i]
    if p[1] and p[6] > 0 then
      local key, ttl = KEYS[i], math.max(1, math.ceil(p[4]))
      if p[2] == 2 then
        if p[5] > 1 then redis.call('LTRIM', key, p[5] - 1, -1) end
        for _ = 1, p[6] do redis.call('RPUSH', key, fmt(now)) end
        redis.call('PEXPIRE', key, ttl)
      else
        redis.call('SET', key, p[3], 'PX', ttl)
      end
    end
  end
end
return out
"""

SCRIPT_SHA = hashlib.sha1(SCRIPT.encode(), usedforsecurity=False).hexdigest()
