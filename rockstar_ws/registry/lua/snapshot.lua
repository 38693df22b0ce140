local prefix, out = ARGV[1], {}
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local base = prefix .. 'node:' .. node
  if redis.call('EXISTS', base .. ':alive') == 1 then
    local recs = {}
    if ARGV[2] == '1' then recs = redis.call('HVALS', base .. ':conns') end
    out[#out + 1] = {node, redis.call('HGETALL', base .. ':counts'), recs}
  end
end
return out
