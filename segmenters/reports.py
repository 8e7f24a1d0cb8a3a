"""Segment reports: how segments changed over time, and what each one holds.

Pure: the shell (``streams.store.segment_report``) reads the sizes stream, the flows,
the segment indexes and the members' states, and passes them in with the time.

Sizes history. The sizes stream holds one record per ``SEGSTREAM_SIZES_EVERY_S`` of wall
time, each with every segment's size (field ``dimension:segment``, a custom dimension
being ``custom:<name>``). A window is cut into buckets of ``every`` seconds and each
bucket keeps its last record (:func:`downsample`).

Operating figures. Every ``SEGSTREAM_HISTORY_EVERY_S`` each worker appends its counts
for the period and its lag and freshness to the ops stream (:class:`OpsRecord`); the
dashboard's throughput, lag and freshness charts read them summed over the workers per
bucket (:func:`ops_series`).

The report, per segment: size and share of the dimension's customers, the change of
size over the window (first record in the window to now), entries and exits over the
window (the flows), and over its members (all, or the first ``sample`` read):

- conversion: members who bought within the window (``last_order_at`` at or after
  their partition's clock minus the window) / members with a clock;
- revenue per customer: the state's ``revenue`` (net of refunds), mean over members;
- clv and p_alive: the value model's predictions from ``buy_days`` (T counted to the
  partition clock's day), mean over the members who bought (None without a model);
- engagement: events per active week, ``events / max(1, weeks from first_seen to
  last_seen)``, mean over members. The state keeps no session count, so a session is
  approximated by an event: a proxy for activity, not a session metric.

Flags: ``over_broad`` when a segment holds more than ``over_broad_share`` of the
dimension's customers, only in dimensions whose segments are meant to be chosen as
targets (:func:`checks_breadth`); ``stale`` when nobody entered it for ``stale_days``
(None while the deployment has tracked entries for less than that).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from segmenters.clv.model import ClvModel
from segmenters.clv.summary import DAY_S, day_of, summary_at
from segmenters.state import CustomerState

WEEK_S = 7 * DAY_S
UNITS = {"s": 1, "m": 60, "h": 3600, "d": DAY_S, "w": WEEK_S}
#: ``--every`` steps picked when none is given: the smallest that keeps the points few.
STEPS = (60.0, 300.0, 900.0, 3600.0, 6 * 3600.0, float(DAY_S))
AUTO_POINTS = 200
#: Most buckets one history read may ask for (one Redis command each, pipelined).
MAX_POINTS = 5000
CUSTOM_PREFIX = "custom:"
#: Dimensions whose segments split everyone by design (a stage, a score band, a
#: country, an age band, a value tier): a big segment there is the population's shape,
#: not a rule that selects too much, so they are not checked for breadth.
EXHAUSTIVE = frozenset({"journey", "rfm", "value", "demographic", "geographic"})
#: The segment of a custom dimension that holds those the rule does not select.
NON_MEMBER = "non_member"


def parse_span(text: str) -> float | None:
    """Seconds in ``90``, ``90s``, ``5m``, ``1h``, ``7d`` or ``2w``; None if invalid or
    not positive.

    >>> parse_span("7d"), parse_span("90"), parse_span("1.5h"), parse_span("x"), parse_span("0")
    (604800.0, 90.0, 5400.0, None, None)
    """
    text = text.strip().lower()
    scale = UNITS.get(text[-1:])
    number = text[:-1] if scale is not None else text
    try:
        value = float(number) * (scale or 1)
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def size_field(dimension: str, segment: str) -> str:
    """A segment's field in a sizes record.

    >>> size_field("custom:vip", "member")
    'custom:vip:member'
    """
    return f"{dimension}:{segment}"


def split_size_field(name: str) -> tuple[str, str]:
    """(dimension, segment) of a sizes record's field, named as ``GET /segments`` names
    them: a custom dimension holds one colon, any other none; a segment may hold colons.

    >>> split_size_field("custom:vip:member"), split_size_field("interest:books:sci-fi")
    (('custom:vip', 'member'), ('interest', 'books:sci-fi'))
    """
    dimension, _, segment = name.partition(":")
    if dimension == "custom":
        custom, _, segment = segment.partition(":")
        dimension = f"{CUSTOM_PREFIX}{custom}"
    return dimension, segment


@dataclass(frozen=True, slots=True)
class SizeRecord:
    """One record of the sizes stream: wall time, and (dimension, segment) -> size."""

    at: float
    sizes: Mapping[tuple[str, str], int]


def size_record(fields: Mapping[str, str]) -> SizeRecord | None:
    """A record from the stream's fields (``at`` and ``dimension:segment`` -> size), or
    None when ``at`` is missing or not a number.

    >>> size_record({"at": "60.0", "custom:vip:member": "3"})
    SizeRecord(at=60.0, sizes={('custom:vip', 'member'): 3})
    """
    try:
        at = float(fields["at"])
    except (KeyError, ValueError):
        return None
    return SizeRecord(at, {split_size_field(k): int(v) for k, v in fields.items() if k != "at"})


def auto_every(window_s: float, record_every_s: float, points: int = AUTO_POINTS) -> float:
    """The ``every`` to use when none is given: the smallest of the record interval and
    :data:`STEPS` that cuts the window into at most ``points`` buckets.

    >>> auto_every(3600, 60), auto_every(7 * 86400, 60), auto_every(600, 5)
    (60.0, 3600.0, 5.0)
    """
    for step in (float(record_every_s), *STEPS):
        if step >= record_every_s and window_s / step <= points:
            return step
    return STEPS[-1]


def bucket_bounds(since: float, until: float, every: float) -> list[tuple[float, float]]:
    """``[start, end)`` buckets from ``since`` to ``until`` whose bounds are multiples of
    ``every`` (so the same query later gives the same points); the first and the last
    are cut at the window's ends.

    >>> bucket_bounds(5.0, 25.0, 10.0)
    [(5.0, 10.0), (10.0, 20.0), (20.0, 25.0)]
    """
    if every <= 0 or until <= since:
        return []
    first, last = math.floor(since / every), math.ceil(until / every)
    return [
        (max(since, k * every), min(until, (k + 1) * every))
        for k in range(first, last)
        if k * every < until and (k + 1) * every > since
    ]


def downsample(records: Iterable[SizeRecord], since: float, every: float) -> list[SizeRecord]:
    """The last record of each bucket of :func:`bucket_bounds` from ``since`` on, oldest
    first (records before ``since`` are left out; empty buckets give no record).

    >>> rs = [SizeRecord(t, {}) for t in (5.0, 12.0, 18.0, 31.0)]
    >>> [r.at for r in downsample(rs, 10.0, 10.0)]
    [18.0, 31.0]
    """
    last: dict[int, SizeRecord] = {}
    for r in records:
        if r.at < since:
            continue
        b = math.floor(r.at / every)
        if b not in last or r.at >= last[b].at:
            last[b] = r
    return [last[b] for b in sorted(last)]


#: The counts an operating-figures record holds for its period, besides events by type
#: (field ``events:<type>``).
OPS_COUNTS = ("events", "deadletters", "changes", "timers", "sent")
OPS_EVENTS = "events:"


@dataclass(frozen=True, slots=True)
class OpsRecord:
    """One worker's operating figures over one period: the wall time at its end, the
    seconds it covers, the counts in it (:data:`OPS_COUNTS` and ``events:<type>``), and
    at its end the worker's consumer lag (summed over its partitions) and freshness (the
    newest applied event's age on its stalest partition); None when unknown."""

    at: float
    worker: str
    seconds: float
    counts: Mapping[str, int]
    lag: int | None = None
    freshness: float | None = None


