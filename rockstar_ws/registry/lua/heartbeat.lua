for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if node ~= ARGV[1] and redis.call('EXISTS', ARGV[3] .. 'node:' .. node .. ':alive') == 0 then
    redis.call('SREM', KEYS[1], node)
    redis.call('DEL', ARGV[3] .. 'node:' .. node .. ':counts', ARGV[3] .. 'node:' .. node .. ':conns')
  end
end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
redis.call('PEXPIRE', KEYS[4], ARGV[2])
return redis.call('PEXPIRE', KEYS[3], ARGV[2])
