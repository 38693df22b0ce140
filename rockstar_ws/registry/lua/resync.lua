redis.call('DEL', KEYS[3], KEYS[4])
local n = tonumber(ARGV[3])
for i = 0, n - 1 do redis.call('HSET', KEYS[3], ARGV[4 + 2 * i], ARGV[5 + 2 * i]) end
for j = 4 + 2 * n, #ARGV, 2 do redis.call('HSET', KEYS[4], ARGV[j], ARGV[j + 1]) end
redis.call('SADD', KEYS[1], ARGV[1])
-- The set of nodes expires too, once no process writes any more; a process only lengthens its
-- expiry (processes may run with different TTLs).
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
redis.call('PEXPIRE', KEYS[3], ARGV[2])
redis.call('PEXPIRE', KEYS[4], ARGV[2])
return 0