def ops_fields(r: OpsRecord) -> dict[str, str]:
    """A record's stream entry (zero counts by type and unknown gauges left out).

    >>> ops_fields(OpsRecord(70.0, "h:1", 10.0, {"events": 3, "events:cart": 3, "events:x": 0}))
    {'at': '70.0', 'worker': 'h:1', 'seconds': '10.0', 'events': '3', 'events:cart': '3'}
    """
    fields = {"at": repr(r.at), "worker": r.worker, "seconds": repr(r.seconds)}
    fields.update({k: str(n) for k, n in r.counts.items() if n or k in OPS_COUNTS})
    if r.lag is not None:
        fields["lag"] = str(r.lag)
    if r.freshness is not None:
        fields["freshness"] = repr(round(r.freshness, 3))
    return fields


def ops_record(fields: Mapping[str, str]) -> OpsRecord | None:
    """A record from its stream entry, or None when a field is missing or malformed.

    >>> ops_record({"at": "70.0", "worker": "h:1", "seconds": "10.0", "sent": "2", "lag": "4"})
    OpsRecord(at=70.0, worker='h:1', seconds=10.0, counts={'sent': 2}, lag=4, freshness=None)
    """
    try:
        return OpsRecord(
            at=float(fields["at"]),
            worker=fields["worker"],
            seconds=float(fields["seconds"]),
            counts={
                k: int(v) for k, v in fields.items() if k in OPS_COUNTS or k.startswith(OPS_EVENTS)
            },
            lag=int(fields["lag"]) if "lag" in fields else None,
            freshness=float(fields["freshness"]) if "freshness" in fields else None,
        )
    except (KeyError, ValueError):
        return None


