"""Example subscriber: an email service consuming ``actions.email`` with kafka-python.

Actions are delivered at least once: after a worker crash a message can arrive again,
always with the same ``idempotency_key``. A subscriber de-duplicates on that key, and
commits its offsets only after the send, so a crash of the subscriber loses no email and
a redelivered action sends none twice. Here the "send" is a print and the keys are kept in
a local SQLite file; a real service would use its own database (a unique constraint on
the key, inserted in the same transaction as the send record).

    python scripts/email_subscriber.py --bootstrap 127.0.0.1:9092 [--topic-prefix P]
"""

from __future__ import annotations

import argparse
import json
import sqlite3

from kafka import KafkaConsumer


def handle(db: sqlite3.Connection, action: dict) -> bool:
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


def send_email(action: dict) -> None:
    f = action["features"]
    print(
        f"email {action['template']!r} to {action['customer_id']} "
        f"(because {action['change']['dimension']}: {action['change']['previous']} -> "
        f"{action['change']['current']}; cart {f.get('cart_value')}, orders {f.get('orders')})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--topic-prefix", default="", help="SEGSTREAM_TOPIC_PREFIX of the engine")
    ap.add_argument("--group", default="email-service")
    ap.add_argument("--db", default="email-sent.sqlite3")
    args = ap.parse_args()

    db = sqlite3.connect(args.db)
    db.execute("CREATE TABLE IF NOT EXISTS sent (idempotency_key TEXT PRIMARY KEY)")
    consumer = KafkaConsumer(
        f"{args.topic_prefix}actions.email",
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        enable_auto_commit=False,  # commit after sending, never before
        auto_offset_reset="earliest",
    )
    try:
        for record in consumer:
            action = json.loads(record.value)
            if action.get("schema_version") != 1:
                print(f"skipping unknown schema_version {action.get('schema_version')}")
            elif not handle(db, action):
                print(f"duplicate {action['idempotency_key']}: already sent")
            consumer.commit()
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
        db.close()


if __name__ == "__main__":
    main()
