"""``segstream actions send``: one action to every current member of a segment.

The members are read from the segment index of every partition (``SSCAN``, in pages)
and decided in batches by the worker's own pipeline
(``BatchProcessor.campaign``): the same guards, the same compare-and-set write of the
action doc with its outbox and uplift records, the same sends with the broker's
acknowledgement awaited. A crash mid-campaign and a re-run neither lose nor duplicate:
what a written customer's outbox still holds is sent first, and a member the campaign
reached already is a ``duplicate`` (its idempotency key is fixed by the campaign id,
the customer and the action; docs/actions.md, "Campaigns to current members").
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer

from segmenters.actions.campaign import Campaign
from segmenters.actions.policy import Policy
from streams.kafka.clients import aiokafka_kwargs
from streams.kafka.topics import CHANGES, DEADLETTER
from streams.settings import Settings
from streams.store import StateStore
from streams.store.clients import async_redis_client
from streams.store.clocks import load_watermarks
from streams.store.queries import segment_members, segment_sizes
from streams.worker.context import ContextRefresher
from streams.worker.pipeline import BatchProcessor

#: Members decided per write round trip.
BATCH = 500
#: Guards in the order they run, as the report lists them (``Decision.reason``).
SUPPRESSIONS = ("no_consent", "consent_missing", "cooldown", "frequency_cap")


@dataclass(slots=True)
class CampaignReport:
    """What a campaign did (or, dry, would do), by outcome and guard."""

    campaign: Campaign
    experiment: str
    dry_run: bool
    #: Customers listed in the segment index.
    members: int = 0
    #: Members a decision was made for (the others left the segment, or were erased,
    #: between the listing and the decision).
    decided: int = 0
    #: (outcome, reason) -> decisions.
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    seconds: float = 0.0

    def count(self, outcome: str, reason: str | None = None) -> int:
        return sum(n for (o, r), n in self.outcomes.items() if o == outcome and reason in (None, r))

    def to_json(self) -> dict[str, Any]:
        c = self.campaign
        suppressed = Counter(
            {r: n for (o, r), n in self.outcomes.items() if o == "suppressed" and r != "duplicate"}
        )
        return {
            "campaign_id": c.id,
            "action": c.action,
            "segment": f"{c.dimension}:{c.segment}",
            "experiment": self.experiment,
            "dry_run": self.dry_run,
            "members": self.members,
            "decided": self.decided,
            "left_segment": self.members - self.decided,
            "duplicate": self.count("suppressed", "duplicate"),
            "sent": self.count("send"),
            "control": self.count("control"),
            "scheduled": self.count("scheduled"),
            "suppressed": dict(sorted(suppressed.items())),
            "seconds": round(self.seconds, 3),
        }

    def render(self) -> str:
        c = self.campaign
        data = self.to_json()
        head = (
            f"campaign {c.id}: {c.action} to {c.dimension}:{c.segment}, "
            f"experiment {self.experiment}"
        )
        head += " (dry run: nothing written or sent)" if self.dry_run else ""
        verb = "would be " if self.dry_run else ""
        rows: list[tuple[str, int, str]] = [
            ("members", self.members, "in the segment index"),
            ("left", data["left_segment"], "no longer in the segment: not decided"),
            ("duplicate", data["duplicate"], "reached by this campaign already"),
        ]
        rows += [
            (reason, self.count("suppressed", reason), "suppressed") for reason in SUPPRESSIONS
        ]
        others = sorted(set(data["suppressed"]) - set(SUPPRESSIONS))
        rows += [(reason, data["suppressed"][reason], "suppressed") for reason in others]
        rows += [
            ("holdout", data["control"], "control group: recorded, not sent"),
            ("quiet_hours", data["scheduled"], f"{verb}scheduled for the end of quiet hours"),
            ("sent", data["sent"], f"{verb}sent" if self.dry_run else "sent, acknowledged"),
        ]
        width = max(len(r[0]) for r in rows)
        lines = [head] + [f"  {name:<{width}}  {n:>7}  {note}" for name, n, note in rows]
        return "\n".join(lines)


async def _members(
    client: Any, settings: Settings, campaign: Campaign, page: int
) -> tuple[int, Callable[[], Awaitable[list[str] | None]]]:
    """The segment's size and a reader of its members, a page a call (None: done);
    a member ``SSCAN`` gives twice is given once."""
    sizes = await segment_sizes(client, settings.key_prefix, settings.topic_partitions)
    total = sizes.get((campaign.dimension, campaign.segment), 0)
    cursor: int | None = 0
    seen: set[str] = set()

    async def next_page() -> list[str] | None:
        nonlocal cursor
        if cursor is None:
            return None
        got = await segment_members(
            client,
            settings.key_prefix,
            settings.topic_partitions,
            campaign.dimension,
            campaign.segment,
            cursor,
            page,
        )
        if got is None:
            cursor = None
            return None
        cursor = None if got["next_cursor"] is None else int(got["next_cursor"])
        fresh = [m for m in got["members"] if m not in seen]
        seen.update(fresh)
        return fresh

    return total, next_page


async def run_campaign(
    settings: Settings,
    policy: Policy,
    campaign: Campaign,
    *,
    dry_run: bool = False,
    batch: int = BATCH,
    progress: Callable[[int, int], None] | None = None,
) -> CampaignReport:
    """Decide ``campaign`` for every current member, ``batch`` at a time, and (unless
    ``dry_run``) write and send; ``progress(done, total)`` after each batch."""
    started = time.perf_counter()
    report = CampaignReport(campaign, policy.experiment, dry_run)
    client = async_redis_client(settings)
    producer: AIOKafkaProducer | None = None
    try:
        store = StateStore(
            client,
            prefix=settings.key_prefix,
            partitions=settings.topic_partitions,
            cache_size=0,  # every batch reads what Redis has now
            dedupe_retention_s=settings.dedupe_retention_s,
        )
        context = ContextRefresher(settings, store)
        marks = await load_watermarks(client, settings.key_prefix)
        await context.refresh(max(marks.values(), default=None))  # for the timer entries
        if not dry_run:
            producer = AIOKafkaProducer(
                **aiokafka_kwargs(settings),
                client_id=f"{settings.app_id}-campaign",
                acks="all",
                enable_idempotence=True,
            )
            await producer.start()
        processor = _processor(settings, store, policy, context, producer)
        total, next_page = await _members(client, settings, campaign, batch)
        while (members := await next_page()) is not None:
            for first in range(0, len(members), batch):
                part = members[first : first + batch]
                stats = await processor.campaign(part, campaign, dry_run=dry_run)
                report.members += len(part)
                decided = Counter({(o, r): n for (_a, o, r), n in stats.decided.items()})
                report.outcomes.update(decided)
                report.decided += sum(decided.values())
                if progress is not None:
                    progress(report.members, max(total, report.members))
    finally:
        if producer is not None:
            await producer.stop()
        await client.aclose()
    report.seconds = time.perf_counter() - started
    return report


def _processor(
    settings: Settings,
    store: StateStore,
    policy: Policy,
    context: ContextRefresher,
    producer: AIOKafkaProducer | None,
) -> BatchProcessor:
    """The worker's pipeline, sending through ``producer`` (None: a dry run, which sends
    nothing)."""

    def to(topic: str) -> Callable[[bytes, bytes], Awaitable[Any]]:
        async def send(key: bytes, value: bytes) -> Awaitable[Any]:
            return await send_to(topic, key, value)

        return send

    async def send_to(topic: str, key: bytes, value: bytes) -> Awaitable[Any]:
        if producer is None:
            raise RuntimeError("a dry run sends nothing")
        acked: Awaitable[Any] = await producer.send(topic, value=value, key=key)
        return acked

    return BatchProcessor(
        store=store,
        config=settings.engine,
        topic_prefix=settings.topic_prefix,
        max_event_bytes=settings.max_event_bytes,
        send_change=to(settings.topic(CHANGES)),  # what a crash left in an outbox
        send_deadletter=to(settings.topic(DEADLETTER)),
        send_action=send_to,
        policy=lambda: policy,
        currency=settings.currency,
        keep_purchases_s=settings.actions_keep_purchases_s,
        context=context.current,
    )