def ops_series(
    records: Iterable[OpsRecord], since: float, until: float, every: float
) -> dict[str, Any]:
    """The workers' figures summed per whole bucket of ``every`` seconds in
    ``[since, until)`` (bounds multiples of ``every``; a partial bucket at either end is
    left out, so an incomplete one is never shown as a drop), oldest first.

    A record's counts are spread over the buckets its period overlaps, pro rata, and a
    bucket's rates are its counts over ``every`` (per second). Lag and freshness are each
    worker's last of the bucket (a record belongs to the bucket holding its period's
    middle, at most half a bucket back), lag summed over the workers and freshness their
    worst. ``at`` is each bucket's end; a bucket no record touches gives no point.

    >>> rs = [OpsRecord(t, "w", 10.0, {"events": 20}, lag=5, freshness=1.0)
    ...       for t in (10.0, 20.0, 30.0)]
    >>> s = ops_series(rs + [OpsRecord(20.0, "v", 20.0, {"events": 40}, lag=1)], 0.0, 35.0, 10.0)
    >>> s["at"], s["rates"]["events"], s["lag"], s["workers"]
    ([10.0, 20.0, 30.0], [4.0, 4.0, 2.0], [5, 6, 5], [1, 2, 1])
    """
    first, last = math.ceil(since / every), math.floor(until / every)
    counts: dict[int, dict[str, float]] = {}
    gauges: dict[int, dict[str, OpsRecord]] = {}
    for r in records:
        start = r.at - r.seconds
        if r.seconds > 0:
            for k in range(
                max(first, math.floor(start / every)), min(last, math.ceil(r.at / every))
            ):
                share = (min(r.at, (k + 1) * every) - max(start, k * every)) / r.seconds
                if share <= 0:
                    continue
                into = counts.setdefault(k, dict.fromkeys(OPS_COUNTS, 0.0))
                for name, n in r.counts.items():
                    into[name] = into.get(name, 0.0) + n * share
        k = math.floor((r.at - min(r.seconds, every) / 2) / every)
        if first <= k < last:
            latest = gauges.setdefault(k, {})
            if r.worker not in latest or r.at >= latest[r.worker].at:
                latest[r.worker] = r
    buckets = sorted(set(counts) | set(gauges))
    empty = dict.fromkeys(OPS_COUNTS, 0.0)

    def rate(k: int, name: str) -> float:
        return round(counts.get(k, empty).get(name, 0.0) / every, 4)

    def lag(k: int) -> int | None:
        known = [r.lag for r in gauges.get(k, {}).values() if r.lag is not None]
        return sum(known) if known else None

    def freshness(k: int) -> float | None:
        known = [r.freshness for r in gauges.get(k, {}).values() if r.freshness is not None]
        return max(known) if known else None

    types = sorted(
        {n[len(OPS_EVENTS) :] for c in counts.values() for n in c if n.startswith(OPS_EVENTS)}
    )
    return {
        "at": [(k + 1) * every for k in buckets],
        "rates": {name: [rate(k, name) for k in buckets] for name in OPS_COUNTS},
        "events": {t: [rate(k, OPS_EVENTS + t) for k in buckets] for t in types},
        "lag": [lag(k) for k in buckets],
        "freshness": [freshness(k) for k in buckets],
        "workers": [len(gauges.get(k, {})) for k in buckets],
    }


def change(first: int | None, last: int | None) -> dict[str, Any]:
    """A size's change: from, to, delta and relative change (None when it started at 0
    or either end is unknown).

    >>> change(40, 50)
    {'from': 40, 'to': 50, 'delta': 10, 'pct': 25.0}
    >>> change(None, 7)
    {'from': None, 'to': 7, 'delta': None, 'pct': None}
    """
    if first is None or last is None:
        return {"from": first, "to": last, "delta": None, "pct": None}
    pct = None if first == 0 else round(100.0 * (last - first) / first, 2)
    return {"from": first, "to": last, "delta": last - first, "pct": pct}


