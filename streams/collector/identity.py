"""Anonymous visitors in Redis: the link from an anonymous id to a customer and the
anonymous history moved onto the customer at identify, each one atomic script."""

from __future__ import annotations

#: An anonymous event: the linked customer if there is one, else the event joins the
#: anonymous id's history. One atomic step, so an identify sees every event it must move.
LINK_LUA = """
local customer = redis.call('GET', KEYS[1])
if customer then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return customer
end
local keep = tonumber(ARGV[2])
if keep > 0 then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  redis.call('LTRIM', KEYS[2], -keep, -1)
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
return false
"""

#: Link an anonymous id to a customer and return its history, atomically.
IDENTIFY_LUA = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return redis.call('LRANGE', KEYS[2], 0, -1)
"""


def link_key(prefix: str, anonymous_id: str) -> str:
    """The customer an anonymous id is linked to (a string, with a TTL).

    >>> link_key("seg", "a-1"), history_key("seg", "a-1")
    ('seg:anon:{a-1}', 'seg:anon:{a-1}:events')
    """
    return f"{prefix}:anon:{{{anonymous_id}}}"


def history_key(prefix: str, anonymous_id: str) -> str:
    """The anonymous id's recent events as produced (a list, with a TTL)."""
    return f"{prefix}:anon:{{{anonymous_id}}}:events"
