"""The actions agent: segment changes in, retention actions out (docs/actions.md).

One agent reads ``segments.changes`` and ``events.purchase``. Both have the input topics'
key and partition count, so Faust's co-partitioning hands partition *n* of both to the
owner of input partition *n*: a customer's action state has one writer. A batch costs one
pipelined read (action states not in memory, and the customer states of the customers
with a change, read-only) and one Lua call, in the order ``pipeline.py`` uses:

1. the new action state, its outbox of messages, the decision records (first assignments,
   suppression counts) and the due index are written atomically per customer, with a
   compare-and-set on the state's revision;
2. the messages are sent to ``actions.<channel>`` and the broker's acks awaited; the
   outboxes are emptied in the next round trip;
3. Faust commits the offsets.

A change redelivered after 1 gets ``duplicate`` from :func:`segmenters.actions.plan` (its
idempotency keys are in the state) and no second message; a worker that loads a customer
from Redis first re-sends what its outbox still holds, under the same idempotency keys.

Time is event time: a change is decided at its ``changed_at``, delayed actions come due
by a per-partition clock (the latest ``changed_at`` seen; in ``live`` mode at least the
wall clock), and purchases count at their ``occurred_at``. The wall clock is read once per
round and passed in only to tell news from history: an action on a change older than its
``max_age_s`` is suppressed ``stale`` (counted like every suppression), never sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import orjson
from pydantic import ValidationError
from redis.exceptions import ResponseError

from segmenters.actions import Decision, consent_of, due, next_due, plan
from segmenters.attribution import ActionDoc, current_segments, customer_features
from segmenters.changes import SegmentChange
from segmenters.events import InvalidEvent, parse_event
from segmenters.policy import DEFAULT_POLICY, Policy, PolicyError, load_policy
from segmenters.state import CustomerState
from segmenters.uplift import ActionUplift, Assignment, Group, Purchase, to_json, uplift

from .clock import ClockResets
from .keys import (
    Homes,
    ScriptKeys,
    actions_applied_key,
    actions_clock_key,
    actions_due_key,
    actions_key,
    actions_outbox_key,
    assigned_key,
    experiment_actions_key,
    partition_for,
    state_key,
    suppressed_key,
)
from .pipeline import Record
from .progress import ProgressGuard, field_of, process_until_done
from .rules import load_policy_file
from .security import aiokafka_kwargs
from .settings import Settings
from .store import (
    PROGRESS_CHECK_LUA,
    PROGRESS_RECORD_LUA,
    ProgressLost,
    by_partition_number,
    load_doc,
    progress_arg,
)
from .topics import ACTION_TOPICS, CHANGES, PURCHASE

log = logging.getLogger(__name__)

#: Sends one message to a topic; returns an awaitable that resolves once the broker has it.
SendTo = Callable[[str, bytes, bytes], Awaitable[Awaitable[Any]]]
MAX_CONFLICT_RETRIES = 5
OUTBOX_TTL_S = 7 * 86400
REPORT_EVERY_S = 10.0
#: Suppression reasons that are not a guard's verdict and stay out of the report.
UNCOUNTED = frozenset({"duplicate"})

#: Writes a batch atomically, customer by customer: the action doc only if its stored
#: revision is the one computed from (compare-and-set), then, only then, its outbox,
#: decision records and due entry. ARGV[1]: the batch as JSON (see ``ActionStore.commit``).
#:
#: Progress (ARGV[3], JSON), as in ``store.COMMIT_LUA``: ``a`` the input offsets the batch
#: applied, recorded in ``<p>:act:applied`` only when every write won; ``x`` the offsets
#: this worker recorded before. Less stored than ``x`` means Redis lost writes: nothing is
#: written, and the call fails with SEGSTREAM_PROGRESS_LOST.
COMMIT_LUA = (
    """
local writes = cjson.decode(ARGV[1])
local progress = cjson.decode(ARGV[3])
"""
    + PROGRESS_CHECK_LUA
    + """local all_ok = true
