-- Admissions and releases of one process gathered over one event-loop tick, in order, in one
-- script: each admission checks its limits against the cluster-wide sums *including the ones
-- admitted before it in this batch*, so a batch is exactly as strict as one script per connection.
-- KEYS: nodes, this process's alive, counts, conns. ARGV: prefix, me, ttl, then the operations:
--   'a', id, record, n, (field, limit) * n, nf, field * nf   -> 0 admitted, i refused by check i
--   'r', id, nf, field * nf                                  -> 0 (nothing when the record is absent)
local prefix, me, ttl = ARGV[1], ARGV[2], ARGV[3]
local out = {}
local live = nil
local admitted = false
local i = 4
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'a' then
    local id, rec, n = ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
    local c = i + 4
    local f = c + 2 * n
    local nf = tonumber(ARGV[f])
    local refused = 0
    if n > 0 then
      if live == nil then
        live = {}
        for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
          if node == me or redis.call('EXISTS', prefix .. 'node:' .. node .. ':alive') == 1 then
            live[#live + 1] = node
          else
            redis.call('SREM', KEYS[1], node)
            redis.call('DEL', prefix .. 'node:' .. node .. ':counts', prefix .. 'node:' .. node .. ':conns')
          end
        end
        local seen = false
        for _, node in ipairs(live) do if node == me then seen = true end end
        if not seen then live[#live + 1] = me end
      end
      for k = 1, n do
        local field, limit = ARGV[c + 2 * k - 2], tonumber(ARGV[c + 2 * k - 1])
        local sum = 0
        for _, node in ipairs(live) do
          sum = sum + tonumber(redis.call('HGET', prefix .. 'node:' .. node .. ':counts', field) or '0')
        end
        if sum >= limit then refused = k break end
      end
    end
    if refused == 0 then
      for j = f + 1, f + nf do redis.call('HINCRBY', KEYS[3], ARGV[j], 1) end
      redis.call('HSET', KEYS[4], id, rec)
      admitted = true
    end
    out[#out + 1] = refused
    i = f + nf + 1
  elseif op == 'r' then
    local id, nf = ARGV[i + 1], tonumber(ARGV[i + 2])
    -- Only a record that is here is uncounted: a release may come for an admission Redis never
    -- ran (a timed-out batch) or twice (a cancelled waiter's), and must then change nothing.
    if redis.call('HDEL', KEYS[4], id) == 1 then
      for j = i + 3, i + 2 + nf do
        if redis.call('HINCRBY', KEYS[3], ARGV[j], -1) <= 0 then redis.call('HDEL', KEYS[3], ARGV[j]) end
      end
    end
    out[#out + 1] = 0
    i = i + 3 + nf
  else
    return redis.error_reply('rockstar_ws registry batch: unknown operation ' .. tostring(op))
  end
end
if admitted then
  redis.call('SADD', KEYS[1], me)
  -- The set of nodes expires too, once no process writes any more; a process only lengthens its
  -- expiry (processes may run with different TTLs).
  if redis.call('PTTL', KEYS[1]) < tonumber(ttl) then redis.call('PEXPIRE', KEYS[1], ttl) end
  redis.call('SET', KEYS[2], '1', 'PX', ttl)
  redis.call('PEXPIRE', KEYS[3], ttl)
  redis.call('PEXPIRE', KEYS[4], ttl)
end
return out
