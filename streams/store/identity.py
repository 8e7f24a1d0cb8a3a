"""Anonymous visitors in Redis: the link from an anonymous id to a customer and the
anonymous history moved onto the customer at identify, each one atomic script. The
collector's Redis part, here so that only streams/store/ speaks Redis.
"""

from __future__ import annotations

from typing import Any

import redis.exceptions

#: What a Redis that does not answer raises (a Redis Cluster client with no reachable
#: node raises ``RedisClusterException``; one whose slots are not all served,
#: ``ClusterDownError``).
REDIS_DOWN = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.RedisClusterException,
    OSError,
)

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


async def link_events(
    client: Any, prefix: str, events: list[tuple[str, bytes]], *, keep: int, ttl: int
) -> list[str | None]:
    """Per ``(anonymous id, event JSON)``: the linked customer, or None when the event
    joined the id's history (at most ``keep`` events, ``ttl`` seconds). One pipeline."""
    pipe = client.pipeline(transaction=False)
    for aid, event in events:
        # EVAL: one slot per call (the keys share the anonymous id's hash tag), and
        # nothing to reload after a Redis restart.
        pipe.eval(LINK_LUA, 2, link_key(prefix, aid), history_key(prefix, aid), event, keep, ttl)
    return [customer.decode() if customer else None for customer in await pipe.execute()]


async def link_customer(
    client: Any, prefix: str, anonymous_id: str, customer: str, *, ttl: int
) -> list[bytes]:
    """Link the anonymous id to ``customer`` and return its history (events as JSON)."""
    history: list[bytes] = await client.eval(
        IDENTIFY_LUA,
        2,
        link_key(prefix, anonymous_id),
        history_key(prefix, anonymous_id),
        customer,
        ttl,
    )
    return history


async def drop_history(client: Any, prefix: str, anonymous_id: str) -> None:
    """Forget the anonymous history once it was re-published under the customer."""
    await client.delete(history_key(prefix, anonymous_id))


async def ping(client: Any) -> None:
    """PING; raises what the client raises when Redis does not answer."""
    await client.ping()