local out = {}
for i, w in ipairs(writes) do
  local skey = KEYS[w.s]
  local rev = redis.call('HGET', skey, 'rev') or '0'
  if rev ~= w.r then
    all_ok = false
    out[i] = {0, rev}
  else
    local new = tonumber(rev) + 1
    redis.call('HSET', skey, 'doc', w.d, 'rev', new)
    if w.o then
      for _, entry in ipairs(w.o) do redis.call('RPUSH', KEYS[w.ok], entry) end
      redis.call('EXPIRE', KEYS[w.ok], tonumber(ARGV[2]))
    end
    if w.a then
      for _, a in ipairs(w.a) do
        redis.call('HSETNX', KEYS[a[1]], w.c, a[2])
        redis.call('SADD', KEYS[a[3]], a[4])
      end
    end
    if w.x then
      for _, x in ipairs(w.x) do
        redis.call('HINCRBY', KEYS[x[1]], x[2], 1)
        redis.call('SADD', KEYS[x[3]], x[4])
      end
    end
    if w.t then
      if w.due then redis.call('ZADD', KEYS[w.t], w.due, w.c)
      else redis.call('ZREM', KEYS[w.t], w.c) end
    end
    out[i] = {1, tostring(new)}
  end
end
"""
    + PROGRESS_RECORD_LUA
    + """
