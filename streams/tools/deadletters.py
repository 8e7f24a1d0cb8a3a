"""``segstream deadletters``: read the dead-letter topic, rank its reasons, show records,
and send fixed records back to their input topic (redrive).

Reading (``streams.kafka.deadletters``) never joins a consumer group and commits nothing.
The pure parts (reason kinds, the ranking, ids, payloads, fixes files) are
``segmenters.deadletters``; the redrive ledger is ``streams.store.deadletters``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from segmenters.deadletters import (
    Fix,
    KindRow,
    Letter,
    iso,
    matches,
    message_digest,
    newest_first,
    payload_text,
)
from streams.kafka.clients import kafka_producer
from streams.kafka.deadletters import DeadLetterError as DeadLetterError
from streams.kafka.deadletters import close_quietly as _close
from streams.kafka.deadletters import consumer_for as _consumer
from streams.kafka.deadletters import deadletter_partitions as _partitions
from streams.kafka.deadletters import read_newest as read_newest
from streams.kafka.deadletters import read_window
from streams.kafka.deadletters import scan as _scan
from streams.kafka.topics import DEADLETTER, INPUTS
from streams.settings import Settings
from streams.store.clients import REDIS_FAILURES, redis_client
from streams.store.deadletters import already_redriven, claim, overwrite, release

#: Kafka header on a redriven message: the dead letter it came from (``<partition>:<offset>``).
REDRIVEN_HEADER = "segstream-redriven-from"


def read_ids(settings: Settings, ids: Iterable[tuple[int, int]]) -> dict[str, Letter]:
    """The dead letters at these ``(partition, offset)`` ids; an id that holds none (out
    of range, deleted by retention) is missing from the answer."""
    wanted: dict[int, set[int]] = {}
    for p, o in ids:
        wanted.setdefault(p, set()).add(o)
    consumer = _consumer(settings)
    found: dict[str, Letter] = {}
    try:
        parts = {tp.partition: tp for tp in _partitions(consumer, settings)}
        for p, offsets in sorted(wanted.items()):
            tp = parts.get(p)
            if tp is None:
                continue
            # one range read when the offsets are near each other, else one read each
            spans = [(min(offsets), max(offsets) + 1)]
            if spans[0][1] - spans[0][0] > 10 * len(offsets) + 1000:
                spans = [(o, o + 1) for o in sorted(offsets)]
            for start, end in spans:
                for x in _scan(consumer, {tp: start}, {tp: end}):
                    if x.offset in offsets:
                        found[x.id] = x
    finally:
        _close(consumer)
    return found


# --------------------------------------------------------------------------- top


def render_top(
    rows: list[KindRow], *, topic: str, since: float | None, limit: int, now: float
) -> str:
    """Reason kinds, most frequent first: count and share, an example (with its id for
    ``show``), the source topics and the first and last time seen."""
    total = sum(r.count for r in rows)
    window = "all retained" if since is None else f"since {iso(since)}"
    head = f"{topic}, {window} (now {iso(now)}): {total} dead letters, {len(rows)} reason kinds"
    if not rows:
        return head
    out = [head, f"{'#':>3} {'COUNT':>7} {'SHARE':>6}  KIND"]
    for i, r in enumerate(rows[:limit], 1):
        topics = ", ".join(f"{t} {n}" for t, n in sorted(r.topics.items(), key=lambda kv: -kv[1]))
        out += [
            f"{i:>3} {r.count:>7} {100 * r.count / total:>5.1f}%  {r.kind}",
            f"{'':>20}e.g.    {r.example}  [{r.example_id}]",
            f"{'':>20}topics  {topics}",
            f"{'':>20}seen    {iso(r.first)} .. {iso(r.last)}",
        ]
    if len(rows) > limit:
        rest = sum(r.count for r in rows[limit:])
        out.append(f"... {len(rows) - limit} more kinds ({rest} dead letters): raise --limit")
    return "\n".join(out)


# --------------------------------------------------------------------------- show


def redriven_ids(settings: Settings, letters: list[Letter]) -> set[str] | None:
    """Which of ``letters`` the ledger holds (None when Redis does not answer)."""
    topic = settings.topic(DEADLETTER)
    try:
        client = redis_client(settings)
        try:
            held = already_redriven(
                client, settings.key_prefix, [f"{topic}:{x.id}" for x in letters]
            )
        finally:
            client.close()
    except REDIS_FAILURES:
        return None
    return {f.removeprefix(f"{topic}:") for f in held}


def render_letter(letter: Letter, *, limit: int | None, redriven: bool | None) -> str:
    d = letter.letter
    key = letter.key
    shown_key = "(none)" if key is None else key.decode("utf-8", errors="backslashreplace")
    state = {None: "unknown (Redis did not answer)", True: "yes", False: "no"}[redriven]
    size = "no value" if letter.payload is None else f"{len(letter.payload)} bytes"
    return "\n".join(
        [
            f"dead letter {letter.id}",
            f"  reason      {d.reason}",
            f"  kind        {letter.kind}",
            f"  source      {d.topic} partition {d.partition} offset {d.offset}",
            f"  key         {shown_key}",
            f"  at          {iso(letter.at)}",
            f"  redriven    {state}",
            f"  payload     ({size})",
            *("    " + line for line in payload_text(letter.payload, limit=limit).splitlines()),
        ]
    )


# --------------------------------------------------------------------------- redrive


@dataclass
class TopicCounts:
    selected: int = 0
    sent: int = 0
    #: The dead letter was redriven before.
    already: int = 0
    #: Another dead letter with the same message (source topic, key, value) was redriven:
    #: the message came back still bad, or a redelivered batch dead-lettered it twice.
    repeated: int = 0
    refused: int = 0
    failed: int = 0


@dataclass
class RedriveReport:
    """What a redrive did (or, with ``dry_run``, would do), per source topic."""

    dry_run: bool
    topics: dict[str, TopicCounts] = field(default_factory=dict)
    #: Dead letter id -> why it was not sent (not an input topic, no payload, send failed).
    refusals: dict[str, str] = field(default_factory=dict)
    sent_ids: list[str] = field(default_factory=list)

    def of(self, topic: str) -> TopicCounts:
        return self.topics.setdefault(topic, TopicCounts())

    def total(self) -> TopicCounts:
        t = TopicCounts()
        for c in self.topics.values():
            for name, n in c.__dict__.items():
                setattr(t, name, getattr(t, name) + n)
        return t

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "total": self.total().__dict__,
            "topics": {t: c.__dict__ for t, c in sorted(self.topics.items())},
            "refused": self.refusals,
            "sent": self.sent_ids,
        }

    def render(self, deadletter_topic: str) -> str:
        t = self.total()
        verb = "would send" if self.dry_run else "sent"
        out = [
            f"redrive from {deadletter_topic}{' (dry run: nothing sent)' if self.dry_run else ''}:"
            f" selected {t.selected}, {verb} {t.sent}, already redriven {t.already}, "
            f"same message redriven {t.repeated}, refused {t.refused}"
            + (f", failed {t.failed}" if t.failed else ""),
        ]
        if self.topics:
            width = max(len(x) for x in [*self.topics, "SOURCE TOPIC"])
            out.append(
                f"{'SOURCE TOPIC':<{width}} {'SELECTED':>8} {verb.upper():>10} "
                f"{'ALREADY':>8} {'SAME MSG':>8} {'REFUSED':>8} {'FAILED':>7}"
            )
            for name, c in sorted(self.topics.items()):
                out.append(
                    f"{name:<{width}} {c.selected:>8} {c.sent:>10} {c.already:>8} "
                    f"{c.repeated:>8} {c.refused:>8} {c.failed:>7}"
                )
        for dl_id, why in sorted(self.refusals.items()):
            out.append(f"not sent {dl_id}: {why}")
        return "\n".join(out)


def redrive(
    settings: Settings,
    letters: list[Letter],
    *,
    fixes: dict[str, Fix] | None = None,
    dry_run: bool = False,
    force: bool = False,
    wall: float | None = None,
) -> RedriveReport:
    """Send each selected dead letter's payload (or its fix's) back to its source topic,
    once. The ledger holds each dead letter sent (claimed with ``HSETNX`` before the
    send, so two redrives at once never both send it) and the digest of each message
    sent: a dead letter whose message was sent before (it came back still bad) is
    skipped too, until its payload is fixed. ``force`` sends regardless. A topic that is
    not one of the deployment's input topics, and a message with no value, are refused.
    A claim whose send Kafka did not acknowledge is released for the next redrive."""
    fixes = fixes or {}
    now = time.time() if wall is None else wall
    report = RedriveReport(dry_run=dry_run)
    inputs = {settings.topic(t) for t in INPUTS}
    dl_topic = settings.topic(DEADLETTER)
    #: ledger field of the dead letter -> (letter, key, value, ledger field of the message)
    todo: dict[str, tuple[Letter, bytes | None, bytes, str]] = {}
    for x in letters:
        source = x.letter.topic
        counts = report.of(source)
        counts.selected += 1
        fix = fixes.get(x.id)
        value = fix.value if fix is not None else x.payload
        key = fix.key if fix is not None and fix.new_key else x.key
        if source not in inputs:
            counts.refused += 1
            report.refusals[x.id] = f"{source} is not an input topic of this deployment"
            continue
        if value is None:
            counts.refused += 1
            report.refusals[x.id] = "the message had no value (fix it with --from-file)"
            continue
        todo[f"{dl_topic}:{x.id}"] = (x, key, value, message_digest(source, key, value))
    client = redis_client(settings)
    try:
        held = set()
        if not force:
            fields = [*todo, *(t[3] for t in todo.values())]
            held = already_redriven(client, settings.key_prefix, fields)
        go: list[str] = []
        seen: set[str] = set()
        for name, (x, _key, _value, digest) in todo.items():
            if name in held:
                report.of(x.letter.topic).already += 1
            elif digest in held or digest in seen:
                report.of(x.letter.topic).repeated += 1
            else:
                seen.add(digest)
                go.append(name)
        entries = {
            name: orjson.dumps(
                {
                    "at": iso(now),
                    "topic": todo[name][0].letter.topic,
                    "partition": todo[name][0].letter.partition,
                    "offset": todo[name][0].letter.offset,
                    "fixed": todo[name][0].id in fixes,
                }
            )
            for name in go
        }
        if dry_run:
            pass
        elif force:
            overwrite(client, settings.key_prefix, entries)
        else:
            won = claim(client, settings.key_prefix, entries)
            for name in [n for n in go if n not in won]:  # another redrive took it meanwhile
                report.of(todo[name][0].letter.topic).already += 1
            go = [n for n in go if n in won]
        if dry_run:
            for name in go:
                x = todo[name][0]
                report.of(x.letter.topic).sent += 1
                report.sent_ids.append(x.id)
            return report
        failed = set(_send(settings, [todo[n][:3] for n in go], report))
        sent = [n for n in go if todo[n][0].id not in failed]
        overwrite(client, settings.key_prefix, {todo[n][3]: todo[n][0].id.encode() for n in sent})
        if failed:
            release(client, settings.key_prefix, [f"{dl_topic}:{i}" for i in sorted(failed)])
    finally:
        client.close()
    return report


def _send(
    settings: Settings, items: list[tuple[Letter, bytes | None, bytes]], report: RedriveReport
) -> list[str]:
    """Produce, wait for every acknowledgement; return the ids Kafka did not take."""
    if not items:
        return []
    producer = kafka_producer(
        settings,
        client_id=f"{settings.app_id}-redrive",
        acks="all",
        retries=5,
        linger_ms=5,
    )
    failed: list[str] = []
    try:
        futures = [
            (
                x,
                producer.send(
                    x.letter.topic,
                    key=key,
                    value=value,
                    headers=[(REDRIVEN_HEADER, x.id.encode())],
                ),
            )
            for x, key, value in items
        ]
        producer.flush()
        for x, fut in futures:
            counts = report.of(x.letter.topic)
            try:
                fut.get(timeout=30)
            except Exception as exc:  # any send failure: released for the next redrive
                counts.failed += 1
                failed.append(x.id)
                report.refusals[x.id] = f"send failed: {type(exc).__name__}: {exc}"
            else:
                counts.sent += 1
                report.sent_ids.append(x.id)
    finally:
        _close(producer)
    return failed


def select_window(settings: Settings, *, since: float | None, reason: str | None) -> list[Letter]:
    """The dead letters of a window, those matching ``reason`` if given, oldest first."""
    letters = read_window(settings, since)
    if reason is not None:
        letters = [x for x in letters if matches(x, reason)]
    return list(reversed(newest_first(letters)))


def select_ids(settings: Settings, ids: list[tuple[int, int]]) -> list[Letter]:
    """The dead letters of these ids, in the order given; DeadLetterError names any
    missing."""
    found = read_ids(settings, ids)
    missing = [f"{p}:{o}" for p, o in ids if f"{p}:{o}" not in found]
    if missing:
        raise DeadLetterError(
            f"no dead letter at {', '.join(missing)} in {settings.topic(DEADLETTER)} "
            "(ids are <partition>:<offset> of the dead-letter topic)"
        )
    return list({f"{p}:{o}": found[f"{p}:{o}"] for p, o in ids}.values())
