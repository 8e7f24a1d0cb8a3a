"""Replay adapters: pure mappers from recorded shop data to contract-v1 events."""

from __future__ import annotations

import csv
import gzip
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from segmenters.events import check_routing, parse_event
from streams.cli import main
from streams.kafka.topics import TOPIC_OF_TYPE
from streams.settings import Settings
from streams.tools import replay as rp
from streams.worker.pipeline import no_actions_of

FIXTURES = Path(__file__).parents[2] / "fixtures"
EXAMPLE_MAPPING = Path(__file__).parents[4] / "config" / "replay-example.toml"


def rows(name: str) -> list[dict[str, Any]]:
    with (FIXTURES / name).open(newline="") as f:
        return list(csv.DictReader(f))


def assert_valid(events: list[dict[str, Any]]) -> None:
    """Every event parses under contract v1 and belongs on the topic it is routed to."""
    for e in events:
        parsed = parse_event(orjson.dumps(e))
        check_routing(parsed, topic=TOPIC_OF_TYPE[e["type"]], key=e["customer_id"].encode())


def assert_sorted(events: list[dict[str, Any]]) -> None:
    times = [parse_event(orjson.dumps(e)).occurred_at for e in events]
    assert times == sorted(times)


def by_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


@pytest.fixture
def example_mapping() -> rp.MappingConfig:
    return rp.load_mapping(EXAMPLE_MAPPING)


# --- rees46 ------------------------------------------------------------------------------


def test_rees46_maps_each_event_type():
    out = rp.map_rees46(rows("rees46.csv"))
    assert out.rows == 15
    kinds = [e["type"] for e in out.events]
    assert kinds.count("browse") == 4 and kinds.count("cart") == 2
    assert kinds.count("purchase") == 3
    assert_valid(out.events)

    view = next(e for e in out.events if e["type"] == "browse" and e["customer_id"] == "501")
    assert view == {
        "schema_version": 1,
        "event_id": view["event_id"],
        "customer_id": "501",
        "occurred_at": "2019-10-01T00:00:10Z",
        "session_id": "sess-a",
        "type": "browse",
        "page_type": "product",
        "sku": "1001",
        "category": "electronics.audio.headphone",
        "price": 49.9,
    }
    no_code = next(e for e in out.events if e["type"] == "browse" and e["customer_id"] == "502")
    assert no_code["category"] == "2000000000000000002"  # category_id when no category_code
    add, remove = by_type(out.events, "cart")
    assert (add["action"], add["sku"], add["quantity"]) == ("add", "1001", 1)
    assert add["unit_price"] == 49.9
    assert remove["action"] == "remove" and remove["occurred_at"] == "2019-10-01T00:02:00Z"


def test_rees46_purchase_rows_of_one_session_are_one_order():
    out = rp.map_rees46(rows("rees46.csv"))
    orders = {(e["customer_id"], e["order_id"]): e for e in by_type(out.events, "purchase")}
    assert set(orders) == {("501", "sess-a"), ("502", "sess-b"), ("501", "sess-e")}
    order = orders[("501", "sess-a")]
    # two products, the exact duplicate row of the second is not a second unit
    assert [(ln["sku"], ln["quantity"], ln["unit_price"]) for ln in order["lines"]] == [
        ("1003", 1, 30.0),
        ("1004", 1, 20.5),
    ]
    assert order["lines"][0]["category"] == "appliances.kitchen.kettle"
    assert order["total"] == 50.5 and order["currency"] == "USD"
    assert order["occurred_at"] == "2019-10-01T00:05:00Z"  # its first row
    assert order["session_id"] == "sess-a"
    assert out.notes["purchase events (one per user and session)"] == 3


def test_rees46_duplicates_share_an_event_id_and_are_counted():
    out = rp.map_rees46(rows("rees46.csv"))
    ids = [e["event_id"] for e in out.events]
    assert len(ids) - len(set(ids)) == 1  # the duplicated view; the purchase dup folds in
    assert out.notes["exact duplicate rows (same event_id, applied once)"] == 2


