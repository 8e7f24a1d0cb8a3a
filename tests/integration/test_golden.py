"""Golden test: what segstream publishes for a fixed input, pinned.

The input (``golden_chain.golden_input``: a seeded simulation of 200 customers over 60
days plus crafted customers for every path of the default retention policy) goes through
the worker's one batch pipeline against real Redis; the segment changes
(``segments.changes``), the action messages (``actions.<channel>``), the decisions and
the uplift report must equal the fixture ``fixtures/golden_changes_actions.json``:

- the same change ids, each with the same content, and per customer the same sequence;
- the same action messages (idempotency keys and every field but ``engine_version``);
- the same decision counts, first assignments and uplift rows.

The fixture was captured from the code where ingest and actions were separate agents
(see ``golden_chain``'s docstring for the one difference of meaning), then written again
once, on purpose, when RFM recency got the histogram's one-hour tolerance
(``segmenters.dimensions.rfm.RECENCY_TOLERANCE_DAYS``): RFM changes by the passage of
time happen one hour later, so their ids changed; the decisions, the 276 messages and
the uplift report stayed the same. Written a third time, on purpose, when the value and
interest dimensions came: the run scores with fixed value models and CLV cuts
(``golden_chain.CLV``, ``VALUE``), and the rewrite only added changes (482 interest,
208 value, among them 4 ``top -> churned`` at their deadlines) and the 6 win-back
messages those churns trigger; no earlier change, id or message changed. Regenerate it
only on purpose, after a change meant
to alter what is published::

    .venv/bin/python -m tests.integration.test_golden --write
"""

from __future__ import annotations

import asyncio
import math
import sys
from pathlib import Path
from typing import Any

import pytest

from streams.store.clients import redis_client
from tests.integration.golden_chain import (
    capture,
    decode,
    encode,
    golden_input,
    golden_settings,
    input_digest,
    run_chain,
)

FIXTURE = Path(__file__).parent / "fixtures" / "golden_changes_actions.json"
SHOWN = 20


def produce() -> dict[str, Any]:
    records = golden_input()
    return capture(records, asyncio.run(run_chain(records)))


def _close(a: Any, b: Any) -> bool:
    """Equal, floats to 1e-9 relative (sums of the report may add in another order)."""
    if isinstance(a, float) or isinstance(b, float):
        return (
            isinstance(a, int | float)
            and isinstance(b, int | float)
            and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def compare(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Every difference, one line each (empty: the run reproduces the fixture)."""
    out: list[str] = []
    if expected["input"] != actual["input"]:
        out.append(f"input differs (generator changed?): {expected['input']} != {actual['input']}")
    want = {c["change_id"]: c for rows in expected["changes"].values() for c in rows}
    got = {c["change_id"]: c for rows in actual["changes"].values() for c in rows}
    out += [f"change missing: {want[i]}" for i in sorted(want.keys() - got.keys())]
    out += [f"change unexpected: {got[i]}" for i in sorted(got.keys() - want.keys())]
    out += [
        f"change {i} differs: {want[i]} != {got[i]}"
        for i in sorted(want.keys() & got.keys())
        if want[i] != got[i]
    ]
    for cid in sorted(expected["changes"].keys() | actual["changes"].keys()):
        a = [c["change_id"] for c in expected["changes"].get(cid, [])]
        b = [c["change_id"] for c in actual["changes"].get(cid, [])]
        if a != b:
            out.append(f"customer {cid}: change sequence {a} != {b}")
    wm, gm = expected["messages"], actual["messages"]
    out += [f"message missing: {wm[k]}" for k in sorted(wm.keys() - gm.keys())]
    out += [f"message unexpected: {gm[k]}" for k in sorted(gm.keys() - wm.keys())]
    out += [
        f"message {k} differs: {wm[k]} != {gm[k]}"
        for k in sorted(wm.keys() & gm.keys())
        if wm[k] != gm[k]
    ]
    for part in ("counts", "decisions", "assignments", "report"):
        if not _close(expected[part], actual[part]):
            out.append(f"{part} differ: {expected[part]} != {actual[part]}")
    return out


@pytest.fixture
def redis_up() -> None:
    """Real Redis must answer (a missing server is a failure, never a skip)."""
    client = redis_client(golden_settings("golden-ping"))
    try:
        assert client.ping()
    finally:
        client.close()


def test_the_published_changes_and_actions_match_the_golden_fixture(redis_up: None) -> None:
    expected = decode(FIXTURE.read_bytes())
    records = golden_input()
    assert input_digest(records) == expected["input"]["sha256"], (
        "the input no longer regenerates as captured (streams.tools.simulate or golden_chain "
        "changed): the comparison would be meaningless"
    )
    actual = capture(records, asyncio.run(run_chain(records)))
    mismatches = compare(expected, actual)
    n = actual["counts"]
    print(
        f"\ngolden: {n['changes']} changes ({n['distinct_change_ids']} ids), "
        f"{n['messages']} action messages ({n['distinct_idempotency_keys']} keys), "
        f"{len(actual['changes'])} customers with changes, {len(mismatches)} mismatches"
    )
    assert not mismatches, "\n".join(mismatches[:SHOWN]) + (
        f"\n... and {len(mismatches) - SHOWN} more" if len(mismatches) > SHOWN else ""
    )


def main(argv: list[str]) -> int:
    if argv != ["--write"]:
        print("usage: python -m tests.integration.test_golden --write", file=sys.stderr)
        return 2
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_bytes(encode(produce()))
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
