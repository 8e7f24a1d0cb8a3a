"""Example subscriber: an email service consuming ``actions.email`` with kafka-python.

Actions are delivered at least once: after a worker crash a message can arrive again,
always with the same ``idempotency_key``. A subscriber de-duplicates on that key, and
commits its offsets only after the send, so a crash of the subscriber loses no email and
a redelivered action sends none twice. Here the "send" is a print and the keys are kept in
a local SQLite file; a real service would use its own database (a unique constraint on
the key, inserted in the same transaction as the send record).

What it never sends (each skip is printed with its reason):

- a record that is not a valid action (not JSON, another ``schema_version``, missing
  fields): a poison record goes to the dead-letter file (``--deadletter``, JSON lines
  with the original bytes) and the subscriber goes on;
- an action for an anonymous profile (``anon:...``): there is no address to write to;
- an action past its ``expires_at``, or decided more than ``--max-age-s`` ago (24 h by
  default; it also covers messages without ``expires_at``): a stale reminder is worse
  than none;
- an action whose change comes from replayed history (``change.no_actions``);
- an action for a customer erased after it was decided: the tombstones of
  ``customers.erased`` are read up to their end before each batch of actions, and kept
  in the SQLite file, so an erase is honoured even after the topic dropped its tombstone.

    python scripts/email_subscriber.py --bootstrap 127.0.0.1:9092 [--topic-prefix P]
"""

from __future__ import annotations

import argparse
import base64
import json
import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from kafka import KafkaConsumer, TopicPartition

#: Fields every action message has (docs/actions.md; ``segstream schema --topic actions.email``).
REQUIRED = ("idempotency_key", "customer_id", "decided_at", "change", "features")


class Poison(ValueError):
    """The record is not an action this subscriber understands; the message says why."""


def parse_action(raw: bytes | None) -> dict[str, Any]:
    """The action in a record's value, or :class:`Poison` saying why it is not one."""
    if raw is None:
        raise Poison("no value")
    try:
        action = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Poison(f"not JSON: {exc}") from None
    if not isinstance(action, dict):
        raise Poison("not a JSON object")
    if action.get("schema_version") != 1:
        raise Poison(f"unknown schema_version {action.get('schema_version')!r}")
    missing = [f for f in REQUIRED if f not in action]
    if missing:
        raise Poison(f"missing {', '.join(missing)}")
    if not isinstance(action["change"], dict) or not isinstance(action["customer_id"], str):
        raise Poison("change must be an object and customer_id a string")
    for name in ("decided_at", "expires_at"):
        if action.get(name) is not None:
            try:
                when(action[name])
            except (TypeError, ValueError):
                raise Poison(f"{name} is not an ISO-8601 time: {action[name]!r}") from None
    return action


def when(text: str) -> datetime:
    """An ISO-8601 time; one without a zone counts as UTC."""
    at = datetime.fromisoformat(text)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def skip_reason(
    action: dict[str, Any],
    *,
    now: datetime,
    max_age_s: float,
    erased_at: datetime | None = None,
) -> str | None:
    """Why not to send ``action`` now (None: send it). ``erased_at``: when the customer
    was erased, if it was.

    >>> a = {"customer_id": "c-1", "decided_at": "2026-11-29T10:00:00Z", "change": {}}
    >>> now = when("2026-11-29T12:00:00Z")
    >>> skip_reason(a, now=now, max_age_s=86400) is None
    True
    >>> skip_reason({**a, "expires_at": "2026-11-29T11:00:00Z"}, now=now, max_age_s=86400)
    'expired'
    >>> skip_reason(a, now=now, max_age_s=3600)
    'stale'
    """
    if action["customer_id"].startswith("anon:"):
        return "anonymous"
    decided = when(action["decided_at"])
    if erased_at is not None and decided <= erased_at:
        return "erased"
    if action["change"].get("no_actions"):
        return "replayed"
    expires = action.get("expires_at")
    if expires is not None and when(expires) <= now:
        return "expired"
    if now - decided > timedelta(seconds=max_age_s):
        return "stale"
    return None


def handle(db: sqlite3.Connection, action: dict[str, Any]) -> bool:
    """Send ``action`` unless its key was sent before; False for a duplicate.

    The key is inserted and the email sent in one transaction: if the send raises, the
    key is not recorded and the redelivered action is tried again.
    """
    try:
        with db:
            db.execute(
                "INSERT INTO sent (idempotency_key) VALUES (?)", (action["idempotency_key"],)
            )
            send_email(action)
    except sqlite3.IntegrityError:
        return False
    return True


