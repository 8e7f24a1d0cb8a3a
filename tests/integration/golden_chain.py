"""The golden run: a fixed input through the pipeline, reduced to what was published.

``golden_input`` builds the input from its parameters alone (a seeded simulation plus
crafted customers that reach every path of the default retention policy), so the fixture
stores the parameters and a digest, never the events. ``run_chain`` drives the worker's
pipeline (``BatchProcessor``, segments and actions in one pass) in process against real
Redis, as the ingest agent and the timer would, with a clock the run controls.
``capture`` reduces what it published to the fixture's form: segment changes, action
messages, the decisions and the uplift report.

The fixture was written by the code before the one pipeline (commit 9b04f00: the ingest,
then a separate actions agent reading ``segments.changes`` and ``events.purchase``), with
one difference of meaning made on purpose: there, delayed actions came due by the latest
``changed_at`` the actions agent had seen, a clock that lags the partition's event clock
whenever segments change rarely (a quiet-hours email fired 19 hours late and was dropped
``stale``); the fixture's run drove that agent's clocks from the partitions' event clocks,
as the one pipeline does. Everything else (change ids, idempotency keys, message
contents, decisions, the uplift report) is the old code's output, unchanged.

The run, per input batch (at most ``BATCH`` records within ``BATCH_SPAN_S`` of event time,
in arrival order):

1. the wall clock is set to the batch's last arrival time + ``WALL_LAG_S``;
2. the batch goes through the pipeline: changes and action messages are published;
3. the timers due by each partition's clock (watermark minus the allowed lateness) fire:
   segment deadlines and delayed actions.

After the last batch, ``TAIL_DAYS`` of idle event time pass in ``TAIL_STEP_S`` steps
(step 3 only, every partition's clock and the wall clock at the step's time), so
at-risk, lapsed and recency timers fire too.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from segmenters.actions import holdout_draw
from segmenters.actions.policy import DEFAULT_POLICY
from segmenters.changes import SegmentChange
from segmenters.clv.model import ClvModel
from segmenters.config import EngineConfig
from segmenters.core import Context
from segmenters.dimensions.rfm import RfmQuantiles, bucket
from segmenters.dimensions.value import ValueQuantiles
from streams.kafka.partitioner import partition_for
from streams.kafka.topics import TOPIC_OF_TYPE
from streams.settings import Settings
from streams.store import StateStore
from streams.store.clients import async_redis_client, redis_client
from streams.tools.simulate import generate
from streams.worker.actions import report_data
from streams.worker.clocks import Clocks
from streams.worker.pipeline import BatchProcessor, Record

DAY = 86400.0
HOUR = 3600.0
#: Everything the input is made of: the fixture records it, the test rebuilds from it.
PARAMS: dict[str, Any] = {
    "start": "2026-01-05T00:00:00+00:00",
    "days": 60,
    "sim_customers": 200,
    "sim_events": 3000,
    "sim_seed": 20260105,
    "partitions": 4,
}
BATCH = 200
BATCH_SPAN_S = HOUR
WALL_LAG_S = 60.0
TAIL_DAYS = 40
TAIL_STEP_S = HOUR
#: Fixed population statistics for RFM (the worker refreshes them from Redis): with them
#: three orders in the last week make a champion and a month's silence an at-risk buyer.
RFM = RfmQuantiles(
    recency_days=(7.0, 14.0, 30.0, 60.0),
    frequency=(1.0, 1.0, 2.0, 3.0),
    monetary=(20.0, 50.0, 100.0, 200.0),
    buyers=100,
    as_of=datetime.fromisoformat(PARAMS["start"]).timestamp(),
)
#: The value dimension with fixed models and cuts, as RFM's quantiles are fixed: the CDNOW
#: paper's parameters, and CLV cuts that split the run's alive buyers roughly as the
#: default shares would.
CLV = ClvModel(r=0.243, alpha_days=30.895, a=0.793, b=2.426, p=6.25, q=3.74, v=15.44, version=1)
VALUE = ValueQuantiles(cuts=(bucket(60.0), bucket(40.0), bucket(25.0)), buyers=100)


# --- the input ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Item:
    """One input event, when it arrives (its Kafka timestamp) and whether it is marked."""

    event: dict[str, Any]
    arrival: float
    no_actions: bool = False


class Person:
    """Builds one crafted customer's events, at hours after the start."""

    def __init__(self, cid: str, start: datetime, out: list[Item]) -> None:
        self.cid, self.start, self.out, self.n = cid, start, out, 0

    def _add(self, type_: str, hours: float, *, late_h: float = 0.0, **body: Any) -> None:
        self.n += 1
        at = self.start + timedelta(hours=hours)
        event = {
            "schema_version": 1,
            "event_id": f"{self.cid}-e{self.n}",
            "type": type_,
            "customer_id": self.cid,
            "occurred_at": at.isoformat().replace("+00:00", "Z"),
            **body,
        }
        marked = self.cid.startswith("g-replay")
        self.out.append(Item(event, at.timestamp() + late_h * HOUR, marked))

    def profile(self, hours: float, **attributes: Any) -> None:
        self._add("profile", hours, attributes=attributes)

    def browse(self, hours: float) -> None:
        self._add("browse", hours, page_type="product", sku="G-1", category="shoes")

    def add(self, hours: float, sku: str = "G-1", price: float = 40.0, late_h: float = 0) -> None:
        self._add(
            "cart",
            hours,
            late_h=late_h,
            action="add",
            sku=sku,
            quantity=1,
            unit_price=price,
            category="shoes",
        )

    def buy(self, hours: float, price: float = 60.0) -> None:
        self._add(
            "purchase",
            hours,
            order_id=f"{self.cid}-o{self.n + 1}",
            lines=[{"sku": "G-2", "quantity": 1, "unit_price": price}],
            total=price,
            currency="EUR",
        )


