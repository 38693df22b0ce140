local prefix, me, ttl = ARGV[1], ARGV[2], ARGV[3]
local n = tonumber(ARGV[6])
if n > 0 then
  local live = {}
  for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    if node == me or redis.call('EXISTS', prefix .. 'node:' .. node .. ':alive') == 1 then
      live[#live + 1] = node
    else
      redis.call('SREM', KEYS[1], node)
      redis.call('DEL', prefix .. 'node:' .. node .. ':counts', prefix .. 'node:' .. node .. ':conns')
    end
  end
  for i = 1, n do
    local field, limit = ARGV[5 + 2 * i], tonumber(ARGV[6 + 2 * i])
    local sum = 0
    for _, node in ipairs(live) do
      sum = sum + tonumber(redis.call('HGET', prefix .. 'node:' .. node .. ':counts', field) or '0')
    end
    if sum >= limit then return i end
  end
end
for j = 7 + 2 * n, #ARGV do redis.call('HINCRBY', KEYS[3], ARGV[j], 1) end
redis.call('HSET', KEYS[4], ARGV[4], ARGV[5])
redis.call('SADD', KEYS[1], me)
redis.call('SET', KEYS[2], '1', 'PX', ttl)
redis.call('PEXPIRE', KEYS[3], ttl)
redis.call('PEXPIRE', KEYS[4], ttl)
return 0