def test_rees46_bad_rows_are_counted_not_raised():
    out = rp.map_rees46(rows("rees46.csv"))
    assert dict(out.skipped) == {
        "malformed price": 1,
        "malformed event_time": 1,
        "unknown event_type": 1,
        "missing user_id": 1,
    }
    assert not any(e["customer_id"] == "503" for e in out.events)


def test_rees46_rows_are_all_accounted_for():
    out = rp.map_rees46(rows("rees46.csv"))
    purchase_rows = sum(1 for r in rows("rees46.csv") if r["event_type"] == "purchase")
    other_events = len(out.events) - len(by_type(out.events, "purchase"))
    assert purchase_rows + other_events + sum(out.skipped.values()) == out.rows


# --- online retail -----------------------------------------------------------------------


def test_online_retail_one_purchase_per_invoice():
    out = rp.map_online_retail(rows("online_retail.csv"))
    assert out.rows == 14
    assert_valid(out.events)
    purchases = {e["order_id"]: e for e in by_type(out.events, "purchase")}
    assert set(purchases) == {"900001", "900002", "900006", "900007", "900008"}
    first = purchases["900001"]
    assert first["customer_id"] == "12345"  # "12345.0" loses its ".0"
    assert first["currency"] == "GBP"
    # the duplicate line is kept (merged), the zero-quantity and negative-price lines are not
    assert first["lines"] == [
        {"sku": "10001", "quantity": 6, "unit_price": 2.5},
        {"sku": "10002", "quantity": 4, "unit_price": 1.25},
    ]
    assert first["total"] == 20.0


def test_online_retail_times_are_uk_local_converted_to_utc():
    out = rp.map_online_retail(rows("online_retail.csv"))
    purchases = {e["order_id"]: e for e in by_type(out.events, "purchase")}
    assert purchases["900001"]["occurred_at"] == "2011-03-01T10:00:00Z"  # GMT
    assert purchases["900002"]["occurred_at"] == "2011-07-01T09:00:00Z"  # BST = UTC+1


def test_online_retail_cancellation_is_a_refund():
    out = rp.map_online_retail(rows("online_retail.csv"))
    (refund,) = by_type(out.events, "refund")
    assert refund["order_id"] == "C900003" and refund["customer_id"] == "12345"
    assert refund["total"] == 5.0  # |-2| * 2.50
    assert refund["lines"] == [{"sku": "10001", "quantity": 2, "unit_price": 2.5}]
    assert "currency" not in refund


def test_online_retail_skips_are_counted():
    out = rp.map_online_retail(rows("online_retail.csv"))
    assert dict(out.skipped) == {
        "purchase line with quantity <= 0 or price < 0": 2,
        "adjustment invoice (A...)": 1,
        "missing CustomerID": 1,
        "malformed quantity": 1,
        "malformed UnitPrice": 1,
    }
    assert out.notes["exact duplicate rows (kept as invoice lines)"] == 1
    assert all(e["customer_id"] for e in out.events)
    assert not any(e.get("order_id", "").startswith("A") for e in out.events)


def test_online_retail_one_profile_per_customer_with_iso_country():
    out = rp.map_online_retail(rows("online_retail.csv"))
    profiles = {e["customer_id"]: e for e in by_type(out.events, "profile")}
    assert {c: p["attributes"] for c, p in profiles.items()} == {
        "12345": {"country": "GB"},
        "23456": {"country": "FR"},
        "45678": {"country": "IE"},  # EIRE
    }
    # timed at the customer's first invoice, and sorted before it
    assert profiles["12345"]["occurred_at"] == "2011-03-01T10:00:00Z"
    events = rp.sort_events(out.events)
    first_of_12345 = next(e for e in events if e["customer_id"] == "12345")
    assert first_of_12345["type"] == "profile"
    # Channel Islands is not one ISO country: no profile, counted
    assert "34567" not in profiles
    assert out.notes["customers with unknown country 'Channel Islands' (no profile)"] == 1