def history(
    records: Sequence[SizeRecord], dimension: str | None = None, segment: str | None = None
) -> dict[str, Any]:
    """Sizes at each record's time, per dimension and segment (every dimension's, or one
    dimension's, or one segment's), and each segment's change from the first record to
    the last. A segment absent from a record had no member then: 0.

    >>> rs = [SizeRecord(0.0, {("journey", "new"): 2}), SizeRecord(60.0, {("journey", "new"): 3,
    ...       ("journey", "buyer"): 1})]
    >>> h = history(rs, "journey")
    >>> h["dimensions"], h["change"]["journey"]["new"]["delta"]
    ({'journey': {'buyer': [0, 1], 'new': [2, 3]}}, 1)
    """
    names = sorted(
        {
            (d, s)
            for r in records
            for (d, s) in r.sizes
            if dimension in (None, d) and segment in (None, s)
        }
    )
    if dimension is not None and segment is not None and (dimension, segment) not in names:
        names.append((dimension, segment))
    series: dict[str, dict[str, list[int]]] = {}
    changes: dict[str, dict[str, dict[str, Any]]] = {}
    for d, s in names:
        v = [int(r.sizes.get((d, s), 0)) for r in records]
        series.setdefault(d, {})[s] = v
        changes.setdefault(d, {})[s] = change(v[0] if v else None, v[-1] if v else None)
    return {"at": [r.at for r in records], "dimensions": series, "change": changes}


def flow_counts(
    flows: Mapping[str, Sequence[Mapping[str, Any]]],
) -> dict[tuple[str, str], list[int]]:
    """(dimension, segment) -> [entries, exits] from flows per dimension
    (``[{from, to, count}]``, as ``streams.store.series.read_flows`` gives them).

    >>> flow_counts({"journey": [{"from": None, "to": "new", "count": 3},
    ...                          {"from": "new", "to": "buyer", "count": 1}]})
    {('journey', 'new'): [3, 1], ('journey', 'buyer'): [1, 0]}
    """
    out: dict[tuple[str, str], list[int]] = {}
    for dimension, rows in flows.items():
        for row in rows:
            n = int(row["count"])
            out.setdefault((dimension, str(row["to"])), [0, 0])[0] += n
            if row.get("from"):
                out.setdefault((dimension, str(row["from"])), [0, 0])[1] += n
    return out


def checks_breadth(dimension: str, segment: str) -> bool:
    """Whether a segment is checked for being over-broad: custom rules' members,
    behaviour clusters and interests; not the exhaustive dimensions (:data:`EXHAUSTIVE`)
    nor a custom rule's ``non_member`` (the complement of what the rule selects).

    >>> checks_breadth("custom:vip", "member"), checks_breadth("custom:vip", "non_member")
    (True, False)
    >>> checks_breadth("journey", "browsing"), checks_breadth("behaviour", "cluster_0")
    (False, True)
    """
    if dimension.startswith(CUSTOM_PREFIX):
        return segment != NON_MEMBER
    return dimension not in EXHAUSTIVE


def engagement(state: CustomerState) -> float | None:
    """Events per active week: events over the weeks from first to last seen (at least
    one). None for a customer never seen.

    >>> s = CustomerState("c", first_seen=0.0, last_seen=2 * WEEK_S, events=10)
    >>> engagement(s), engagement(CustomerState("d", first_seen=0.0, last_seen=60.0, events=3))
    (5.0, 3.0)
    """
    if state.first_seen is None:
        return None
    weeks = max(1.0, ((state.last_seen or state.first_seen) - state.first_seen) / WEEK_S)
    return state.events / weeks


@dataclass(slots=True)
class MemberStats:
    """The sums a segment's member figures are means of."""

    read: int = 0
    with_clock: int = 0
    converted: int = 0
    revenue: float = 0.0
    engaged: int = 0
    engagement: float = 0.0
    scored: int = 0
    clv: float = 0.0
    p_alive: float = 0.0

    def add(
        self,
        state: CustomerState,
        clock: float | None,
        window_s: float,
        model: ClvModel | None,
        horizon_days: float,
    ) -> None:
        self.read += 1
        self.revenue += state.revenue
        if (e := engagement(state)) is not None:
            self.engaged += 1
            self.engagement += e
        if clock is None:
            return
        self.with_clock += 1
        if state.last_order_at is not None and state.last_order_at >= clock - window_s:
            self.converted += 1
        if model is not None and (summary := summary_at(state, day_of(clock))) is not None:
            p = model.predict(summary, horizon_days)
            if not (math.isfinite(p.clv) and math.isfinite(p.p_alive)):
                return  # a degenerate fit's overflow would swamp the mean
            self.scored += 1
            self.clv += p.clv
            self.p_alive += p.p_alive

    def figures(self, model: ClvModel | None) -> dict[str, Any]:
        def mean(total: float, n: int, digits: int) -> float | None:
            return round(total / n, digits) if n else None

        return {
            "members_read": self.read,
            "conversion": mean(self.converted, self.with_clock, 4),
            "revenue_per_customer": mean(self.revenue, self.read, 2),
            "clv": None if model is None else mean(self.clv, self.scored, 2),
            "p_alive": None if model is None else mean(self.p_alive, self.scored, 4),
            "scored": self.scored,
            "engagement": mean(self.engagement, self.engaged, 3),
        }