def send_email(action: dict[str, Any]) -> None:
    f = action["features"]
    print(
        f"email {action.get('template')!r} to {action['customer_id']} "
        f"(because {action['change'].get('dimension')}: {action['change'].get('previous')} -> "
        f"{action['change'].get('current')}; cart {f.get('cart_value')}, "
        f"orders {f.get('orders')})",
        flush=True,
    )


def dead_letter(path: str, record: Any, reason: str) -> None:
    """Append the poison record, with why and where from, to the dead-letter file."""
    value = record.value
    line = {
        "reason": reason,
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "value_b64": None if value is None else base64.b64encode(value).decode(),
        "dead_lettered_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")


class Erasures:
    """The erased customers: ``customers.erased`` read to its end, kept in SQLite."""

    def __init__(self, db: sqlite3.Connection, bootstrap: str, topic: str) -> None:
        self.db = db
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        parts = self.consumer.partitions_for_topic(topic) or set()
        self.parts = [TopicPartition(topic, p) for p in sorted(parts)]
        self.consumer.assign(self.parts)
        self.consumer.seek_to_beginning(*self.parts)

    def catch_up(self) -> None:
        """Read every tombstone published so far."""
        if not self.parts:
            return
        ends = self.consumer.end_offsets(self.parts)
        while any(self.consumer.position(tp) < end for tp, end in ends.items()):
            for records in self.consumer.poll(timeout_ms=500).values():
                for r in records:
                    if r.key is None or r.value is not None:
                        continue
                    at = datetime.fromtimestamp(r.timestamp / 1000, UTC).isoformat()
                    with self.db:
                        self.db.execute(
                            "INSERT INTO erased (customer_id, erased_at) VALUES (?, ?) "
                            "ON CONFLICT (customer_id) DO UPDATE SET erased_at = "
                            "max(erased_at, excluded.erased_at)",
                            (r.key.decode(errors="replace"), at),
                        )

    def erased_at(self, customer_id: str) -> datetime | None:
        row = self.db.execute(
            "SELECT erased_at FROM erased WHERE customer_id = ?", (customer_id,)
        ).fetchone()
        return None if row is None else when(row[0])

    def close(self) -> None:
        self.consumer.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--topic-prefix", default="", help="SEGSTREAM_TOPIC_PREFIX of the engine")
    ap.add_argument("--group", default="email-service")
    ap.add_argument("--db", default="email-sent.sqlite3")
    ap.add_argument("--deadletter", default="email-deadletter.jsonl")
    ap.add_argument("--max-age-s", type=float, default=86400.0)
    ap.add_argument(
        "--stop-at-end", action="store_true", help="exit once every action so far is handled"
    )
    args = ap.parse_args(argv)

    db = sqlite3.connect(args.db)
    db.execute("CREATE TABLE IF NOT EXISTS sent (idempotency_key TEXT PRIMARY KEY)")
    db.execute("CREATE TABLE IF NOT EXISTS erased (customer_id TEXT PRIMARY KEY, erased_at TEXT)")
    topic = f"{args.topic_prefix}actions.email"
    erasures = Erasures(db, args.bootstrap, f"{args.topic_prefix}customers.erased")
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        enable_auto_commit=False,  # commit after sending, never before
        auto_offset_reset="earliest",
    )
    ends: dict[TopicPartition, int] | None = None
    try:
        while True:
            batch = consumer.poll(timeout_ms=1000)
            erasures.catch_up()  # every erase published before this batch was read
            for records in batch.values():
                for record in records:
                    try:
                        action = parse_action(record.value)
                    except Poison as exc:
                        dead_letter(args.deadletter, record, str(exc))
                        print(
                            f"dead-lettered {record.topic}:{record.partition}:"
                            f"{record.offset}: {exc}",
                            flush=True,
                        )
                        continue
                    cid = action["customer_id"]
                    reason = skip_reason(
                        action,
                        now=datetime.now(UTC),
                        max_age_s=args.max_age_s,
                        erased_at=erasures.erased_at(cid),
                    )
                    if reason is not None:
                        print(f"skipped {action['idempotency_key']}: {reason}", flush=True)
                    elif not handle(db, action):
                        print(f"duplicate {action['idempotency_key']}: already sent", flush=True)
            if batch:
                consumer.commit()
            if args.stop_at_end:
                assigned = consumer.assignment()
                if ends is None and assigned:
                    ends = consumer.end_offsets(list(assigned))
                if ends is not None and all(consumer.position(tp) >= e for tp, e in ends.items()):
                    break
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
        erasures.close()
        db.close()


if __name__ == "__main__":
    sys.exit(main())