return out
"""
)


@dataclass(slots=True)
class Loaded:
    rev: int
    doc: ActionDoc
    #: Outbox entries not confirmed delivered (only on a load from Redis).
    unsent: list[bytes] = field(default_factory=list)


@dataclass(slots=True)
class Write:
    customer_id: str
    expected_rev: int
    doc: ActionDoc
    #: Move the customer's entry in its partition's due index (to ``due``, or out).
    touch_due: bool
    decisions: list[Decision]
    experiment: str
    due: float | None = None
    #: Outbox entries: {"topic": "actions.email", "value": <message JSON>}.
    outbox: list[bytes] = field(default_factory=list)


@dataclass(slots=True)
class ActionStats:
    changes: int = 0
    purchases: int = 0
    invalid: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    sent: int = 0
    resent: int = 0
    conflicts: int = 0
    due: int = 0
    #: Changes of a dimension no rule names: nothing to decide or cancel, not loaded.
    ignored: int = 0
    #: (action, outcome, reason) -> decisions written (for the metrics).
    decided: Counter[tuple[str, str, str]] = field(default_factory=Counter)


class ActionStore:
    """Action docs in Redis: a worker cache, batched loads and compare-and-set writes."""

    def __init__(self, client: Any, *, prefix: str, partitions: int, cache_size: int) -> None:
        self.client = client
        self.prefix = prefix
        self.home = Homes(partitions)
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Loaded] = OrderedDict()
        self._delivered: set[str] = set()
        self.round_trips = 0
        #: "<topic>:<partition>" -> the offset this worker last recorded in ``act:applied``
        #: (a ``ProgressGuard`` keeps it across assignments and replays it after a loss).
        self.progress: dict[str, int] = {}

    def forget(self, customer_ids: Iterable[str] | None = None) -> None:
        if customer_ids is None:
            self._cache.clear()
        else:
            for cid in customer_ids:
                self._cache.pop(cid, None)

    def _remember(self, cid: str, loaded: Loaded) -> None:
        if self.cache_size <= 0:
            return
        self._cache[cid] = loaded
        self._cache.move_to_end(cid)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def delivered(self, customer_ids: Iterable[str]) -> None:
        """These customers' messages reached Kafka: their outboxes go in the next round trip."""
        self._delivered.update(customer_ids)

    def _flush_delivered(self, pipe: Any) -> int:
        n = len(self._delivered)
        for cid in self._delivered:
            pipe.delete(actions_outbox_key(self.prefix, self.home(cid), cid))
        self._delivered.clear()
        return n

    async def load(
        self, customer_ids: Iterable[str], profiles: Iterable[str] = ()
    ) -> tuple[dict[str, Loaded], dict[str, CustomerState | None]]:
        """Action docs (memory first, the rest read) and, read-only, the customer states of
        ``profiles``: one pipelined round trip, none if everything is in memory."""
        found: dict[str, Loaded] = {}
        missing = []
        for cid in customer_ids:
            hit = self._cache.get(cid)
            if hit is None:
                missing.append(cid)
            else:
                found[cid] = hit
        wanted = list(dict.fromkeys(profiles))
        if not missing and not wanted:
            return found, {}
        pipe = self.client.pipeline(transaction=False)
        for cid in missing:
            p = self.home(cid)
            pipe.hmget(actions_key(self.prefix, p, cid), "rev", "doc")
            pipe.lrange(actions_outbox_key(self.prefix, p, cid), 0, -1)
        for cid in wanted:
            pipe.hget(state_key(self.prefix, self.home(cid), cid), "doc")
        rows = await pipe.execute()
        self.round_trips += 1
        for i, cid in enumerate(missing):
            rev, raw = rows[2 * i]
            doc = ActionDoc.from_doc(orjson.loads(raw) if raw else None, cid)
            found[cid] = Loaded(int(rev or 0), doc, unsent=list(rows[2 * i + 1]))
            self._remember(cid, Loaded(int(rev or 0), doc))
        states = {
            cid: (CustomerState.from_doc(load_doc(raw) or {}) if raw else None)
            for cid, raw in zip(wanted, rows[2 * len(missing) :], strict=True)
        }
        return found, states

    async def commit(self, writes: list[Write], applied: dict[str, int] | None = None) -> set[str]:
        """Write in one round trip; return the customers whose write lost (recompute them).

        ``applied``: the input offsets the batch applied, recorded with its writes. Every
        partition written or recorded is checked against the progress this worker
        recorded before (raises ``ProgressLost`` if Redis has less)."""
        if not writes and not self._delivered and not applied:
            return set()
        pipe = self.client.pipeline(transaction=False)
        cleared = self._flush_delivered(pipe)
        by_partition: dict[int, list[Write]] = {}
        for w in writes:
            by_partition.setdefault(self.home(w.customer_id), []).append(w)
        applied_by = by_partition_number(applied or {})
        expected_by = by_partition_number(self.progress)
        calls = []  # the writes of each queued Lua call, in order
        for p in sorted({*by_partition, *applied_by}):
            part = by_partition.get(p, [])
            self._queue_commit(pipe, p, part, applied_by.get(p, {}), expected_by.get(p, {}))
            calls.append(part)
        try:
            results = await pipe.execute()
        except ResponseError as exc:
            if "SEGSTREAM_PROGRESS_LOST" in str(exc):
                raise ProgressLost(str(exc)) from exc
            raise
        self.round_trips += 1
        if applied and all(int(ok) == 1 for call in results[cleared:] for ok, _ in call):
            for f, o in applied.items():
                self.progress[f] = max(o, self.progress.get(f, -1))
        lost: set[str] = set()
        for part, replies in zip(calls, results[cleared:], strict=True):
            for w, (ok, rev) in zip(part, replies, strict=True):
                if int(ok) == 1:
                    self._remember(w.customer_id, Loaded(int(rev), w.doc))
                else:
                    lost.add(w.customer_id)
                    self.forget([w.customer_id])
        return lost

    def _queue_commit(
        self,
        pipe: Any,
        p: int,
        writes: list[Write],
        applied: dict[str, int],
        expected: dict[str, int],
    ) -> None:
        """Queue one ``COMMIT_LUA`` call: the writes and progress of one partition (one slot)."""
        script_keys = ScriptKeys()
        keys, ref = script_keys.keys, script_keys.ref
        batch = []
        for w in writes:
            cid = w.customer_id
            item: dict[str, Any] = {
                "c": cid,
                "s": ref(actions_key(self.prefix, p, cid)),
                "r": str(w.expected_rev),
                "d": orjson.dumps(w.doc.to_doc()).decode(),
            }
            if w.outbox:
                item["ok"] = ref(actions_outbox_key(self.prefix, p, cid))
                item["o"] = [e.decode() for e in w.outbox]
            assigned, suppressed = [], []
            for d in w.decisions:
                a = d.assignment()
                if a is not None:
                    assigned.append(
                        [
                            ref(assigned_key(self.prefix, p, d.experiment, d.action)),
                            f"{a.group} {a.at!r}",
                            ref(experiment_actions_key(self.prefix, p, d.experiment)),
                            d.action,
                        ]
                    )
                elif d.outcome == "suppressed" and d.reason not in UNCOUNTED:
                    suppressed.append(
                        [
                            ref(suppressed_key(self.prefix, p, d.experiment)),
                            f"{d.action} {d.reason}",
                            ref(experiment_actions_key(self.prefix, p, d.experiment)),
                            d.action,
                        ]
                    )
            if assigned:
                item["a"] = assigned
            if suppressed:
                item["x"] = suppressed
            if w.touch_due:
                item["t"] = ref(actions_due_key(self.prefix, p))
                if w.due is not None:
                    item["due"] = repr(w.due)
            batch.append(item)
        key = actions_applied_key(self.prefix, p)
        progress = progress_arg(lambda: ref(key), applied, expected)
        pipe.eval(
            COMMIT_LUA,
            len(keys),
            *keys,
            orjson.dumps(batch),
            OUTBOX_TTL_S,
            progress,
        )

    async def applied_offsets(self) -> dict[str, int]:
        """``<p>:act:applied`` of every partition: "<topic>:<partition>" -> last offset the
        actions agent applied, as Redis has it."""
        pipe = self.client.pipeline(transaction=False)
        for p in range(self.home.partitions):
            pipe.hgetall(actions_applied_key(self.prefix, p))
        rows = await pipe.execute()
        self.round_trips += 1
        return {k.decode(): int(v) for row in rows for k, v in row.items()}

    async def due_customers(self, clocks: dict[int, float], limit: int) -> dict[int, list[str]]:
        """Customers with delayed actions due, per partition (and the pending outbox deletes)."""
        pipe = self.client.pipeline(transaction=False)
        cleared = self._flush_delivered(pipe)
        parts = sorted(clocks)
        for p in parts:
            pipe.zrangebyscore(
                actions_due_key(self.prefix, p), "-inf", clocks[p], start=0, num=limit
            )
        if not parts and not cleared:
            return {}
        rows = (await pipe.execute())[cleared:]
        self.round_trips += 1
        return {p: [c.decode() for c in row] for p, row in zip(parts, rows, strict=True)}


