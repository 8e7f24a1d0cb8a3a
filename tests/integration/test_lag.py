"""`segstream lag` against Kafka's own kafka-consumer-groups --describe."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from streams.kafka.topics import INPUTS
from tests.integration.conftest import Deployment
from tests.integration.test_cli import segstream
from tests.unit.factories import T0, Events


def describe(deployment: Deployment, group: str) -> dict[tuple[str, int], tuple[int, int, int]]:
    """Parse the table of ConsumerGroupCommand --describe: (topic, partition) -> offsets."""
    out = segstream(deployment, "services", "kafka-consumer-groups", "--describe", "--group", group)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = {}
    for line in out.stdout.splitlines():
        cols = line.split()
        if len(cols) >= 6 and cols[0] == group:  # GROUP TOPIC PARTITION CURRENT END LAG ...
            rows[(cols[1], int(cols[2]))] = (int(cols[3]), int(cols[4]), int(cols[5]))
    assert rows, out.stdout
    return rows


@pytest.mark.same_on_cluster
def test_lag_equals_kafka_consumer_groups_describe(deployment: Deployment) -> None:
    customers = [f"c-lag-{i}" for i in range(40)]
    first = []
    for cid in customers:
        e = Events(cid)
        first += [e.profile(0, country="DE"), e.browse(1), e.add("A", 2), e.purchase("o", ["A"], 3)]
    placed = deployment.produce(first)
    inputs = {deployment.settings.topic(t) for t in INPUTS}
    assert {(s.topic, s.partition) for _, s in placed} == {
        (t, p) for t in inputs for p in range(deployment.settings.topic_partitions)
    }, "every input partition holds events, so the group commits every one"

    group = deployment.settings.app_id
    deployment.start_worker()
    deployment.wait_applied({c: 4 for c in customers})
    deployment.wait_caught_up(group)
    deployment.stop_all()  # an idle group: its offsets stay as committed

    later = [Events(c, start=T0 + timedelta(days=1)).browse(0) for c in customers[:13]]
    deployment.produce(later)

    out = segstream(deployment, "lag", "--json")
    assert out.returncode == 0, out.stderr
    ours = json.loads(out.stdout)
    assert ours["group"] == group
    assert ours["total_lag"] == len(later)
    mine = {
        (r["topic"], r["partition"]): (r["committed"], r["end"], r["lag"])
        for r in ours["partitions"]
    }
    assert len(mine) == 4 * deployment.settings.topic_partitions
    theirs = describe(deployment, group)
    assert mine == {k: v for k, v in theirs.items() if k[0] in inputs}

    # --all adds the group's other partitions: the trainer's feature topic
    every = json.loads(segstream(deployment, "lag", "--all", "--json").stdout)
    assert {
        (r["topic"], r["partition"]): (r["committed"], r["end"], r["lag"])
        for r in every["partitions"]
    } == theirs
    assert (deployment.settings.topic("segments.features"), 0) in theirs

    text = segstream(deployment, "lag")
    assert f"total lag {len(later)} over 16 partitions" in text.stdout
