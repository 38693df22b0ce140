for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if node ~= ARGV[1] and redis.call('EXISTS', ARGV[3] .. 'node:' .. node .. ':alive') == 0 then
    redis.call('SREM', KEYS[1], node)
    redis.call('DEL', ARGV[3] .. 'node:' .. node .. ':counts', ARGV[3] .. 'node:' .. node .. ':conns')
  end
end
redis.call('SADD', KEYS[1], ARGV[1])
-- The set of nodes expires too, once no process writes any more; a process only lengthens its
-- expiry (processes may run with different TTLs).
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
redis.call('PEXPIRE', KEYS[4], ARGV[2])
local kept = redis.call('PEXPIRE', KEYS[3], ARGV[2])
-- The master's replication id changes when a replica is promoted (a failover) or a Redis
-- restarts without its data: the process then rewrites its state (writes the old master took
-- may not have reached the replica). '' where INFO is not allowed in scripts.
local info = redis.pcall('INFO', 'replication')
local replid = type(info) == 'string' and string.match(info, 'master_replid:(%w+)') or ''
return {kept, replid}
