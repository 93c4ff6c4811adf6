"""Leases in Redis, as Lua: one holder at a time, taken when free, renewed by its holder,
given up only by its holder. The store's named leases (`RedisStore.hold_lease`: one outbox
deliverer across nodes) and the rooms' owners (`liveroom.cluster`) are both these."""

from __future__ import annotations

__all__ = ["HOLD_LEASE", "RELEASE_LEASE"]

# KEYS: the lease. ARGV: holder, ttl (ms). 1 if the holder has it now (taken or renewed).
HOLD_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS: the lease. ARGV: holder. Deleted only by its holder.
RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""
