-- A process shutting down cleanly: its node and every key of it go now, not at the TTL.
-- KEYS: nodes, this process's alive, counts, conns. ARGV: me.
redis.call('SREM', KEYS[1], ARGV[1])
return redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