@dataclass(frozen=True, slots=True)
class ReportRules:
    """The report's window and thresholds."""

    window_s: float
    over_broad_share: float = 0.5
    stale_days: float = 14.0
    horizon_days: float = 365.0
    sample: int = 5000


@dataclass(frozen=True, slots=True)
class ReportInputs:
    """What the shell read for a report (``now`` is wall time)."""

    now: float
    #: (dimension, segment) -> size now (the segment indexes).
    sizes: Mapping[tuple[str, str], int]
    #: The first sizes record in the window (None: none recorded in it).
    start: SizeRecord | None
    #: Flows over the window per dimension, and the window they cover (seconds).
    flows: Mapping[str, Sequence[Mapping[str, Any]]]
    flows_window_s: float
    #: (dimension, segment) -> wall time of the latest entry; since when entries are kept.
    last_entry: Mapping[tuple[str, str], float]
    entries_since: float | None
    #: (dimension, segment) -> the members read (at most ``sample``).
    members: Mapping[tuple[str, str], Sequence[str]]
    #: customer -> state, and customer -> its partition's clock (event time).
    states: Mapping[str, CustomerState]
    clocks: Mapping[str, float | None]
    model: ClvModel | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def is_stale(
    last_entry: float | None, entries_since: float | None, now: float, days: float
) -> bool | None:
    """No entry for ``days``; None when unknown (entries tracked for less than that).

    >>> day = 86400.0
    >>> is_stale(0.0, 0.0, 20 * day, 14), is_stale(None, 0.0, 20 * day, 14)
    (True, True)
    >>> is_stale(None, 10 * day, 20 * day, 14), is_stale(19 * day, 0.0, 20 * day, 14)
    (None, False)
    """
    limit = days * DAY_S
    if last_entry is not None and now - last_entry <= limit:
        return False
    if entries_since is not None and now - entries_since > limit:
        return True
    return None


def segment_report(inputs: ReportInputs, rules: ReportRules) -> dict[str, Any]:
    """The report: per dimension, its customers and one row per segment (by size)."""
    flows = flow_counts(inputs.flows)
    start = inputs.start.sizes if inputs.start is not None else None
    totals: dict[str, int] = {}
    for (d, _s), n in inputs.sizes.items():
        totals[d] = totals.get(d, 0) + n
    dimensions: dict[str, list[dict[str, Any]]] = {}
    segments = sorted(inputs.sizes, key=lambda k: (k[0], -inputs.sizes[k], k[1]))
    for key in segments:
        dimension, segment = key
        size = int(inputs.sizes[key])
        total = totals[dimension]
        share = size / total if total else 0.0
        stats = MemberStats()
        members = inputs.members.get(key, ())
        for cid in members:
            state = inputs.states.get(cid)
            if state is not None:
                stats.add(
                    state, inputs.clocks.get(cid), rules.window_s, inputs.model, rules.horizon_days
                )
        entries, exits = flows.get(key, [0, 0])
        over_broad = checks_breadth(dimension, segment) and share > rules.over_broad_share
        stale = is_stale(
            inputs.last_entry.get(key), inputs.entries_since, inputs.now, rules.stale_days
        )
        dimensions.setdefault(dimension, []).append(
            {
                "segment": segment,
                "size": size,
                "share": round(share, 4),
                "change": change(None if start is None else int(start.get(key, 0)), size),
                "entries": entries,
                "exits": exits,
                **stats.figures(inputs.model),
                "sampled": len(members) < size,
                "last_entry_at": inputs.last_entry.get(key),
                "over_broad": over_broad,
                "stale": stale,
            }
        )
    return {
        "generated_at": inputs.now,
        "window_s": rules.window_s,
        "since": inputs.now - rules.window_s,
        "history_from": None if inputs.start is None else inputs.start.at,
        "flows_window_s": inputs.flows_window_s,
        "sample": rules.sample,
        "over_broad_share": rules.over_broad_share,
        "stale_days": rules.stale_days,
        "model_version": None if inputs.model is None else inputs.model.version,
        "horizon_days": rules.horizon_days,
        **inputs.extra,
        "dimensions": [
            {"dimension": d, "customers": totals[d], "segments": rows}
            for d, rows in dimensions.items()
        ],
    }
