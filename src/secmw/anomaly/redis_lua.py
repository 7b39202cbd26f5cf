"""The Lua script that runs a request's shared anomaly operations in one Redis round trip.

The same counting as the in-memory detectors, done atomically for every
instance that shares the server:

* ``w`` (a threshold in a window): the key is a list of the last ``threshold``
  event times; when the list is full and its oldest time is within ``window``
  the burst fires, the list is cleared (the next alert needs ``threshold`` new
  events) and, for a ``block`` or ``step_up`` response, the enforcement key is
  set with the cool-down as its expiry, in the same step;
* ``r`` (token reuse): the key is a hash of client address -> last seen; a new
  address drops the ones idle for ``window`` and, when ``threshold`` remain,
  fires, keeps only the new address and sets the enforcement key;
* ``g`` (get): an enforcement key's value and remaining time (ms);
* ``s`` (set): an enforcement decided by an instance (``SET ... PX``).

``ARGV[1]`` is the caller's time in ms; then, per operation, its code and its
arguments (``w``: the event's time, window, threshold, value, px; ``r``: client, window,
threshold, value, px; ``g``: none; ``s``: value, px). ``w`` and ``r`` take two
keys (counter, enforcement), ``g`` and ``s`` one. The reply holds two values per
operation: ``w`` fired (1/0) and 0; ``r`` the address count when it fired (else
0) and 0; ``g`` the value (``""`` when absent) and its remaining ms; ``s`` 1, 0.
Every counter carries an expiry of its window, so Redis memory is bounded by
the keys active within a window.
"""

from __future__ import annotations

import hashlib

SCRIPT = r"""
local now = tonumber(ARGV[1])
local out = {}
local a = 2
local k = 1
while a <= #ARGV do
  local op = ARGV[a]
  if op == 'w' then
    local key, enforce = KEYS[k], KEYS[k + 1]
    local at, window = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    local threshold = tonumber(ARGV[a + 3])
    local value, px = ARGV[a + 4], ARGV[a + 5]
    k = k + 2
    a = a + 6
    redis.call('LPUSH', key, ARGV[a - 5])
    redis.call('LTRIM', key, 0, threshold - 1)
    local fired = 0
    if redis.call('LLEN', key) >= threshold then
      local oldest = tonumber(redis.call('LINDEX', key, -1))
      if at - oldest < window then
        fired = 1
        redis.call('DEL', key)
        if value ~= '' then redis.call('SET', enforce, value, 'PX', px) end
      end
    end
    if fired == 0 then redis.call('PEXPIRE', key, math.ceil(window)) end
    out[#out + 1] = fired
    out[#out + 1] = 0
  elseif op == 'r' then
    local key, enforce = KEYS[k], KEYS[k + 1]
    local client, window, threshold = ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
    local value, px = ARGV[a + 4], ARGV[a + 5]
    k = k + 2
    a = a + 6
    local count = 0
    if redis.call('HEXISTS', key, client) == 1 then
      redis.call('HSET', key, client, ARGV[1])
    else
      local seen = redis.call('HGETALL', key)
      for i = 1, #seen, 2 do
        if tonumber(seen[i + 1]) <= now - window then redis.call('HDEL', key, seen[i]) end
      end
      redis.call('HSET', key, client, ARGV[1])
      local n = redis.call('HLEN', key)
      if n >= threshold then
        count = n
        redis.call('DEL', key)
        redis.call('HSET', key, client, ARGV[1])
        if value ~= '' then redis.call('SET', enforce, value, 'PX', px) end
      end
    end
    redis.call('PEXPIRE', key, math.ceil(window))
    out[#out + 1] = count
    out[#out + 1] = 0
  elseif op == 'g' then
    local key = KEYS[k]
    k = k + 1
    a = a + 1
    local value = redis.call('GET', key)
    if value then
      out[#out + 1] = value
      out[#out + 1] = redis.call('PTTL', key)
    else
      out[#out + 1] = ''
      out[#out + 1] = 0
    end
  elseif op == 's' then
    redis.call('SET', KEYS[k], ARGV[a + 1], 'PX', ARGV[a + 2])
    k = k + 1
    a = a + 3
    out[#out + 1] = 1
    out[#out + 1] = 0
  else
    return redis.error_reply('unknown operation')
  end
end
return out
"""

SCRIPT_SHA = hashlib.sha1(SCRIPT.encode(), usedforsecurity=False).hexdigest()