class PolicySource:
    """The policy in force: the packaged defaults, or a file reloaded when it changes.

    With ``settings``, the file is checked against the deployment's segments (clusters,
    custom segments: streams/rules.py) and read again when the segments file changes too,
    so a rule left naming a removed custom segment is reported.
    """

    def __init__(self, path: Path | None, settings: Settings | None = None) -> None:
        self.path = path
        self.settings = settings
        self.policy: Policy = DEFAULT_POLICY
        self._mtime: tuple[float | None, ...] | None = None
        if path is not None:
            self.policy = self._load(path)  # a bad file stops the start
            self._mtime = self._mtimes(path)
            log.info("retention policy %s loaded: version %s", path, self.policy.version)

    def _load(self, path: Path) -> Policy:
        if self.settings is None:
            return load_policy(path.read_text())
        return load_policy_file(path, self.settings, strict=False)

    def _mtimes(self, path: Path) -> tuple[float | None, ...]:
        segments = None if self.settings is None else self.settings.segments_file
        try:  # a missing segments file is reported by the segments reload
            seg_mtime = None if segments is None else segments.stat().st_mtime
        except OSError:
            seg_mtime = None
        return (path.stat().st_mtime, seg_mtime)

    def reload(self) -> Policy:
        """Load the file again if its mtime changed; a bad file keeps the previous policy."""
        if self.path is None:
            return self.policy
        try:
            mtime = self._mtimes(self.path)
            if mtime == self._mtime:
                return self.policy
            self._mtime = mtime
            policy = self._load(self.path)
        except (OSError, PolicyError) as exc:
            log.error(
                "retention policy %s: %s (keeping version %s)", self.path, exc, self.policy.version
            )
            return self.policy
        self.policy = policy
        log.info(
            "retention policy %s reloaded: version %s, %d action(s), %d rule(s)",
            self.path,
            policy.version,
            len(policy.actions),
            len(policy.rules),
        )
        return policy


@dataclass(frozen=True, slots=True)
class _Item:
    """One input of a customer, in event-time order: a change, or a purchase."""

    at: float
    order: int
    change: SegmentChange | None = None
    purchase: tuple[str, float] | None = None  # (order_id, amount)