@pytest.mark.parametrize(
    "name, code",
    [
        ("United Kingdom", "GB"),
        ("France", "FR"),
        ("Germany", "DE"),
        ("EIRE", "IE"),
        ("Spain", "ES"),
        ("Netherlands", "NL"),
        ("Belgium", "BE"),
        ("Switzerland", "CH"),
        ("Portugal", "PT"),
        ("Australia", "AU"),
        ("Norway", "NO"),
        ("Italy", "IT"),
        ("USA", "US"),
    ],
)
def test_country_codes(name, code):
    assert rp.COUNTRY_CODES[name] == code


def test_online_retail_invoice_without_valid_lines_is_not_sent():
    header = rows("online_retail.csv")[0]
    bad = dict(header, InvoiceNo="900099", Quantity="-3", CustomerID="77777")
    out = rp.map_online_retail([bad])
    assert out.events == []
    assert out.skipped["purchase line with quantity <= 0 or price < 0"] == 1
    assert out.notes["invoices without a valid line (not sent)"] == 1


def test_online_retail_long_invoice_keeps_its_total():
    base = rows("online_retail.csv")[0]
    many = [dict(base, StockCode=f"S{i}", Quantity="1", UnitPrice="1.00") for i in range(620)]
    out = rp.map_online_retail(many)
    purchase = by_type(out.events, "purchase")[0]
    assert len(purchase["lines"]) == rp.MAX_LINES and purchase["total"] == 620.0
    assert out.notes["invoice lines beyond 500 left out (total kept)"] == 120
    assert_valid(out.events)


# --- jsonl -------------------------------------------------------------------------------


def test_jsonl_passes_valid_events_and_counts_bad_lines():
    lines = (FIXTURES / "events.jsonl").read_text().splitlines()
    out = rp.map_jsonl(lines)
    assert out.rows == 6  # the blank line is not a row
    assert [e["event_id"] for e in rp.sort_events(out.events)] == ["j-6", "j-1", "j-2"]
    assert sum(out.skipped.values()) == 3
    assert out.skipped["malformed event: invalid JSON"] == 1
    assert all(k.startswith("malformed event") for k in out.skipped)
    assert_valid(out.events)


def test_jsonl_respects_the_size_limit():
    line = (FIXTURES / "events.jsonl").read_text().splitlines()[0]
    out = rp.map_jsonl([line], max_bytes=50)
    assert out.events == [] and sum(out.skipped.values()) == 1


# --- mapped ------------------------------------------------------------------------------


def test_example_mapping_loads(example_mapping):
    assert example_mapping.columns.customer_id == "user"
    assert example_mapping.types["buy"] == "purchase"
    assert example_mapping.timezone == "Europe/Berlin"


