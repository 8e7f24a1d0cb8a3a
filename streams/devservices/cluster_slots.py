"""Redis Cluster text and slot arithmetic: ``CLUSTER INFO`` and ``CLUSTER NODES``
read into fields, which slots a node owns or the cluster serves, and how 16384 slots
split among masters. Pure (no I/O), apart from cluster.py, which talks to the nodes.
"""

from __future__ import annotations

from collections.abc import Iterator

CLUSTER_SLOTS = 16384


def parse_cluster_info(text: str) -> dict[str, str]:
    r"""``CLUSTER INFO``'s ``field:value`` lines as a dict.

    >>> parse_cluster_info("cluster_state:ok\r\ncluster_slots_assigned:16384\r\n")
    {'cluster_state': 'ok', 'cluster_slots_assigned': '16384'}
    """
    fields = (line.partition(":") for line in text.splitlines())
    return {name.strip(): value.strip() for name, sep, value in fields if sep}


def _cluster_nodes_lines(text: str) -> Iterator[list[str]]:
    """``CLUSTER NODES`` lines as fields: id, address, flags, master, ping sent, pong
    received, config epoch, link state, slots..."""
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 8:
            yield fields


def _slot_fields(fields: list[str]) -> list[str]:
    """A node line's slots and slot ranges (``[..]`` entries are slots in migration)."""
    return [f for f in fields[8:] if not f.startswith("[")]


def own_slots(cluster_nodes_text: str) -> list[str]:
    r"""The slot ranges of the ``myself`` line of ``CLUSTER NODES`` (``["0-5460"]``).

    >>> own_slots("ab 127.0.0.1:7002@17002 master - 0 1 2 connected 5461-10922\n"
    ...           "cd 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460 9000\n")
    ['0-5460', '9000']
    """
    for fields in _cluster_nodes_lines(cluster_nodes_text):
        if "myself" in fields[2].split(","):
            return _slot_fields(fields)
    return []


def served_slots(cluster_nodes_text: str) -> int:
    r"""How many slots, in a node's ``CLUSTER NODES``, have a master it is connected to.

    Slots of a failed node, or of one another node replaced at its address (``noaddr``),
    do not count, though ``CLUSTER INFO`` may still say ``cluster_state:ok``.

    >>> served_slots("ab 127.0.0.1:7002@17002 master - 0 1 2 connected 5461-10922\n"
    ...              "cd 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460\n"
    ...              "ef :0@0 master,noaddr - 1 1 3 disconnected 10923-16383\n")
    10923
    """
    served: set[int] = set()
    for fields in _cluster_nodes_lines(cluster_nodes_text):
        flags = set(fields[2].split(","))
        if (
            "master" in flags
            and fields[7] == "connected"
            and not flags & {"fail", "noaddr", "handshake"}
        ):
            served |= _slot_set(_slot_fields(fields))
    return len(served)


def cluster_slot_ranges(count: int) -> list[tuple[int, int]]:
    """All 16384 slots in ``count`` contiguous ranges, as ``redis-cli --cluster create``
    splits them.

    >>> cluster_slot_ranges(3)
    [(0, 5460), (5461, 10922), (10923, 16383)]
    """
    bounds = [round(i * CLUSTER_SLOTS / count) for i in range(count + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(count)]


def _slot_set(ranges: list[str]) -> set[int]:
    slots: set[int] = set()
    for item in ranges:
        first, _, last = item.partition("-")
        slots.update(range(int(first), int(last or first) + 1))
    return slots


def _ranges(slots: list[int]) -> list[tuple[int, int]]:
    """Sorted slots as contiguous (first, last) ranges.

    >>> _ranges([0, 1, 2, 5, 7, 8])
    [(0, 2), (5, 5), (7, 8)]
    """
    out: list[tuple[int, int]] = []
    for slot in slots:
        if out and out[-1][1] == slot - 1:
            out[-1] = (out[-1][0], slot)
        else:
            out.append((slot, slot))
    return out