class ActionsService:
    """Decides and publishes actions; shared by the agent, the timer and the tests."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: ActionStore,
        policy: PolicySource,
        send: SendTo,
        clock: Callable[[], float] = time.time,
        observer: Callable[[Counter[tuple[str, str, str]]], None] | None = None,
    ) -> None:
        self.settings = settings
        #: Gets each round's decisions by (action, outcome, reason): the metrics.
        self.observer = observer
        self.store = store
        self.policies = policy
        self.send = send
        self.wall = clock
        self.changes_topic = settings.topic(CHANGES)
        self.purchase_topic = settings.topic(PURCHASE)
        #: Per partition of segments.changes, the latest ``changed_at`` seen.
        self.watermarks: dict[int, float] = {}
        self._clocks_loaded = False
        #: ``segstream clock reset``s applied to the action clocks (streams/clock.py).
        self._resets: ClockResets | None = None
        self.lock = asyncio.Lock()
        self._dims: frozenset[str] = frozenset()
        self._dims_of: Policy | None = None
        self.total = ActionStats()
        self._last_report = time.monotonic()
        #: Purchase currencies other than SEGSTREAM_CURRENCY seen (each is warned about once).
        self.other_currencies: set[str] = set()

    @property
    def policy(self) -> Policy:
        return self.policies.policy

    # --- the agent ---------------------------------------------------------------------
    async def process(self, records: Sequence[Record]) -> ActionStats:
        async with self.lock:
            return await self.process_holding_lock(records)

    async def process_holding_lock(self, records: Sequence[Record]) -> ActionStats:
        """``process`` for a caller that already holds ``lock`` (the replay of what Redis
        lost, ``progress.ProgressGuard``)."""
        stats = ActionStats()
        items: dict[str, list[_Item]] = {}
        applied: dict[str, int] = {}
        for n, r in enumerate(records):
            field = field_of(r.topic, r.partition)
            applied[field] = max(r.offset, applied.get(field, -1))
            item, cid = self._parse(r, n, stats)
            if item is None or cid is None:
                continue
            items.setdefault(cid, []).append(item)
            if item.change is not None:
                if item.at > self.watermarks.get(r.partition, float("-inf")):
                    self.watermarks[r.partition] = item.at
        for lst in items.values():
            lst.sort(key=lambda i: (i.at, i.order))
        await self._run(items, None, stats, applied)
        self._add(stats)
        return stats

    def _parse(self, r: Record, n: int, stats: ActionStats) -> tuple[_Item | None, str | None]:
        if r.value is None:
            return None, None
        if r.topic == self.purchase_topic:
            try:
                event = parse_event(r.value, max_bytes=self.settings.max_event_bytes)
            except InvalidEvent:
                return None, None  # the ingest agent dead-letters it
            if event.type != "purchase":
                return None, None
            stats.purchases += 1
            if event.currency != self.settings.currency:
                self._other_currency(event.currency)
            at = event.occurred_at.timestamp()
            return _Item(at, n, purchase=(event.order_id, event.total)), event.customer_id
        try:
            raw = orjson.loads(r.value)
            if isinstance(raw, dict) and raw.get("dimension") not in self._dimensions():
                stats.ignored += 1  # a catch-up brings about a change per event; most are these
                return None, None
            change = SegmentChange.model_validate(raw)
        except (ValidationError, orjson.JSONDecodeError) as exc:
            stats.invalid += 1
            log.error(
                "skipping an unreadable segment change at %s/%d@%d: %s",
                r.topic,
                r.partition,
                r.offset,
                exc.errors(include_url=False)[:1] if isinstance(exc, ValidationError) else exc,
            )
            return None, None
        stats.changes += 1
        return _Item(change.changed_at.timestamp(), n, change=change), change.customer_id

    def _other_currency(self, currency: str) -> None:
        """Totals are summed as sent, never converted: say once that the report mixes."""
        if currency not in self.other_currencies:
            self.other_currencies.add(currency)
            log.warning(
                "purchases in %s: the uplift report sums them with %s amounts "
                "(SEGSTREAM_CURRENCY; segstream does not convert currencies)",
                currency,
                self.settings.currency,
            )

    def _dimensions(self) -> frozenset[str]:
        """The dimensions the current policy's rules name (cached per policy object)."""
        policy = self.policy
        if self._dims_of is not policy:
            self._dims = frozenset(rule.dimension for rule in policy.rules)
            self._dims_of = policy
        return self._dims

    # --- delayed actions ----------------------------------------------------------------
    async def fire_due(self, partitions: Iterable[int], limit: int = 1000) -> ActionStats:
        """Decide the delayed actions due by each owned partition's clock."""
        async with self.lock:
            stats = ActionStats()
            if not self._clocks_loaded:
                raw = await self.store.client.hgetall(actions_clock_key(self.store.prefix))
                for p, w in raw.items():
                    self.watermarks.setdefault(int(p), float(w))
                self._resets = ClockResets(self.store.client, self.store.prefix)
                await self._resets.prime()
                self._clocks_loaded = True
            clocks = {}
            for p in partitions:
                wm = self.watermarks.get(p)
                if self.settings.clock == "live":
                    clocks[p] = self.wall() if wm is None else max(wm, self.wall())
                elif wm is not None:
                    clocks[p] = wm
            found = await self.store.due_customers(clocks, limit)
            for p, customers in found.items():
                if customers:
                    stats.due += len(customers)
                    groups = {c: [_Item(clocks[p], 0)] for c in customers}
                    await self._run(groups, clocks[p], stats)
            self._add(stats)
            return stats

    async def save_clocks(self, partitions: Iterable[int]) -> None:
        if self._resets is not None:  # a clock reset lowers the partition's action clock
            await self._resets.adopt(self.watermarks, field="clock")
        mine = {str(p): repr(w) for p, w in self.watermarks.items() if p in set(partitions)}
        if mine:
            await self.store.client.hset(actions_clock_key(self.store.prefix), mapping=mine)

    # --- one round: load, decide, write, send ------------------------------------------
    async def _run(
        self,
        items: dict[str, list[_Item]],
        due_at: float | None,
        stats: ActionStats,
        applied: dict[str, int] | None = None,
    ) -> None:
        """Load, decide, write (with ``applied``, the batch's input offsets), then send."""
        policy = self.policy
        profiles = [
            c for c, lst in items.items() if due_at is not None or any(i.change for i in lst)
        ]
        loaded, states = await self.store.load(items, profiles)
        unsent = {c: list(b.unsent) for c, b in loaded.items() if b.unsent}
        todo = dict(items)
        messages: list[tuple[str, bytes, bytes]] = []
        wall = self.wall()  # against which each action's max_age_s is measured
        for _attempt in range(MAX_CONFLICT_RETRIES + 1):
            writes = [
                self._decide(policy, cid, lst, loaded[cid], states.get(cid), due_at, wall)
                for cid, lst in todo.items()
            ]
            writes = [w for w in writes if w is not None]
            lost = await self.store.commit(writes, applied)
            for w in writes:
                if w.customer_id in lost:
                    continue
                stats.outcomes.update(
                    d.outcome if d.outcome != "suppressed" else d.reason for d in w.decisions
                )
                stats.decided.update((d.action, d.outcome, d.reason) for d in w.decisions)
                for entry in w.outbox:
                    msg = orjson.loads(entry)
                    messages.append((msg["topic"], w.customer_id.encode(), entry))
            if not lost:
                break
            stats.conflicts += len(lost)
            log.info("action state of %d customer(s) changed under us; recomputing", len(lost))
            todo = {c: todo[c] for c in lost}
            reloaded, _ = await self.store.load(lost)
            loaded.update(reloaded)
            for c, fresh in reloaded.items():
                if fresh.unsent:
                    unsent[c] = list(dict.fromkeys([*unsent.get(c, []), *fresh.unsent]))
        else:
            raise RuntimeError(f"action state kept changing under us for {sorted(todo)}")

        acks = []
        # What a crash left unsent goes first, under the idempotency keys it had.
        for cid, entries in unsent.items():
            for entry in entries:
                msg = orjson.loads(entry)
                acks.append(await self.send(msg["topic"], cid.encode(), _value(msg)))
                stats.resent += 1
        for topic, key, entry in messages:
            acks.append(await self.send(topic, key, _value(orjson.loads(entry))))
            stats.sent += 1
        if acks:
            await asyncio.gather(*acks)
        self.store.delivered([*unsent, *(key.decode() for _, key, _ in messages)])

    def _decide(
        self,
        policy: Policy,
        cid: str,
        items: list[_Item],
        before: Loaded,
        customer: CustomerState | None,
        due_at: float | None,
        wall: float,
    ) -> Write | None:
        doc = ActionDoc(before.doc.state, dict(before.doc.first), list(before.doc.buys))
        doc.first = {e: dict(m) for e, m in doc.first.items()}
        state = doc.state
        decisions: list[Decision] = []
        consent = _consent(customer)
        features = customer_features(customer, self.settings.currency)
        cart = {} if customer is None else customer.cart
        latest = float("-inf")
        changed = False
        for item in items:
            latest = max(latest, item.at)
            if item.purchase is not None:
                changed |= doc.add_purchase(item.purchase[0], item.at, item.purchase[1])
                continue
            if item.change is not None:
                state, ds = plan(
                    policy,
                    item.change,
                    state,
                    now=item.at,
                    consent=consent,
                    features=features,
                    cart=cart,
                    wall=wall,
                    last_seen=None if customer is None else customer.last_seen,
                )
            else:  # a due-index visit: always written, so the index entry moves on
                changed = True
                state, ds = due(
                    policy,
                    state,
                    now=item.at,
                    current_segments=current_segments(customer),
                    consent=consent,
                    features=features,
                    cart=cart,
                    wall=wall,
                )
            decisions.extend(ds)
            changed |= bool(ds)
        for d in decisions:
            a = d.assignment()
            if a is not None:
                doc.assign(d.experiment, d.action, a.group, a.at)
        doc.state = state
        doc.prune(
            now=latest,
            window_s=policy.conversion_window_s,
            keep_s=self.settings.actions_keep_purchases_s,
        )
        if not changed:
            return None
        outbox = [
            orjson.dumps(
                {
                    "topic": self.settings.topic(d.message.topic),
                    "value": d.message.model_dump(mode="json"),
                }
            )
            for d in decisions
            if d.message is not None
        ]
        return Write(
            customer_id=cid,
            expected_rev=before.rev,
            doc=doc,
            touch_due=bool(decisions) or due_at is not None,
            decisions=decisions,
            experiment=policy.experiment,
            due=next_due(state),
            outbox=outbox,
        )

    def _add(self, s: ActionStats) -> None:
        t = self.total
        t.changes += s.changes
        t.purchases += s.purchases
        t.invalid += s.invalid
        t.outcomes.update(s.outcomes)
        t.sent += s.sent
        t.resent += s.resent
        t.conflicts += s.conflicts
        t.due += s.due
        t.ignored += s.ignored
        if self.observer is not None and s.decided:
            try:
                self.observer(s.decided)
            except Exception:  # metrics never stop the stream
                log.exception("recording action metrics failed")
        now = time.monotonic()
        if now - self._last_report >= REPORT_EVERY_S and (s.changes or s.due or s.purchases):
            self._last_report = now
            top = ", ".join(f"{k} {v}" for k, v in sorted(t.outcomes.items()))
            log.info(
                "actions: changes %d (and %d of other dimensions) purchases %d sent %d (%s)",
                t.changes,
                t.ignored,
                t.purchases,
                t.sent,
                top or "no decisions",
            )