def _pick(prefix: str, action: str, treated: int, control: int) -> list[str]:
    """Customer ids whose holdout draw puts ``treated`` of them in the treated group and
    ``control`` in control (so both groups are always exercised)."""
    out: list[str] = []
    want = {"treated": treated, "control": control}
    n = 0
    while any(want.values()):
        cid = f"{prefix}-{n}"
        n += 1
        group = (
            "control" if holdout_draw(cid, action, DEFAULT_POLICY.experiment) < 0.1 else "treated"
        )
        if want[group]:
            want[group] -= 1
            out.append(cid)
    return out


def crafted(start: datetime) -> list[Item]:
    """Customers for each path of the default policy (segmenters/actions/actions.toml)."""
    out: list[Item] = []
    cart = "email/abandoned_cart"
    # Abandoned carts in daytime (Berlin): sent, or held out as control.
    for i, cid in enumerate(_pick("g-cart", cart, 8, 3)):
        p = Person(cid, start, out)
        day = 24 * (2 + 4 * i)
        p.profile(day + 9, marketing_consent=True)
        p.browse(day + 9.8)
        p.add(day + 10)
    # Abandoned at night: scheduled for the end of quiet hours, then sent; or the customer
    # bought meanwhile and the delayed email is dropped (segment_changed).
    for i, cid in enumerate(_pick("g-quiet", cart, 3, 0)):
        p = Person(cid, start, out)
        day = 24 * (5 + 7 * i)
        p.profile(day + 19, marketing_consent=True)
        p.add(day + 20.5)
        if i == 2:
            p.buy(day + 23)
    # Consent refused (no email), and never stated (allowed: require_consent is false).
    for i, cid in enumerate(["g-noconsent-0", "g-noconsent-1"]):
        p = Person(cid, start, out)
        day = 24 * (6 + 9 * i)
        p.profile(day + 9, marketing_consent=False)
        p.add(day + 11)
    p = Person("g-noprofile-0", start, out)
    p.add(24 * 8 + 12)
    # Two carts abandoned within the 3-day cooldown.
    for cid in _pick("g-cooldown", cart, 1, 0):
        p = Person(cid, start, out)
        p.profile(24 * 10 + 8, marketing_consent=True)
        p.add(24 * 10 + 10)
        p.add(24 * 11 + 10, sku="G-3")
    # Champions: three orders in two days (email/vip_offer).
    for i, cid in enumerate(_pick("g-vip", "email/vip_offer", 3, 1)):
        p = Person(cid, start, out)
        day = 24 * (12 + 5 * i)
        p.profile(day + 9, marketing_consent=True)
        p.buy(day + 10)
        p.buy(day + 20)
        p.buy(day + 34)
    # Buyers who then go quiet: journey and RFM at risk (win-back, then its cooldown).
    for i, cid in enumerate(_pick("g-winback", "email/win_back", 3, 1)):
        p = Person(cid, start, out)
        day = 24 * (3 + 3 * i)
        p.profile(day + 9, marketing_consent=True)
        p.buy(day + 10, price=80.0)
        p.buy(day + 30, price=80.0)
        p.buy(day + 55, price=80.0)
    # Seen on the first days only: at risk, then lapsed in the idle tail (ads/reactivation).
    for i in range(3):
        p = Person(f"g-lapsed-{i}", start, out)
        p.profile(1 + i, marketing_consent=True)
        p.browse(2 + i)
        p.add(2.2 + i)
        p.buy(3 + i, price=25.0)
    # Replayed with the no-actions mark: segmented, never acted on.
    for i in range(2):
        p = Person(f"g-replay-{i}", start, out)
        day = 24 * (20 + 3 * i)
        p.profile(day + 9, marketing_consent=True)
        p.add(day + 10)
        p.buy(day + 12)
        p.buy(day + 13)
        p.buy(day + 14)
    # A cart event that arrives two days late: its abandonment is history (stale).
    p = Person("g-late-0", start, out)
    p.profile(24 * 30 + 9, marketing_consent=True)
    p.add(24 * 30 + 10, late_h=48)
    return out


