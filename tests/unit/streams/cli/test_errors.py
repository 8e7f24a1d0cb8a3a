"""How commands fail: settings and connection errors become one line naming the variable."""

from __future__ import annotations

import os

import click
import pytest
from click.testing import CliRunner
from kafka.errors import KafkaConnectionError, KafkaTimeoutError

from streams.cli.errors import (
    EXIT_CODE,
    CommandFailure,
    SegstreamGroup,
    check_message,
    env_name,
    explain,
    load_settings,
    without_password,
)
from streams.kafka.clients import ConnectionCheckError, bootstrap_addresses
from streams.settings import Settings
from streams.store.clients import REDIS_UNREACHABLE, unreachable_reason


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SEGSTREAM_"):
            monkeypatch.delenv(name)


def failure(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(CommandFailure) as caught:
        load_settings()
    assert caught.value.exit_code == EXIT_CODE
    return caught.value.format_message()


def test_env_names_follow_prefix_and_nesting() -> None:
    assert env_name(("topic_partitions",)) == "SEGSTREAM_TOPIC_PARTITIONS"
    assert env_name(("collector", "port")) == "SEGSTREAM_COLLECTOR__PORT"
    assert env_name(("kafka_security", "protocol")) == "SEGSTREAM_KAFKA_SECURITY__PROTOCOL"
    assert env_name(("collector", "write_keys", "shop-de")) == "SEGSTREAM_COLLECTOR__WRITE_KEYS"


def test_a_bad_value_names_the_variable_and_no_pydantic_url(monkeypatch) -> None:
    text = failure(monkeypatch, SEGSTREAM_TOPIC_PARTITIONS="abc")
    assert text.startswith("invalid setting SEGSTREAM_TOPIC_PARTITIONS='abc': ")
    assert "valid integer" in text
    assert "pydantic" not in text and "http" not in text and "\n" not in text


def test_nested_group_fields(monkeypatch) -> None:
    text = failure(monkeypatch, SEGSTREAM_COLLECTOR__PORT="0")
    assert text == (
        "invalid setting SEGSTREAM_COLLECTOR__PORT='0': Input should be greater than or equal to 1"
    )
    text = failure(monkeypatch, SEGSTREAM_COLLECTOR__PORT="1", SEGSTREAM_JOURNEY="{bad")
    assert text.startswith("invalid setting SEGSTREAM_JOURNEY: not valid JSON")


def test_checks_across_fields(monkeypatch) -> None:
    text = failure(monkeypatch, SEGSTREAM_KAFKA_SECURITY__PROTOCOL="SASL_SSL")
    assert text == (
        "invalid settings SEGSTREAM_KAFKA_SECURITY__*: "
        "protocol SASL_SSL needs a username and a password"
    )
    monkeypatch.delenv("SEGSTREAM_KAFKA_SECURITY__PROTOCOL")
    text = failure(monkeypatch, SEGSTREAM_REDIS_CA_FILE="/ca.pem")
    assert (
        text
        == "invalid settings: redis_ca_file/redis_cert_file/redis_key_file need a rediss:// URL"
    )


def test_many_bad_values_stay_within_three_lines(monkeypatch) -> None:
    bad = {
        f"SEGSTREAM_{n}": "x" for n in ("TOPIC_PARTITIONS", "BATCH_SIZE", "CLUSTERS", "WEB_PORT")
    }
    lines = failure(monkeypatch, **bad).splitlines()
    assert len(lines) == 3
    assert lines[-1] == "... and 2 more invalid settings"


def test_addresses_the_types_let_through(monkeypatch) -> None:
    text = failure(monkeypatch, SEGSTREAM_REDIS_URL="notaurl")
    assert text.startswith("invalid setting SEGSTREAM_REDIS_URL='notaurl': a URL like redis://")
    text = failure(monkeypatch, SEGSTREAM_REDIS_URL="http://app:hunter2@db:1/0")
    assert "hunter2" not in text and "app:***@db" in text
    monkeypatch.delenv("SEGSTREAM_REDIS_URL")
    text = failure(monkeypatch, SEGSTREAM_KAFKA_BOOTSTRAP="broker:nine")
    assert text.startswith("invalid setting SEGSTREAM_KAFKA_BOOTSTRAP='broker:nine': host:port")


def test_secrets_are_never_quoted(monkeypatch) -> None:
    text = failure(monkeypatch, SEGSTREAM_COLLECTOR__WRITE_KEYS='{"shop": 5}')
    assert text.startswith("invalid setting SEGSTREAM_COLLECTOR__WRITE_KEYS: ")  # no value
    assert without_password("rediss://u:p%40ss@h:6380/1") == "rediss://u:***@h:6380/1"


def test_redis_unreachable_names_address_and_variable_not_password(monkeypatch) -> None:
    monkeypatch.setenv("SEGSTREAM_REDIS_URL", "redis://app:hunter2@10.0.0.7:6390/0")
    error = REDIS_UNREACHABLE[0]("Error 111 connecting to 10.0.0.7:6390. Connection refused.")
    error.__cause__ = ConnectionRefusedError(111, "Connection refused")
    assert unreachable_reason(error) == "Connection refused"
    assert explain(error) == (
        "cannot reach Redis at 10.0.0.7:6390 (SEGSTREAM_REDIS_URL): Connection refused. "
        "Start it with `segstream services up` or fix SEGSTREAM_REDIS_URL."
    )


@pytest.mark.parametrize(
    "error",
    [
        KafkaConnectionError("111 ECONNREFUSED"),
        KafkaTimeoutError("Unable to bootstrap from b:9099"),
    ],
)
def test_kafka_unreachable(monkeypatch, error: Exception) -> None:
    monkeypatch.setenv("SEGSTREAM_KAFKA_BOOTSTRAP", "b:9099")
    text = explain(error)
    assert text is not None
    assert text.startswith("cannot reach Kafka at b:9099 (SEGSTREAM_KAFKA_BOOTSTRAP): ")
    assert text.endswith("fix SEGSTREAM_KAFKA_BOOTSTRAP.")


def test_start_check_messages() -> None:
    settings = Settings(kafka_bootstrap="k:1")
    down = ConnectionCheckError("Kafka at k:1: no connection", unreachable="Connection refused")
    assert check_message("Kafka", settings, down).startswith(
        "cannot reach Kafka at k:1 (SEGSTREAM_KAFKA_BOOTSTRAP): Connection refused. Start it"
    )
    refused = ConnectionCheckError("Kafka at k:1 refused the SASL credentials for user u")
    assert check_message("Kafka", settings, refused) == (
        "Kafka at k:1 refused the SASL credentials for user u "
        "(SEGSTREAM_KAFKA_BOOTSTRAP and its SEGSTREAM_KAFKA_* settings)"
    )


def test_other_errors_are_not_explained() -> None:
    assert explain(ValueError("a bug")) is None
    assert explain(FileNotFoundError(2, "No such file")) is None


def test_bootstrap_addresses() -> None:
    assert bootstrap_addresses(Settings(kafka_bootstrap="a:1, SSL://b:2,c")) == [
        ("a", 1),
        ("b", 2),
        ("c", 9092),
    ]


def _group() -> click.Group:
    @click.group(cls=SegstreamGroup)
    @click.option("-v", "--verbose", is_flag=True)
    def cli(verbose: bool) -> None:
        pass

    @cli.group()
    def sub() -> None:
        pass

    @sub.command()
    def down() -> None:
        raise REDIS_UNREACHABLE[0]("Error 111 connecting to 127.0.0.1:6390. Connection refused.")

    @cli.command()
    def bug() -> None:
        raise ValueError("a bug")

    return cli


def test_group_turns_a_known_failure_into_one_line_and_exit_2(monkeypatch) -> None:
    monkeypatch.setenv("SEGSTREAM_REDIS_URL", "redis://127.0.0.1:6390/0")
    out = CliRunner().invoke(_group(), ["sub", "down"])
    assert out.exit_code == EXIT_CODE
    assert out.output.splitlines() == [
        "Error: cannot reach Redis at 127.0.0.1:6390 (SEGSTREAM_REDIS_URL): Connection refused. "
        "Start it with `segstream services up` or fix SEGSTREAM_REDIS_URL."
    ]
    verbose = CliRunner().invoke(_group(), ["--verbose", "sub", "down"])
    assert verbose.exit_code == EXIT_CODE and "Traceback" in verbose.output
    bug = CliRunner().invoke(_group(), ["bug"])
    assert isinstance(bug.exception, ValueError)  # a bug stays a bug


def test_customer_view_is_plain_and_aligned() -> None:
    from streams.cli.lookups import plain, render_customer, utc

    out = {
        "customer_id": "c-1",
        "segments": {"journey": "browser", "custom:a_really_long_segment_name": "in"},
        "state": {"last_order_at": None, "devices": {"desktop": 3}, "tags": ["a", "b"]},
        "predictions": None,
    }
    lines = render_customer(out).splitlines()
    assert lines[0] == "customer c-1"
    starts = {
        line.index(value) for line, value in zip(lines[1:4], ["browser", "in", "-"], strict=True)
    }
    assert len(starts) == 1  # one column of values, after the longest name
    assert "{" not in render_customer(out) and "None" not in render_customer(out)
    assert plain({"country": "DE", "consent": True}) == "country DE, consent yes"
    assert utc("2026-01-25T12:44:57.054+01:00") == "2026-01-25T11:44:57Z"


def test_simulation_summary_has_no_repr() -> None:
    from streams.cli.tools import simulation_summary
    from streams.tools.simulate import SimulationStats

    stats = SimulationStats(events=10, elapsed_s=2.0, by_type={"browse": 7, "cart": 3})
    text = simulation_summary(stats)
    assert text.splitlines()[0] == "simulated 10 event(s) in 2.0 s (5 ev/s), 0 not delivered"
    assert "browse 7, cart 3" in text and "SimulationStats" not in text