def _value(msg: dict[str, Any]) -> bytes:
    return orjson.dumps(msg["value"])


def _consent(state: CustomerState | None) -> bool | None:
    return None if state is None else consent_of(state.profile)


# --- Faust wiring ------------------------------------------------------------------------
def register_actions(
    app: Any,
    settings: Settings,
    client: Any,
    observer: Callable[[Counter[tuple[str, str, str]]], None] | None = None,
) -> ActionsService | None:
    """The actions agent (segments.changes + events.purchase) and its due-action timer;
    ``observer`` gets the decisions' counts (``Metrics.actions_decided``)."""
    if not settings.actions_enabled:
        return None
    outputs = {
        t: app.topic(settings.topic(t), key_serializer="raw", value_serializer="raw")
        for t in ACTION_TOPICS
    }
    by_name = {settings.topic(t): topic for t, topic in outputs.items()}

    async def send(topic: str, key: bytes, value: bytes) -> Awaitable[Any]:
        return await by_name[topic].send(key=key, value=value)

    service = ActionsService(
        settings=settings,
        store=ActionStore(
            client,
            prefix=settings.key_prefix,
            partitions=settings.topic_partitions,
            cache_size=settings.state_cache_size,
        ),
        policy=PolicySource(settings.actions_file, settings),
        send=send,
        observer=observer,
    )
    source = app.topic(
        settings.topic(CHANGES),
        settings.topic(PURCHASE),
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.topic_partitions,
    )
    changes = settings.topic(CHANGES)
    guard = ProgressGuard(
        store=service.store,
        processor=service,
        inputs={changes, settings.topic(PURCHASE)},
        kafka=aiokafka_kwargs(settings),
        batch_size=settings.actions_batch_size,
    )
    guard.install(app)

    @app.agent(source, name=f"{settings.app_id}.actions", concurrency=1)
    async def actions(stream: Any) -> None:
        async for events in stream.take_events(
            settings.actions_batch_size, within=settings.batch_window_s
        ):
            records = [
                Record(
                    e.message.topic,
                    e.message.partition,
                    e.message.offset,
                    e.message.key,
                    e.message.value,
                )
                for e in events
            ]
            await process_until_done(service, records, None, guard)

    def owned() -> list[int]:
        return sorted(tp.partition for tp in app.consumer.assignment() if tp.topic == changes)

    state = {"next_save": 0.0}

    @app.timer(interval=settings.timer_interval_s, name=f"{settings.app_id}.actions_due")
    async def fire_due_actions() -> None:
        try:
            service.policies.reload()
            partitions = owned()
            await service.fire_due(partitions, settings.timer_batch)
            if time.monotonic() >= state["next_save"]:
                state["next_save"] = time.monotonic() + 1.0
                await service.save_clocks(partitions)
        except ProgressLost:  # Redis lost writes: replay them (the agent may be idle)
            await guard.recover_after_scan("due-action scan")
        except Exception:  # retried at the next tick; never stop the worker
            log.exception("due-action scan failed")

    return service