def test_mapped_rows_become_events(example_mapping):
    out = rp.map_mapped(rows("mapped.csv"), example_mapping)
    assert out.rows == 11
    assert_valid(out.events)
    assert dict(out.skipped) == {
        "type 'wishlist' mapped to skip": 1,
        "unmapped type 'compare'": 1,
        "malformed time": 1,
        "malformed quantity": 1,
    }
    browse = by_type(out.events, "browse")[0]
    assert browse["occurred_at"] == "2024-03-01T11:00:00Z"  # Berlin, CET
    assert browse["event_id"].startswith("shop-export:")
    add, remove = by_type(out.events, "cart")
    assert (add["action"], add["quantity"], remove["action"]) == ("add", 2, "remove")
    orders = {e["customer_id"]: e for e in by_type(out.events, "purchase")}
    assert orders["u-1"]["order_id"] == "ord-1"
    assert [ln["sku"] for ln in orders["u-1"]["lines"]] == ["SKU-1", "SKU-2"]
    assert orders["u-1"]["total"] == 34.99 and orders["u-1"]["currency"] == "EUR"
    assert orders["u-2"]["occurred_at"] == "2024-07-01T07:00:00Z"  # CEST
    assert orders["u-2"]["order_id"]  # derived from the row when there is no order id
    (refund,) = by_type(out.events, "refund")
    assert refund["order_id"] == "ord-1" and refund["total"] == 15.0


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[columns\n", "not valid TOML"),
        ("[types]\nview = 'browse'\n", "columns: Field required"),
        (
            "[colums]\ncustomer_id='u'\n[columns]\ncustomer_id='u'\noccurred_at='t'\ntype='k'\n"
            "[types]\nv='browse'\n",
            "colums: Extra inputs are not permitted",
        ),
        (
            "[columns]\ncustomer_id='u'\noccurred_at='t'\ntype='k'\n[types]\nv='view'\n",
            "types.v: Input should be 'browse', 'cart_add'",
        ),
        (
            "timezone='Mars/Olympus'\n[columns]\ncustomer_id='u'\noccurred_at='t'\ntype='k'\n"
            "[types]\nv='browse'\n",
            "unknown time zone 'Mars/Olympus'",
        ),
        (
            "[columns]\ncustomer_id='u'\noccurred_at='t'\ntype='k'\nsku='s'\nprice='p'\n"
            "[types]\nr='refund'\n",
            "columns.order_id is required",
        ),
        (
            "[columns]\ncustomer_id='u'\noccurred_at='t'\ntype='k'\n[types]\nb='purchase'\n",
            "columns.sku is required",
        ),
        (
            "currency='euro'\n[columns]\ncustomer_id='u'\noccurred_at='t'\ntype='k'\n"
            "[types]\nv='browse'\n",
            "currency: String should match pattern",
        ),
    ],
)
def test_bad_mappings_give_clear_errors(text, expected):
    with pytest.raises(rp.ReplayError) as err:
        rp.parse_mapping(text)
    assert expected in str(err.value)


def test_mapped_unix_times():
    config = rp.parse_mapping(
        "time_format='unix_ms'\n[columns]\ncustomer_id='u'\noccurred_at='t'\ntype='k'\n"
        "[types]\nv='browse'\n"
    )
    out = rp.map_mapped([{"u": "c-1", "t": "1700000000000", "k": "v"}], config)
    assert out.events[0]["occurred_at"] == "2023-11-14T22:13:20Z"
    assert out.events[0]["page_type"] == "other"  # no sku column
    assert_valid(out.events)


# --- cdnow -------------------------------------------------------------------------------


def cdnow_lines() -> list[str]:
    return (FIXTURES / "cdnow.txt").read_text().splitlines()


def test_cdnow_one_purchase_per_row():
    out = rp.map_cdnow(cdnow_lines())
    assert out.rows == 9  # the blank line is not a row
    assert_valid(out.events)
    first = out.events[0]
    assert first == {
        "schema_version": 1,
        "event_id": first["event_id"],
        "type": "purchase",
        "customer_id": "cdnow-0001",
        "occurred_at": "1997-01-03T12:00:00Z",
        "order_id": "cdnow-0001-1",
        "lines": [{"sku": "cd", "quantity": 1}],
        "total": 11.77,
        "currency": "USD",
    }
    assert first["event_id"].startswith("cdnow:")
    assert [(e["customer_id"], e["order_id"], e["total"]) for e in out.events] == [
        ("cdnow-0001", "cdnow-0001-1", 11.77),
        ("cdnow-0001", "cdnow-0001-2", 38.97),
        ("cdnow-0001", "cdnow-0001-3", 38.97),
        ("cdnow-0002", "cdnow-0002-1", 24.5),
        ("cdnow-0002", "cdnow-0002-2", 12.49),
        ("cdnow-0003", "cdnow-0003-1", 52.1),
    ]


