"""A change_id names one change, on a real worker: busy, then idle and rescored again and again.

The busy phase applies a simulated shop's history. In the idle phase no event arrives, so
every partition's event clock stands still, while the rescoring sweep runs pass after
pass against cluster models that change between passes (each one moves every customer).
Every pass then changes customers at the very same ``changed_at``. Read back,
``segments.changes`` must hold no ``change_id`` with two contents, and a subscriber that
de-duplicates on ``change_id`` must end with what Redis holds, for every customer and
dimension.
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from segmenters.clustering import Cluster, ClusterModel
from segmenters.features import FEATURES
from streams.store.keys import model_key, outbox_key, state_key
from streams.tools.simulate import generate
from tests.integration.conftest import Deployment

CUSTOMERS = 120
PASSES = 8


@pytest.fixture
def sweeping(services, tmp_path):
    d = Deployment(
        services,
        tmp_path,
        SEGSTREAM_CLUSTER_SNAPSHOT_S=100_000,  # the trainer stays quiet: the models are ours
        SEGSTREAM_RFM_REFRESH_S=0.5,
        SEGSTREAM_RESCORE_PASS_S=0.5,
        SEGSTREAM_RESCORE_PER_S=2000,
    )
    yield d
    d.close()


def revisions(d: Deployment, customers: list[str]) -> dict[str, int]:
    """Each customer's state revision: +1 per write, so a rescore that moved it shows."""
    pipe = d.redis.pipeline(transaction=False)
    for c in customers:
        pipe.hget(state_key(d.settings.key_prefix, d.home(c), c), "rev")
    return {c: int(r or 0) for c, r in zip(customers, pipe.execute(), strict=True)}


def settled(d: Deployment, customers: list[str], quiet_s: float = 2.0) -> None:
    """Wait until the last pass is over: no state written for ``quiet_s`` and every
    outbox sent (a change is written to Redis first, then sent)."""
    last, since, ends = revisions(d, customers), time.monotonic(), time.monotonic() + 30
    while time.monotonic() < ends:
        time.sleep(0.25)
        now = revisions(d, customers)
        if now != last:
            last, since = now, time.monotonic()
        unsent = sum(
            d.redis.llen(outbox_key(d.settings.key_prefix, d.home(c), c)) for c in customers
        )
        if not unsent and time.monotonic() - since >= quiet_s:
            return
    raise AssertionError("the worker did not settle")


def first_model() -> dict[str, Any]:
    """A seeded model over the real feature vector, as the trainer would store it."""
    rng = random.Random(14)
    clusters = tuple(
        Cluster(i, {f: rng.uniform(0.0, 4.0) for f in FEATURES}, 10, f"group {i}") for i in range(5)
    )
    model = ClusterModel(
        1, FEATURES, dict.fromkeys(FEATURES, 0.0), dict.fromkeys(FEATURES, 1.0), clusters
    )
    return {"model": model.to_doc(), "learned": 0, "drift": {}, "published_at": time.time()}


def rotated(doc: dict[str, Any], version: int) -> dict[str, Any]:
    """The published model with its centroids handed on to the next id: every customer's
    nearest cluster gets another id, so the next pass moves everyone."""
    model = ClusterModel.from_doc(doc["model"])
    cs = model.clusters
    clusters = tuple(
        Cluster(c.id, cs[(i + 1) % len(cs)].centroid, c.size, c.description)
        for i, c in enumerate(cs)
    )
    new = ClusterModel(version, model.features, model.mean, model.std, clusters, model.next_id)
    return {**doc, "model": new.to_doc(), "published_at": time.time()}


def test_rescoring_an_idle_partition_gives_each_change_its_own_id(sweeping):
    d = sweeping
    start = datetime.now(UTC) - timedelta(days=30)
    events = list(generate(CUSTOMERS, seed=14, start=start, duration_s=30 * 86400, rate=0.001))
    customers = sorted({e["customer_id"] for e in events})
    expected = Counter(e["customer_id"] for e in {e["event_id"]: e for e in events}.values())
    key = model_key(d.settings.key_prefix)
    d.redis.set(key, orjson.dumps(first_model()))
    d.start_worker()
    d.produce(events)  # busy
    d.wait_applied(dict(expected), timeout=60)
    ends = time.monotonic() + 40
    while time.monotonic() < ends and not all(
        "behaviour" in (d.state(c) or {}).get("segments", {}) for c in customers
    ):
        time.sleep(0.5)

    # idle: no event, so no clock moves; each new model moves every customer in one pass
    moved_by_pass = []
    for i in range(PASSES):
        before = revisions(d, customers)
        d.redis.set(key, orjson.dumps(rotated(orjson.loads(d.redis.get(key)), 10_000 + i)))
        ends = time.monotonic() + 20
        while time.monotonic() < ends:
            after = revisions(d, customers)
            moved = sum(after[c] > before[c] for c in customers)
            if moved >= len(customers) // 2:
                break
            time.sleep(0.2)
        moved_by_pass.append(moved)
    settled(d, customers)
    d.stop_all()
    assert orjson.loads(d.redis.get(key))["model"]["version"] == 10_000 + PASSES - 1
    assert min(moved_by_pass) >= len(customers) // 2, moved_by_pass

    records = d.read_topic("segments.changes", settle=2.0)
    contents: dict[str, set[bytes]] = defaultdict(set)
    at_one_time: Counter[tuple[str, str, str]] = Counter()
    latest: dict[tuple[str, str], str] = {}
    bodies: set[bytes] = set()
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        change = orjson.loads(r.value)
        change.pop("engine_version")
        body = orjson.dumps(change, option=orjson.OPT_SORT_KEYS)
        if change["change_id"] not in contents:  # a subscriber that de-duplicates on it
            latest[(change["customer_id"], change["dimension"])] = change["current"]
        if body not in bodies:  # distinct changes (a re-send is the same message)
            bodies.add(body)
            at_one_time[(change["customer_id"], change["dimension"], change["changed_at"])] += 1
        contents[change["change_id"]].add(body)
    collisions = sum(len(b) > 1 for b in contents.values())
    same_time = sum(n for n in at_one_time.values() if n > 1)
    stored = {c: d.state(c) or {} for c in customers}
    disagree = [
        (c, dim, seg)
        for (c, dim), seg in latest.items()
        if stored[c].get("segments", {}).get(dim, [None])[0] != seg
    ]
    print(
        f"\nCHANGE_IDS changes={len(records)} distinct_changes={len(bodies)} "
        f"distinct_ids={len(contents)} "
        f"collisions={collisions} changes_sharing_customer_dimension_changed_at={same_time} "
        f"pairs={len(latest)} subscriber_disagrees_with_redis={len(disagree)} "
        f"moved_by_pass={moved_by_pass}"
    )
    assert same_time >= PASSES * len(customers) // 2  # the idle passes did move customers
    assert collisions == 0
    assert not disagree, disagree[:5]
