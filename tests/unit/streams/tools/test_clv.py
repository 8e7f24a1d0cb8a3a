"""``segstream clv``: showing and fitting the value models (Redis replaced by recorders)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from click.testing import CliRunner

from segmenters.clv import Summary
from segmenters.clv.model import ClvModel
from streams.cli import main
from streams.settings import Settings
from streams.tools import clv as tool

KEYS = [
    "r",
    "alpha_days",
    "a",
    "b",
    "p",
    "q",
    "v",
    "customers",
    "repeat_customers",
    "log_likelihood",
    "fitted_at",
    "version",
]

#: Buyers of every kind: one-time, regular, lapsed (T = 300 for all).
BUYERS = [
    Summary(x=x, t_x=t_x, T=300, monetary=m)
    for x, t_x, m in [(0, 0, 0.0), (1, 40, 20.0), (3, 280, 35.0), (2, 60, 15.0), (5, 290, 50.0)]
] * 30


class Store:
    """What the tool reads and writes in Redis, kept in memory."""

    def __init__(self, model: ClvModel | None = None, buyers: list[Summary] | None = None) -> None:
        self.model = model
        self.buyers = BUYERS if buyers is None else buyers
        self.today_of: Callable[[int], int] | None = None
        self.sample: int | None = None

    def scan(
        self, settings: Settings, today_of: Callable[[int], int], *, sample: int
    ) -> list[Summary]:
        self.today_of, self.sample = today_of, sample
        return self.buyers

    def save(self, settings: Settings, model: ClvModel) -> ClvModel:
        self.model = model
        return model


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Store:
    s = Store()
    monkeypatch.setattr(tool, "buyer_summaries", s.scan)
    monkeypatch.setattr(tool, "read_clv_model", lambda settings: s.model)
    monkeypatch.setattr(tool, "save_clv_model", s.save)
    monkeypatch.setattr(tool, "clock_days", lambda settings, wall: {0: 10_000, 2: 10_003})
    return s


def test_fit_as_of_counts_every_partition_to_that_day_and_versions_up(store: Store) -> None:
    first = tool.fit_now(Settings(clv_sample=500), as_of=date(1997, 9, 30), wall=123.0)
    assert store.model == first and first.version == 1 and first.fitted_at == 123.0
    assert store.sample == 500
    assert store.today_of is not None
    assert {store.today_of(p) for p in range(4)} == {date(1997, 9, 30).toordinal() - 719_163}
    assert (first.customers, first.repeat_customers) == (150, 120)
    assert first.p is not None and first.r > 0
    second = tool.fit_now(Settings(), as_of=date(1997, 9, 30), wall=124.0)
    assert second.version == 2
    assert round(second.r, 3) == round(first.r, 3)  # started from the first: the same fit


def test_fit_by_default_counts_to_each_partitions_clock_day(store: Store) -> None:
    tool.fit_now(Settings(), wall=0.0)
    assert store.today_of is not None
    # partitions 0 and 2 have clocks; the others count to the latest of those
    assert [store.today_of(p) for p in range(4)] == [10_000, 10_003, 10_003, 10_003]


def test_fit_without_buyers_or_clocks_says_why(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.buyers = []
    with pytest.raises(tool.ClvError, match="no stored customer has a purchase on or before"):
        tool.fit_now(Settings(), as_of=date(1997, 9, 30))
    monkeypatch.setattr(tool, "clock_days", lambda settings, wall: {})
    with pytest.raises(tool.ClvError, match="no partition has a clock yet"):
        tool.fit_now(Settings())
    assert store.model is None


def test_latest_model_without_a_snapshot_says_what_to_do(store: Store) -> None:
    with pytest.raises(tool.ClvError, match="run `segstream clv --fit`, or wait for the worker"):
        tool.latest_model(Settings())


def test_render_names_every_parameter() -> None:
    model = ClvModel(r=0.243, alpha_days=30.895, a=0.793, b=2.426, p=6.25, q=3.74, v=15.44)
    text = tool.render_model(model.model_copy(update={"customers": 2357, "version": 3}))
    assert text.startswith("value model version 3, fitted 1970-01-01T00:00:00Z")
    assert "alpha      30.8950 days (4.4136 weeks)" in text
    assert "mean       35.22" in text
    bare = tool.render_model(ClvModel(r=1.0, alpha_days=2.0, a=3.0, b=4.0))
    assert "Gamma-Gamma  not fitted" in bare


# --- command line ------------------------------------------------------------------------


def test_cli_json_prints_exactly_the_snapshot(store: Store) -> None:
    result = CliRunner().invoke(main, ["clv", "--fit", "--as-of", "1997-09-30", "--json"])
    assert result.exit_code == 0, result.output
    printed: dict[str, Any] = json.loads(result.stdout)
    assert list(printed) == KEYS and printed["version"] == 1
    shown = CliRunner().invoke(main, ["clv", "--json"])
    assert json.loads(shown.stdout) == printed
    table = CliRunner().invoke(main, ["clv"])
    assert table.exit_code == 0 and "value model version 1" in table.stdout


def test_cli_errors_are_one_line_and_exit_1(store: Store) -> None:
    missing = CliRunner().invoke(main, ["clv"])
    assert missing.exit_code == 1
    assert missing.output.strip().splitlines() == [f"Error: {tool.NO_MODEL}"]
    store.buyers = []
    empty = CliRunner().invoke(main, ["clv", "--fit"])
    assert empty.exit_code == 1 and "no buyers to fit" in empty.output
    alone = CliRunner().invoke(main, ["clv", "--as-of", "1997-09-30"])
    assert alone.exit_code == 2 and "--as-of goes with --fit" in alone.output


def _days(day0: int, gaps: list[int]) -> dict[int, float]:
    days, d = {day0: 20.0}, day0
    for g in gaps:
        d += g
        days[d] = 20.0
    return days


def test_holdout_fits_before_the_split_publishes_nothing_and_counts_after_it(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    buyers = [_days(100, [30, 40, 200]), _days(120, []), _days(110, [50, 150])] * 20
    monkeypatch.setattr(tool, "buyer_days", lambda settings, sample: buyers)
    split = date.fromordinal(719_163 + 300)
    model, rows, first, last = tool.holdout(Settings(), split)
    assert store.model is None  # nothing published
    assert (first, last) == (300, 10_003)  # to the latest clock day
    assert model.customers == 60 and model.version == 0
    assert sum(r.customers for r in rows) == 60
    actual = sum(r.actual * r.customers for r in rows)
    assert actual == 40  # day 370 and day 310 of twenty buyers each
    text = tool.render_holdout(model, rows, first, last)
    assert "not published" in text and "actual 40" in text


def test_clv_holdout_json_has_the_deciles(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    buyers = [_days(100, [30, 40, 200]), _days(120, []), _days(110, [50, 150])] * 20
    monkeypatch.setattr(tool, "buyer_days", lambda settings, sample: buyers)
    out = CliRunner().invoke(
        main, ["clv", "--holdout-from", "1970-10-28", "--until", "1971-06-30", "--json"]
    )
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert doc["holdout_days"] == 246 and len(doc["deciles"]) == 10
    assert CliRunner().invoke(main, ["clv", "--fit", "--holdout-from", "1970-10-28"]).exit_code == 2