def test_cdnow_equal_rows_are_two_orders_and_noted():
    out = rp.map_cdnow(cdnow_lines())
    second, third = out.events[1], out.events[2]
    assert second["lines"] == third["lines"] == [{"sku": "cd", "quantity": 3}]
    assert second["event_id"] != third["event_id"] and second["order_id"] != third["order_id"]
    assert out.notes == {"rows equal to an earlier row (kept: another order)": 1}


def test_cdnow_bad_rows_are_counted_not_raised():
    out = rp.map_cdnow(cdnow_lines())
    assert dict(out.skipped) == {
        "malformed date": 1,
        "number of CDs not in 1..100000": 1,
        "malformed row (not 5 columns)": 1,
    }
    assert out.rows == len(out.events) + sum(out.skipped.values())


def test_until_keeps_that_whole_day_and_counts_the_rest():
    events = rp.read_and_map(FIXTURES / "cdnow.txt", "cdnow").events
    kept, after = rp.events_until(events, rp.parse_until("1997-09-30"))
    assert after == 1 and kept == events[:-1]
    assert kept[-1]["occurred_at"] == "1997-09-30T12:00:00Z"
    kept, after = rp.events_until(events, rp.parse_until("1997-09-30T11:59:59Z"))
    assert after == 2 and kept[-1]["occurred_at"] == "1997-02-20T12:00:00Z"
    assert rp.events_until(events, None) == (events, 0)


@pytest.mark.parametrize("text", ["30.09.1997", "1997-13-01", "soon"])
def test_until_rejects_what_is_not_iso(text):
    with pytest.raises(rp.ReplayError, match="--until"):
        rp.parse_until(text)


# --- files, ids, order -------------------------------------------------------------------

CASES = [
    ("rees46.csv", "rees46"),
    ("online_retail.csv", "online-retail"),
    ("events.jsonl", "jsonl"),
    ("mapped.csv", "mapped"),
    ("cdnow.txt", "cdnow"),
]


@pytest.mark.parametrize("name, fmt", CASES)
def test_files_map_to_valid_sorted_events(name, fmt, example_mapping):
    mapping = example_mapping if fmt == "mapped" else None
    out = rp.read_and_map(FIXTURES / name, fmt, mapping=mapping)
    assert out.events
    assert_valid(out.events)
    assert_sorted(out.events)


@pytest.mark.parametrize("name, fmt", CASES)
def test_event_ids_are_deterministic(name, fmt, example_mapping):
    mapping = example_mapping if fmt == "mapped" else None
    first = rp.read_and_map(FIXTURES / name, fmt, mapping=mapping)
    second = rp.read_and_map(FIXTURES / name, fmt, mapping=mapping)
    assert [e["event_id"] for e in first.events] == [e["event_id"] for e in second.events]
    assert first.events == second.events


@pytest.mark.parametrize("name, fmt", CASES)
def test_gzip_input_gives_the_same_events(name, fmt, example_mapping, tmp_path):
    mapping = example_mapping if fmt == "mapped" else None
    packed = tmp_path / f"{name}.gz"
    with (FIXTURES / name).open("rb") as src, gzip.open(packed, "wb") as dst:
        shutil.copyfileobj(src, dst)
    plain = rp.read_and_map(FIXTURES / name, fmt, mapping=mapping)
    gz = rp.read_and_map(packed, fmt, mapping=mapping)
    assert gz.events == plain.events and gz.rows == plain.rows and gz.skipped == plain.skipped


def test_distinct_rows_get_distinct_ids():
    out = rp.map_online_retail(rows("online_retail.csv"))
    ids = [e["event_id"] for e in out.events]
    assert len(ids) == len(set(ids))
    assert all(i.startswith("online-retail:") for i in ids)


def test_sort_is_stable_for_equal_times():
    events = [
        {"event_id": "b", "occurred_at": "2020-01-01T00:00:01Z"},
        {"event_id": "a", "occurred_at": "2020-01-01T01:00:00+01:00"},  # = 00:00:00Z
        {"event_id": "c", "occurred_at": "2020-01-01T00:00:01+00:00"},
    ]
    assert [e["event_id"] for e in rp.sort_events(events)] == ["a", "b", "c"]