def simulated(start: datetime) -> list[Item]:
    days = PARAMS["days"]
    rate = PARAMS["sim_events"] / (days * DAY)
    events = generate(
        PARAMS["sim_customers"],
        seed=PARAMS["sim_seed"],
        start=start,
        duration_s=days * DAY,
        rate=rate,
    )
    out = []
    for e in events:
        at = datetime.fromisoformat(e["occurred_at"].replace("Z", "+00:00")).timestamp()
        out.append(Item(e, at))
    return out


def golden_input() -> list[Record]:
    """The input records in arrival order, with Kafka positions as a producer gives them."""
    start = datetime.fromisoformat(PARAMS["start"])
    items = simulated(start) + crafted(start)
    items.sort(key=lambda i: i.arrival)  # stable: simultaneous events keep their order
    offsets: Counter[tuple[str, int]] = Counter()
    records = []
    for it in items:
        cid = it.event["customer_id"]
        topic = TOPIC_OF_TYPE[it.event["type"]]
        partition = partition_for(cid, PARAMS["partitions"])
        offset = offsets[topic, partition]
        offsets[topic, partition] += 1
        value = orjson.dumps(it.event)
        records.append(
            Record(topic, partition, offset, cid.encode(), value, it.arrival, it.no_actions)
        )
    return records


def input_digest(records: list[Record]) -> str:
    h = hashlib.sha256()
    for r in records:
        h.update(orjson.dumps([r.topic, r.partition, r.offset, r.timestamp, r.no_actions]))
        h.update(r.value or b"")
    return h.hexdigest()


def batches(records: list[Record]) -> Iterator[list[Record]]:
    """At most ``BATCH`` records whose arrivals span at most ``BATCH_SPAN_S``: a live
    consumer's batches, so the wall clock of a batch is close to all its events."""
    batch: list[Record] = []
    for r in records:
        assert r.timestamp is not None
        if batch and (
            len(batch) >= BATCH or r.timestamp - (batch[0].timestamp or 0) > BATCH_SPAN_S
        ):
            yield batch
            batch = []
        batch.append(r)
    if batch:
        yield batch


# --- the run -----------------------------------------------------------------------------
def golden_settings(key_prefix: str) -> Settings:
    """Every setting the run depends on, fixed (the environment gives only Redis's URL)."""
    return Settings(
        key_prefix=key_prefix,
        topic_prefix="",
        topic_partitions=PARAMS["partitions"],
        clock="event",
        allowed_lateness_s=5.0,
        max_future_s=300.0,
        max_event_bytes=65536,
        actions_file=None,
        actions_keep_purchases_s=2 * DAY,
        currency="EUR",
        uplift_min_group=30,
        cluster_margin=0.1,
        segments_file=None,
    )


