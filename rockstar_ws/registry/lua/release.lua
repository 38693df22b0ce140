for i = 2, #ARGV do
  if redis.call('HINCRBY', KEYS[1], ARGV[i], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[i]) end
end
redis.call('HDEL', KEYS[2], ARGV[1])
return 0
