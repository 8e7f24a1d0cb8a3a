"""Settings -> client arguments of every Kafka and Redis client (streams/kafka/clients.py)."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pydantic import SecretStr, ValidationError

from streams.kafka.clients import (
    _kafka_refusal,
    aiokafka_kwargs,
    faust_credentials,
    kafka_python_kwargs,
    kafka_ssl_context,
)
from streams.settings import KafkaSecurity, Settings
from streams.store.clients import redis_kwargs, redis_user


def settings(**kw: Any) -> Settings:
    return Settings(kafka_bootstrap="broker:9093", **kw)


def scram(mechanism: str = "SCRAM-SHA-256", protocol: str = "SASL_PLAINTEXT") -> KafkaSecurity:
    fields: dict[str, Any] = {"protocol": protocol, "mechanism": mechanism}
    return KafkaSecurity(**fields, username="seg", password=SecretStr("pw"))


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and its key (PEM), from the openssl command."""
    d = tmp_path_factory.mktemp("tls")
    crt, key = d / "ca.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=localhost", "-keyout", str(key), "-out", str(crt)],
        check=True,
        capture_output=True,
    )
    return crt, key


def test_plaintext_by_default() -> None:
    s = settings()
    assert kafka_python_kwargs(s) == {
        "bootstrap_servers": "broker:9093",
        "security_protocol": "PLAINTEXT",
    }
    assert aiokafka_kwargs(s) == kafka_python_kwargs(s)
    assert faust_credentials(s) is None
    assert kafka_ssl_context(s) is None
    assert redis_kwargs(s) == {}
    assert redis_user(s) == "default"


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_plaintext(mechanism: str) -> None:
    s = settings(kafka_security=scram(mechanism))
    expected = {
        "bootstrap_servers": "broker:9093",
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "seg",
        "sasl_plain_password": "pw",
    }
    assert kafka_python_kwargs(s) == expected
    assert aiokafka_kwargs(s) == expected
    creds = faust_credentials(s)
    assert isinstance(creds, faust.SASLCredentials)
    # what faust-streaming's aiokafka driver hands to aiokafka: the mechanism passes through
    assert credentials_to_aiokafka_auth(creds) == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "seg",
        "sasl_plain_password": "pw",
        "ssl_context": None,
    }


def test_sasl_ssl_with_a_ca_file(cert: tuple[Path, Path]) -> None:
    ca, _ = cert
    sec = scram("SCRAM-SHA-512", "SASL_SSL").model_copy(update={"ca_file": ca})
    s = settings(kafka_security=sec)
    kw = kafka_python_kwargs(s)
    assert kw["security_protocol"] == "SASL_SSL"
    assert kw["ssl_cafile"] == str(ca) and kw["ssl_check_hostname"] is True
    context = aiokafka_kwargs(s)["ssl_context"]
    assert isinstance(context, ssl.SSLContext) and context.check_hostname
    auth = credentials_to_aiokafka_auth(faust_credentials(s))
    assert auth["security_protocol"] == "SASL_SSL"
    assert auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert isinstance(auth["ssl_context"], ssl.SSLContext)


def test_ssl_with_a_client_certificate(cert: tuple[Path, Path]) -> None:
    ca, key = cert
    sec = KafkaSecurity(
        protocol="SSL", ca_file=ca, cert_file=ca, key_file=key, check_hostname=False
    )
    s = settings(kafka_security=sec)
    kw = kafka_python_kwargs(s)
    assert kw == {
        "bootstrap_servers": "broker:9093",
        "security_protocol": "SSL",
        "ssl_check_hostname": False,
        "ssl_cafile": str(ca),
        "ssl_certfile": str(ca),
        "ssl_keyfile": str(key),
    }
    creds = faust_credentials(s)
    assert isinstance(creds, faust.SSLCredentials)
    auth = credentials_to_aiokafka_auth(creds)
    assert auth["security_protocol"] == "SSL"
    assert auth["ssl_context"].check_hostname is False


def test_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "SEGSTREAM_KAFKA_SECURITY__PROTOCOL": "SASL_PLAINTEXT",
        "SEGSTREAM_KAFKA_SECURITY__MECHANISM": "SCRAM-SHA-256",
        "SEGSTREAM_KAFKA_SECURITY__USERNAME": "seg",
        "SEGSTREAM_KAFKA_SECURITY__PASSWORD": "kpw",
        "SEGSTREAM_REDIS_URL": "redis://cache:6380/2",
        "SEGSTREAM_REDIS_USERNAME": "seg-r",
        "SEGSTREAM_REDIS_PASSWORD": "rpw",
    }.items():
        monkeypatch.setenv(key, value)
    s = Settings()
    assert kafka_python_kwargs(s)["sasl_plain_password"] == "kpw"
    assert redis_kwargs(s) == {"username": "seg-r", "password": "rpw"}
    assert redis_user(s) == "seg-r"
    shown = repr(s) + str(s.model_dump())
    assert "kpw" not in shown and "rpw" not in shown  # secrets stay hidden


def test_redis_user_and_tls(cert: tuple[Path, Path]) -> None:
    ca, key = cert
    s = Settings(redis_url="rediss://seg:pw@cache:6380/0", redis_ca_file=ca)
    assert redis_user(s) == "seg"
    assert redis_kwargs(s) == {"ssl_ca_certs": str(ca)}
    s = Settings(redis_url="rediss://cache:6380/0", redis_cert_file=ca, redis_key_file=key)
    assert redis_kwargs(s) == {"ssl_certfile": str(ca), "ssl_keyfile": str(key)}


@pytest.mark.parametrize(
    "kw",
    [
        {"protocol": "SASL_PLAINTEXT", "username": "seg"},  # no password
        {"protocol": "SASL_SSL", "password": "pw"},  # no username
        {"protocol": "PLAINTEXT", "ca_file": "/ca.pem"},  # TLS files without TLS
        {"protocol": "SSL", "key_file": "/key.pem"},  # a key without its certificate
        {"protocol": "TLS"},
        {"protocol": "SASL_PLAINTEXT", "mechanism": "GSSAPI", "username": "a", "password": "b"},
    ],
)
def test_incomplete_kafka_security_is_refused(kw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        KafkaSecurity(**kw)


def test_redis_tls_files_need_rediss() -> None:
    with pytest.raises(ValidationError, match="rediss://"):
        Settings(redis_url="redis://cache:6379/0", redis_ca_file=Path("/ca.pem"))


def test_kafka_refusal_messages() -> None:
    logged = [
        "Exchanging credentials in the clear during Sasl Authentication",
        "<KafkaTCPTransport [127.0.0.1:1<-2]>: Abort ([Error 58] SaslAuthenticationFailedError: "
        "SaslAuthenticationFailedError: Authentication failed during authentication due to "
        "invalid credentials with SASL mechanism SCRAM-SHA-256)",
    ]
    who = "the SASL credentials for user seg (SCRAM-SHA-256)"
    assert _kafka_refusal("Kafka at b:1", who, None, logged, 10) == (
        "Kafka at b:1 refused the SASL credentials for user seg (SCRAM-SHA-256): "
        "[Error 58] SaslAuthenticationFailedError: Authentication failed during "
        "authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256"
    )
    assert _kafka_refusal("Kafka at b:1", who, None, [], 10) == (
        "Kafka at b:1 did not answer a metadata request within 10 s "
        "(the SASL credentials for user seg (SCRAM-SHA-256))"
    )