class Wall:
    """The wall clock of the run: set by the runner, read by the services."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Capture:
    """What the run published, in order."""

    changes: list[bytes] = field(default_factory=list)
    messages: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    deadletters: list[bytes] = field(default_factory=list)
    decisions: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    batches: int = 0
    report: dict[str, Any] = field(default_factory=dict)
    assignments: list[list[Any]] = field(default_factory=list)


def _sender(out: list[bytes]) -> Callable[[bytes, bytes], Awaitable[Awaitable[None]]]:
    async def send(key: bytes, value: bytes) -> Awaitable[None]:
        out.append(value)
        return _acked()

    return send


async def _acked() -> None:
    return None


class Pipeline:
    """The one batch pipeline: segments and actions in one pass per batch, and the timer
    scan (segment deadlines and delayed actions share the partition's due index)."""

    def __init__(self, settings: Settings, client: Any, cap: Capture) -> None:
        self.settings = settings
        self.cap = cap
        self.wall = Wall()

        async def send(topic: str, key: bytes, value: bytes) -> Awaitable[None]:
            cap.messages.append((topic, key, value))
            return _acked()

        self.clocks = Clocks()
        context = Context(rfm=RFM, cluster_margin=settings.cluster_margin, clv=CLV, value=VALUE)
        self.processor = BatchProcessor(
            store=StateStore(
                client,
                prefix=settings.key_prefix,
                partitions=settings.topic_partitions,
                cache_size=100_000,
            ),
            config=EngineConfig(),
            topic_prefix=settings.topic_prefix,
            max_event_bytes=settings.max_event_bytes,
            send_change=_sender(cap.changes),
            send_deadletter=_sender(cap.deadletters),
            send_action=send,
            policy=lambda: DEFAULT_POLICY,
            currency=settings.currency,
            keep_purchases_s=settings.actions_keep_purchases_s,
            clock=self.wall,
            max_future_s=settings.max_future_s,
            live=False,
            clocks=self.clocks,
            context=lambda: context,
            on_decided=cap.decisions.update,
        )

    async def batch(self, records: list[Record]) -> None:
        assert records[-1].timestamp is not None
        self.wall.now = records[-1].timestamp + WALL_LAG_S
        await self.processor.process(records)
        lateness = self.settings.allowed_lateness_s
        clocks = {p: w - lateness for p, w in self.clocks.watermarks.items()}
        await self.processor.fire_timers(clocks, limit=1_000_000)

    async def idle(self, until: float) -> None:
        self.wall.now = until + WALL_LAG_S
        clocks = dict.fromkeys(range(self.settings.topic_partitions), until)
        await self.processor.fire_timers(clocks, limit=1_000_000)


async def run_chain(records: list[Record]) -> Capture:
    """Run the input through the chain under a fresh key prefix; Redis is left clean."""
    settings = golden_settings(f"golden{uuid.uuid4().hex[:8]}")
    client = async_redis_client(settings)
    sync = redis_client(settings)
    cap = Capture()
    try:
        chain = Pipeline(settings, client, cap)
        for batch in batches(records):
            await chain.batch(batch)
            cap.batches += 1
        end = max(chain.clocks.watermarks.values())
        step = end
        while step < end + TAIL_DAYS * DAY:
            step += TAIL_STEP_S
            await chain.idle(step)
        data = report_data(sync, settings, DEFAULT_POLICY)
        cap.report = data.to_json(settings)
        cap.assignments = sorted([a.customer_id, a.action, a.group, a.at] for a in data.assignments)
    finally:
        for key in sync.scan_iter(match=f"{settings.key_prefix}:*", count=1000):
            sync.delete(key)
        sync.close()
        await client.aclose()
    return cap


# --- the fixture's form ------------------------------------------------------------------
def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


CHANGE_FIELDS = (
    "change_id",
    "customer_id",
    "dimension",
    "previous",
    "current",
    "changed_at",
    "reason",
    "no_actions",
    "rescored",
)


def _change(c: dict[str, Any]) -> dict[str, Any]:
    """A published change without ``schema_version`` and ``engine_version``; time in epoch s."""
    out = {k: c.get(k, False) for k in CHANGE_FIELDS}
    out["changed_at"] = _epoch(c["changed_at"])
    return out


def capture(records: list[Record], cap: Capture) -> dict[str, Any]:
    """What the run published, in the form the test compares: changes per customer in
    publication order, action messages by idempotency key (their change by id, checked
    equal to the published one), the decisions, the first assignments and the uplift
    report. ``engine_version`` is left out: it names the code, not what it decided."""
    by_customer: dict[str, list[dict[str, Any]]] = {}
    published: dict[str, dict[str, Any]] = {}
    for raw in cap.changes:
        c = orjson.loads(raw)
        SegmentChange.model_validate(c)
        row = _change(c)
        by_customer.setdefault(row["customer_id"], []).append(row)
        published.setdefault(row["change_id"], row)
    messages: dict[str, dict[str, Any]] = {}
    for topic, key, raw in cap.messages:
        m = orjson.loads(raw)
        assert key.decode() == m["customer_id"] and topic == f"actions.{m['channel']}"
        change = _change(m.pop("change"))
        if published.get(change["change_id"]) != change:
            raise AssertionError(f"message {m['idempotency_key']} carries an unpublished change")
        m["change_id"] = change["change_id"]
        m["decided_at"] = _epoch(m["decided_at"])
        m["expires_at"] = _epoch(m["expires_at"])
        messages.setdefault(m["idempotency_key"], m)
    return {
        "input": {
            **PARAMS,
            "batch": BATCH,
            "batch_span_s": BATCH_SPAN_S,
            "wall_lag_s": WALL_LAG_S,
            "tail_days": TAIL_DAYS,
            "tail_step_s": TAIL_STEP_S,
            "records": len(records),
            "customers": len({r.key for r in records}),
            "batches": cap.batches,
            "sha256": input_digest(records),
        },
        "counts": {
            "changes": len(cap.changes),
            "distinct_change_ids": len(published),
            "messages": len(cap.messages),
            "distinct_idempotency_keys": len(messages),
            "deadletters": len(cap.deadletters),
        },
        "changes": by_customer,
        "messages": messages,
        "decisions": {" ".join(k): n for k, n in sorted(cap.decisions.items())},
        "assignments": cap.assignments,
        "report": cap.report,
    }


# --- the file: compact (strings interned, rows instead of objects), one row a line -------
ABSENT = "<absent>"


def _flat(m: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in m.items() if k != "features"}
    out.update({f"features.{k}": v for k, v in m.get("features", {}).items()})
    return out


def _unflat(row: dict[str, Any]) -> dict[str, Any]:
    m: dict[str, Any] = {"features": {}}
    for k, v in row.items():
        if v == ABSENT:
            continue
        if k.startswith("features."):
            m["features"][k.removeprefix("features.")] = v
        else:
            m[k] = v
    return m


def encode(doc: dict[str, Any]) -> bytes:
    """The fixture file's bytes (``decode`` gives ``doc`` back)."""
    strings: dict[str, int] = {}

    def ref(s: str | None) -> int | None:
        return None if s is None else strings.setdefault(s, len(strings))

    changes = {
        cid: [
            [
                c["change_id"],
                ref(c["dimension"]),
                ref(c["previous"]),
                ref(c["current"]),
                c["changed_at"],
                ref(c["reason"]),
                int(c["no_actions"]) + 2 * int(c["rescored"]),
            ]
            for c in rows
        ]
        for cid, rows in sorted(doc["changes"].items())
    }
    flat = [_flat(doc["messages"][k]) for k in sorted(doc["messages"])]
    columns = sorted({k for m in flat for k in m})
    body = {
        **{k: v for k, v in doc.items() if k not in ("changes", "messages", "assignments")},
        "strings": list(strings),
        "change_columns": [
            "change_id",
            "dimension",
            "previous",
            "current",
            "changed_at",
            "reason",
            "flags (1 no_actions, 2 rescored)",
        ],
        "message_columns": columns,
    }
    lines = [orjson.dumps(body, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()[:-2]]
    lines.append(',\n  "changes": {')
    lines.append(
        ",\n".join(
            f"    {orjson.dumps(cid).decode()}: [\n"
            + ",\n".join(f"      {orjson.dumps(r).decode()}" for r in rows)
            + "\n    ]"
            for cid, rows in changes.items()
        )
    )
    lines.append('\n  },\n  "messages": [\n')
    lines.append(
        ",\n".join(
            "    " + orjson.dumps([m.get(c, ABSENT) for c in columns]).decode() for m in flat
        )
    )
    lines.append('\n  ],\n  "assignments": [\n')
    lines.append(",\n".join("    " + orjson.dumps(a).decode() for a in doc["assignments"]))
    lines.append("\n  ]\n}\n")
    out = "".join(lines).encode()
    assert decode(out) == doc, "the fixture encoding lost something"
    return out


def decode(raw: bytes) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(raw)
    strings = body.pop("strings")
    body.pop("change_columns")
    columns = body.pop("message_columns")

    def s(i: int | None) -> str | None:
        return None if i is None else strings[i]

    body["changes"] = {
        cid: [
            {
                "change_id": r[0],
                "customer_id": cid,
                "dimension": s(r[1]),
                "previous": s(r[2]),
                "current": s(r[3]),
                "changed_at": r[4],
                "reason": s(r[5]),
                "no_actions": bool(r[6] & 1),
                "rescored": bool(r[6] & 2),
            }
            for r in rows
        ]
        for cid, rows in body["changes"].items()
    }
    messages = [_unflat(dict(zip(columns, row, strict=True))) for row in body["messages"]]
    body["messages"] = {m["idempotency_key"]: m for m in messages}
    return body
