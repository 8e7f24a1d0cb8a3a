"""Redrive's selection and ledger, with an in-memory ledger and a recording sender."""

from __future__ import annotations

from typing import Any

import pytest

from segmenters.contract import DeadLetter
from segmenters.deadletters import Fix, Letter, rank
from streams.settings import Settings
from streams.tools import deadletters as tool


class Ledger:
    """The few hash commands the ledger uses."""

    def __init__(self) -> None:
        self.h: dict[str, dict[str, bytes]] = {}

    def hmget(self, key: str, fields: list[str]) -> list[bytes | None]:
        return [self.h.get(key, {}).get(f) for f in fields]

    def hset(self, key: str, mapping: dict[str, bytes]) -> None:
        self.h.setdefault(key, {}).update(mapping)

    def hsetnx(self, key: str, name: str, value: bytes) -> int:
        held = self.h.setdefault(key, {})
        if name in held:
            return 0
        held[name] = value
        return 1

    def hdel(self, key: str, *fields: str) -> None:
        for f in fields:
            self.h.get(key, {}).pop(f, None)

    def pipeline(self, transaction: bool = False) -> Any:
        ledger, calls = self, []

        class Pipe:
            def hsetnx(self, *a: Any) -> None:
                calls.append(a)

            def execute(self) -> list[int]:
                return [ledger.hsetnx(*a) for a in calls]

        return Pipe()

    def close(self) -> None:
        pass


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    ledger = Ledger()
    sent: list[tuple[str, bytes | None, bytes]] = []
    failing: set[str] = set()

    def send(settings: Settings, items: list, report: tool.RedriveReport) -> list[str]:
        failed = []
        for x, key, value in items:
            if x.id in failing:
                report.of(x.letter.topic).failed += 1
                failed.append(x.id)
            else:
                report.of(x.letter.topic).sent += 1
                report.sent_ids.append(x.id)
                sent.append((x.letter.topic, key, value))
        return failed

    monkeypatch.setattr(tool, "redis_client", lambda settings: ledger)
    monkeypatch.setattr(tool, "_send", send)
    return {"ledger": ledger, "sent": sent, "failing": failing}


SETTINGS = Settings(topic_prefix="p.", key_prefix="k")


def dl(offset: int, *, topic: str = "p.events.cart", value: bytes | None = b"{}") -> Letter:
    return Letter(
        0,
        offset,
        DeadLetter.of(
            reason="missing field sku",
            topic=topic,
            partition=2,
            offset=offset + 100,
            key=b"c-1",
            value=value,
            at=1000.0 + offset,
        ),
    )


def test_each_dead_letter_is_sent_once(world: dict[str, Any]) -> None:
    letters = [dl(0, value=b"a"), dl(1, value=b"b")]
    first = tool.redrive(SETTINGS, letters)
    assert first.total().__dict__ == {
        "selected": 2, "sent": 2, "already": 0, "repeated": 0, "refused": 0, "failed": 0
    }  # fmt: skip
    again = tool.redrive(SETTINGS, letters)
    assert (again.total().sent, again.total().already) == (0, 2)
    assert world["sent"] == [("p.events.cart", b"c-1", b"a"), ("p.events.cart", b"c-1", b"b")]


def test_the_same_message_dead_lettered_again_is_not_sent_again(world: dict[str, Any]) -> None:
    tool.redrive(SETTINGS, [dl(0, value=b"bad")])
    back = tool.redrive(SETTINGS, [dl(5, value=b"bad"), dl(6, value=b"bad")])
    assert (back.total().sent, back.total().repeated) == (0, 2)
    fixed = tool.redrive(SETTINGS, [dl(5, value=b"bad")], fixes={"0:5": Fix(0, 5, b"good")})
    assert fixed.total().sent == 1
    assert world["sent"][-1] == ("p.events.cart", b"c-1", b"good")


def test_twins_in_one_run_send_once(world: dict[str, Any]) -> None:
    report = tool.redrive(SETTINGS, [dl(0, value=b"x"), dl(1, value=b"x")])
    assert (report.total().sent, report.total().repeated) == (1, 1)


def test_refuses_topics_that_are_not_inputs_and_messages_without_value(
    world: dict[str, Any],
) -> None:
    report = tool.redrive(
        SETTINGS,
        [dl(0, topic="p.segments.changes"), dl(1, topic="events.cart"), dl(2, value=None)],
    )
    assert report.total().refused == 3 and not world["sent"]
    assert "not an input topic" in report.refusals["0:0"]
    assert "no value" in report.refusals["0:2"]
    text = report.render("p.events.deadletter")
    assert "refused 3" in text and "not sent 0:1: events.cart is not an input topic" in text


def test_a_fix_may_give_a_key(world: dict[str, Any]) -> None:
    tool.redrive(SETTINGS, [dl(0)], fixes={"0:0": Fix(0, 0, b"{}", b"c-9", new_key=True)})
    assert world["sent"] == [("p.events.cart", b"c-9", b"{}")]


def test_dry_run_sends_and_claims_nothing(world: dict[str, Any]) -> None:
    report = tool.redrive(SETTINGS, [dl(0)], dry_run=True)
    assert report.total().sent == 1 and not world["sent"] and not world["ledger"].h
    assert "would send 1" in report.render("p.events.deadletter")


def test_a_failed_send_is_released_for_the_next_redrive(world: dict[str, Any]) -> None:
    world["failing"].add("0:0")
    first = tool.redrive(SETTINGS, [dl(0), dl(1, value=b"y")])
    assert (first.total().sent, first.total().failed) == (1, 1)
    world["failing"].clear()
    second = tool.redrive(SETTINGS, [dl(0), dl(1, value=b"y")])
    assert (second.total().sent, second.total().already) == (1, 1)


def test_force_sends_again(world: dict[str, Any]) -> None:
    tool.redrive(SETTINGS, [dl(0)])
    assert tool.redrive(SETTINGS, [dl(0)], force=True).total().sent == 1
    assert len(world["sent"]) == 2


def test_render_top() -> None:
    rows = rank([dl(0), dl(1), dl(2, value=None)])
    text = tool.render_top(rows, topic="p.events.deadletter", since=None, limit=5, now=2000.0)
    assert "3 dead letters, 1 reason kinds" in text
    assert "e.g.    missing field sku  [0:2]" in text and "topics  p.events.cart 3" in text
    assert "no value" in tool.render_letter(dl(2, value=None), limit=None, redriven=False)
