"""The redrive ledger: which dead letters ``segstream deadletters redrive`` sent back.

One hash (``keys.redriven_key``), a field per dead letter. A redrive claims its records
with ``HSETNX`` before sending them, so two redrives (one after the other, or at once)
never send the same dead letter twice; a claim whose send failed is released again.
"""

from __future__ import annotations

from typing import Any

from streams.store.keys import redriven_key


def already_redriven(client: Any, prefix: str, fields: list[str]) -> set[str]:
    """The ``fields`` the ledger holds (one ``HMGET``)."""
    if not fields:
        return set()
    values = client.hmget(redriven_key(prefix), fields)
    return {f for f, v in zip(fields, values, strict=True) if v is not None}


def claim(client: Any, prefix: str, entries: dict[str, bytes]) -> set[str]:
    """Write each field -> value that is not there yet; return the fields written (the
    others were redriven before)."""
    if not entries:
        return set()
    key = redriven_key(prefix)
    pipe = client.pipeline(transaction=False)
    names = list(entries)
    for name in names:
        pipe.hsetnx(key, name, entries[name])
    return {n for n, new in zip(names, pipe.execute(), strict=True) if new}


def overwrite(client: Any, prefix: str, entries: dict[str, bytes]) -> None:
    """Write each field -> value, redriven before or not (``redrive --force``)."""
    if entries:
        client.hset(redriven_key(prefix), mapping=entries)


def release(client: Any, prefix: str, fields: list[str]) -> None:
    """Forget claims whose sends failed, so a later redrive sends them."""
    if fields:
        client.hdel(redriven_key(prefix), *fields)