# --- the report --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ReportData:
    experiment: str
    window_s: float
    assignments: list[Assignment]
    purchases: list[Purchase]
    suppressions: list[tuple[str, str]]

    def results(
        self, *, min_group: int, since: float | None = None, until: float | None = None
    ) -> list[ActionUplift]:
        """Per action; only first assignments decided in ``[since, until)`` count."""
        return uplift(
            self.assignments,
            self.purchases,
            window_s=self.window_s,
            suppressions=self.suppressions,
            min_group=min_group,
            since=since,
            until=until,
        )

    def to_json(
        self, settings: Settings, *, since: float | None = None, until: float | None = None
    ) -> dict[str, Any]:
        """The report as numbers (``/api/actions``, ``actions report --json``)."""
        min_group = settings.uplift_min_group
        return {
            "experiment": self.experiment,
            "conversion_window_s": self.window_s,
            "since": since,
            "until": until,
            "min_group": min_group,
            "currency": settings.currency,
            "level": 0.95,
            "rows": [
                to_json(r, currency=settings.currency)
                for r in self.results(min_group=min_group, since=since, until=until)
            ],
        }


def report_data(
    client: Any,
    settings: Settings,
    policy: Policy,
    experiment: str | None = None,
    chunk: int = 2000,
) -> ReportData:
    """The decision records and purchases of an experiment, read from Redis (sync client),
    every partition's.

    Cost: three pipelined reads, then one per ``chunk`` assigned customers.
    """
    exp = experiment or policy.experiment
    prefix = settings.key_prefix
    parts = range(settings.topic_partitions)
    pipe = client.pipeline(transaction=False)
    for p in parts:
        pipe.smembers(experiment_actions_key(prefix, p, exp))
    actions = sorted({m.decode() for row in pipe.execute() for m in row})
    pipe = client.pipeline(transaction=False)
    for p in parts:
        for a in actions:
            pipe.hgetall(assigned_key(prefix, p, exp, a))
        pipe.hgetall(suppressed_key(prefix, p, exp))
    rows = pipe.execute()
    assignments = []
    suppressions = []
    per = len(actions) + 1
    for i in range(0, len(rows), per):
        for a, row in zip(actions, rows[i : i + per - 1], strict=True):
            for cid, value in row.items():
                group, at = value.decode().split(" ")
                assignments.append(Assignment(cid.decode(), a, cast(Group, group), float(at)))
        for k, n in rows[i + per - 1].items():
            action, reason = k.decode().rsplit(" ", 1)
            suppressions.extend([(action, reason)] * int(n))
    customers = sorted({a.customer_id for a in assignments})
    purchases = []
    for i in range(0, len(customers), chunk):
        part = customers[i : i + chunk]
        pipe = client.pipeline(transaction=False)
        for cid in part:
            pipe.hget(
                actions_key(prefix, partition_for(cid, settings.topic_partitions), cid), "doc"
            )
        for cid, raw in zip(part, pipe.execute(), strict=True):
            if raw:
                for _order, at, amount in orjson.loads(raw).get("buys", []):
                    purchases.append(Purchase(cid, float(at), float(amount)))
    return ReportData(exp, policy.conversion_window_s, assignments, purchases, suppressions)


def uplift_rows(
    settings: Settings, policy: Callable[[], Policy]
) -> Callable[[float | None, float | None], Awaitable[dict[str, Any]]]:
    """The dashboard's uplift table: ``actions report --json`` for a window of decision
    times ``[since, until)`` (epoch seconds, either None), read off the event loop."""
    from .security import redis_client

    client = redis_client(settings)

    def compute(since: float | None, until: float | None) -> dict[str, Any]:
        data = report_data(client, settings, policy())
        return data.to_json(settings, since=since, until=until)

    async def rows(since: float | None, until: float | None) -> dict[str, Any]:
        return await asyncio.to_thread(compute, since, until)

    return rows
