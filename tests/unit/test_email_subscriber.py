"""The example email subscriber's decisions: poison, anonymous, expired, stale, erased."""

from __future__ import annotations

import doctest
import importlib.util
import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from segmenters.actions import ActionMessage
from segmenters.changes import SegmentChange

PATH = Path(__file__).resolve().parents[2] / "scripts" / "email_subscriber.py"
spec = importlib.util.spec_from_file_location("email_subscriber", PATH)
assert spec is not None and spec.loader is not None
sub = importlib.util.module_from_spec(spec)
sys.modules["email_subscriber"] = sub
spec.loader.exec_module(sub)

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
DAY = 86400.0


def message(customer: str = "c-1", decided: datetime = NOW, **over: Any) -> bytes:
    """A real action message, as the engine's model writes it."""
    change = SegmentChange.make(
        customer_id=customer,
        dimension="journey",
        previous="active_cart",
        current="cart_abandoner",
        at=decided.timestamp(),
        reason="cart left",
        position=3,
    )
    fields: dict[str, Any] = {
        "idempotency_key": f"k-{customer}",
        "customer_id": customer,
        "channel": "email",
        "action": "abandoned_cart",
        "template": "cart-reminder",
        "decided_at": decided,
        "experiment": "default",
        "change": change,
        "features": {"cart_value": 25.0, "orders": 0},
        "expires_at": decided + timedelta(hours=6),
        "consent": True,
        **over,
    }
    return ActionMessage.model_validate(fields).to_json()


def verdict(raw: bytes, erased_at: datetime | None = None, now: datetime = NOW) -> str | None:
    return sub.skip_reason(sub.parse_action(raw), now=now, max_age_s=DAY, erased_at=erased_at)


def test_a_fresh_action_of_a_known_customer_is_sent():
    assert verdict(message()) is None


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[1, 2]", b'{"schema_version": 2}', b'{"schema_version": 1}', None],
)
def test_poison_records_are_named_not_raised_through(raw):
    with pytest.raises(sub.Poison):
        sub.parse_action(raw)
    bad_time = orjson.loads(message())
    bad_time["decided_at"] = "yesterday"
    with pytest.raises(sub.Poison, match="decided_at"):
        sub.parse_action(orjson.dumps(bad_time))


def test_anonymous_profiles_get_no_email():
    assert verdict(message("anon:a-1")) == "anonymous"


def test_expired_and_stale_actions_are_skipped():
    assert verdict(message(), now=NOW + timedelta(hours=7)) == "expired"  # past expires_at
    old = orjson.loads(message(decided=NOW - timedelta(days=2)))
    del old["expires_at"]  # a message from before expires_at existed
    assert verdict(orjson.dumps(old)) == "stale"
    assert verdict(message(decided=NOW - timedelta(hours=23)), now=NOW) == "expired"


def test_an_erase_blocks_what_was_decided_before_it_only():
    assert verdict(message(), erased_at=NOW + timedelta(seconds=1)) == "erased"
    assert verdict(message(), erased_at=NOW) == "erased"
    assert verdict(message(), erased_at=NOW - timedelta(minutes=5)) is None  # came back


def test_replayed_history_is_not_acted_on():
    raw = orjson.loads(message())
    raw["change"]["no_actions"] = True
    assert verdict(orjson.dumps(raw)) == "replayed"


def test_a_key_is_sent_once(capsys):
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE sent (idempotency_key TEXT PRIMARY KEY)")
    action = sub.parse_action(message())
    assert sub.handle(db, action) and not sub.handle(db, action)
    assert capsys.readouterr().out.count("email 'cart-reminder' to c-1") == 1


def test_docstring_examples():
    assert doctest.testmod(sub).failed == 0