def test_missing_columns_are_an_error(tmp_path):
    path = tmp_path / "wrong.csv"
    path.write_text("InvoiceNo,StockCode\n1,2\n")
    with pytest.raises(rp.ReplayError, match="missing column"):
        rp.read_and_map(path, "online-retail")


def test_mapped_needs_a_mapping():
    with pytest.raises(rp.ReplayError, match="--mapping"):
        rp.read_and_map(FIXTURES / "mapped.csv", "mapped")


# --- producing (Kafka replaced by a recorder) --------------------------------------------


class FakeProducer:
    sent: list[tuple[str, bytes, bytes]] = []
    headers: list[Any] = []

    def __init__(self, **kwargs: Any) -> None:
        FakeProducer.sent = []
        FakeProducer.headers = []

    def send(self, topic: str, *, key: bytes, value: bytes, headers: Any = None) -> Any:
        FakeProducer.sent.append((topic, key, value))
        FakeProducer.headers.append(headers)
        return self

    def add_errback(self, fn: Any) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
def fake_kafka(monkeypatch):

    import streams.kafka.topics

    monkeypatch.setattr(streams.kafka.topics, "KafkaProducer", FakeProducer)
    monkeypatch.setattr(streams.kafka.topics, "ensure_topics", lambda settings: [])
    return FakeProducer


def test_replay_produces_sorted_keyed_events(fake_kafka):
    settings = Settings(topic_prefix="t.")
    stats = rp.replay(settings, FIXTURES / "rees46.csv", "rees46", progress=False)
    assert stats.events == len(fake_kafka.sent) == 9
    assert stats.by_type == {"browse": 4, "cart": 2, "purchase": 3}
    assert stats.rows == 15 and sum(stats.skipped.values()) == 4
    times = []
    for topic, key, value in fake_kafka.sent:
        event = parse_event(value)
        assert key == event.customer_id.encode()
        assert topic == "t." + TOPIC_OF_TYPE[event.type]
        times.append(event.occurred_at)
    assert times == sorted(times)
    summary = rp.render(stats)
    assert "rows read        15" in summary and "malformed price" in summary
    assert "events produced  9 (browse 4, purchase 3, cart 2)" in summary


def test_replay_limit_sends_the_earliest_events(fake_kafka):
    stats = rp.replay(Settings(), FIXTURES / "rees46.csv", "rees46", limit=3, progress=False)
    assert stats.events == 3 and stats.not_sent == 6
    assert [parse_event(v).occurred_at.second for _, _, v in fake_kafka.sent] == [5, 10, 10]


def test_replay_until_sends_the_calibration_period_and_says_what_it_left(fake_kafka):
    until = rp.parse_until("1997-09-30")
    stats = rp.replay(Settings(), FIXTURES / "cdnow.txt", "cdnow", until=until, progress=False)
    assert stats.events == len(fake_kafka.sent) == 5 and stats.after_until == 1
    assert stats.by_type == {"purchase": 5} and stats.not_sent == 0
    assert max(parse_event(v).occurred_at for _, _, v in fake_kafka.sent).day == 30
    summary = rp.render(stats)
    assert "after --until    1 (dated after 1997-09-30T23:59:59.999999Z)" in summary
    assert "after --until" not in rp.render(
        rp.replay(Settings(), FIXTURES / "cdnow.txt", "cdnow", progress=False)
    )


def test_replay_rate_paces(fake_kafka, monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(rp.produce.time, "sleep", slept.append)
    rp.replay(Settings(), FIXTURES / "rees46.csv", "rees46", rate=100.0, progress=False)
    assert slept and sum(slept) > 0.05  # 9 events at 100/s take about 0.08 s


# --- command line (no servers: only argument errors) -------------------------------------


def test_cli_rejects_rate_with_max():
    result = CliRunner().invoke(
        main,
        ["replay", "--format", "rees46", "--rate", "10", "--max", str(FIXTURES / "rees46.csv")],
    )
    assert result.exit_code != 0 and "exclude each other" in result.output


def test_cli_replays_cdnow_until_a_date(fake_kafka):
    args = ["replay", "--format", "cdnow", "--quiet", "--no-actions", "--until", "1997-09-30"]
    result = CliRunner().invoke(main, [*args, str(FIXTURES / "cdnow.txt")])
    assert result.exit_code == 0, result.output
    assert len(fake_kafka.sent) == 5 and "after --until    1" in result.stdout
    bad = CliRunner().invoke(main, ["replay", "--format", "cdnow", "--until", "Sept", "x.txt"])
    assert bad.exit_code != 0


def test_cli_reports_a_bad_mapping(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[columns]\ncustomer_id='u'\n")
    result = CliRunner().invoke(
        main, ["replay", "--format", "mapped", "--mapping", str(bad), str(FIXTURES / "mapped.csv")]
    )
    assert result.exit_code != 0
    assert "columns.occurred_at: Field required" in result.output


def test_replay_no_actions_marks_every_record_and_says_so_before_sending(fake_kafka):
    said: list[tuple[str, int]] = []
    fake_kafka.sent = []
    rp.replay(
        Settings(),
        FIXTURES / "rees46.csv",
        "rees46",
        progress=False,
        no_actions=True,
        announce=lambda text: said.append((text, len(FakeProducer.sent))),
    )
    assert len(said) == 1 and said[0][1] == 0  # said before the first event went out
    assert "marked no-actions" in said[0][0]
    assert fake_kafka.headers == [[("segstream-no-actions", b"1")]] * len(fake_kafka.sent)
    assert all(no_actions_of(h) for h in fake_kafka.headers)


def test_replay_without_the_flag_names_the_policys_actions_and_the_stale_cutoffs(fake_kafka):
    said: list[str] = []
    wall = datetime(2019, 10, 1, 12, tzinfo=UTC).timestamp()  # the fixture's events: 00:00
    rp.replay(
        Settings(),
        FIXTURES / "rees46.csv",
        "rees46",
        progress=False,
        announce=said.append,
        wall=wall,
    )
    assert fake_kafka.headers == [None] * 9 and not any(map(no_actions_of, fake_kafka.headers))
    text = said[0]
    assert "sends ads/reactivation, ads/win_back, email/abandoned_cart" in text
    # 6 h for the abandoned cart: none of the 9 events (00:00 .. 00:10) is newer than 06:00
    cart = "email/abandoned_cart (max age 6 h): changes dated before 2019-10-01T06:00:00Z; 0 of 9"
    assert cart in text
    assert "(max age 24 h): changes dated before 2019-09-30T12:00:00Z; 9 of 9" in text


def test_replay_says_when_the_deployment_runs_no_actions(fake_kafka):
    said: list[str] = []
    settings = Settings(actions_enabled=False)
    rp.replay(settings, FIXTURES / "rees46.csv", "rees46", progress=False, announce=said.append)
    assert said == [
        "actions: this deployment runs no actions agent (SEGSTREAM_ACTIONS_ENABLED=false)"
    ]


def test_cli_no_actions_flag_marks_the_records_and_the_notice_goes_first(fake_kafka, monkeypatch):
    monkeypatch.setenv("SEGSTREAM_ACTIONS_ENABLED", "true")
    args = ["replay", "--format", "rees46", "--quiet", str(FIXTURES / "rees46.csv")]
    result = CliRunner().invoke(main, [*args, "--no-actions"])
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("actions: replayed events are marked no-actions")
    assert fake_kafka.headers == [[("segstream-no-actions", b"1")]] * 9
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0 and fake_kafka.headers == [None] * 9
    assert "suppressed `stale`" in result.stderr and "events to send are newer" in result.stderr
