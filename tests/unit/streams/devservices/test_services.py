"""The pure parts of ``segstream services``: a cluster node's command line and layout."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams import devservices as svc
from streams.devservices.cluster import _node_url, _redis_cluster_nodes
from streams.devservices.control import _services
from streams.devservices.process import _rotate
from streams.settings import Settings


def _options(command: list[str]) -> dict[str, str]:
    """``--name value`` pairs of a redis-server command line (after the binary)."""
    args = command[1:]
    assert len(args) % 2 == 0, args
    pairs = dict(zip(args[::2], args[1::2], strict=True))
    assert all(name.startswith("--") for name in pairs), pairs
    return pairs


def test_cluster_node_command(tmp_path: Path) -> None:
    data = tmp_path / "node-7001"
    log = tmp_path / "logs" / "redis-node-7001.log"
    command = svc.cluster_node_command("/usr/bin/redis-server", "localhost", 7001, data, log)
    assert command[0] == "/usr/bin/redis-server"
    assert _options(command) == {
        "--bind": "127.0.0.1",
        "--port": "7001",
        "--cluster-enabled": "yes",
        "--cluster-config-file": str(data / "nodes.conf"),
        "--cluster-node-timeout": "2000",
        "--cluster-require-full-coverage": "yes",
        "--appendonly": "yes",
        "--appendfsync": "everysec",
        "--save": "",
        "--dir": str(data),
        "--logfile": str(log),
        "--daemonize": "no",
    }


@pytest.mark.parametrize("count", [1, 2, 3, 5, 7])
def test_cluster_slot_ranges_cover_every_slot_once(count: int) -> None:
    ranges = svc.cluster_slot_ranges(count)
    assert len(ranges) == count
    slots = [slot for first, last in ranges for slot in range(first, last + 1)]
    assert slots == list(range(svc.CLUSTER_SLOTS))
    sizes = [last - first + 1 for first, last in ranges]
    assert max(sizes) - min(sizes) <= 1


def test_cluster_bus_port_must_exist() -> None:
    assert svc.cluster_bus_port(55535) == 65535
    with pytest.raises(svc.ServiceError, match="beyond 65535"):
        svc.cluster_bus_port(55536)


def test_cluster_settings_list_three_redis_nodes(tmp_path: Path) -> None:
    settings = Settings(
        redis_cluster=True,
        redis_url="redis://app:s%40cret@127.0.0.1:7101/0",
        cache_dir=tmp_path,
    )
    services = _services(settings)
    assert [(s.name, s.address) for s in services] == [
        ("kafka", "127.0.0.1:9092"),
        ("redis", "127.0.0.1:7101"),
        ("redis", "127.0.0.1:7102"),
        ("redis", "127.0.0.1:7103"),
    ]
    nodes = _redis_cluster_nodes(settings)
    assert [n.data for n in nodes] == [
        tmp_path / "redis-cluster-7101" / f"node-{port}" for port in (7101, 7102, 7103)
    ]
    assert [n.service.pid_file.name for n in nodes] == [
        f"redis-node-{port}.pid" for port in (7101, 7102, 7103)
    ]
    assert {n.service.log_file.parent for n in nodes} == {tmp_path / "logs"}
    assert len({n.service.log_file for n in nodes}) == 3
    # the lock of a port is the standalone server's too: one start on a port at a time
    assert nodes[1].service.lock_file == tmp_path / "run" / "redis-7102.lock"
    assert [n.url for n in nodes] == [
        f"redis://app:s%40cret@127.0.0.1:{port}/0" for port in (7101, 7102, 7103)
    ]


def test_standalone_settings_list_one_redis(tmp_path: Path) -> None:
    services = _services(Settings(cache_dir=tmp_path))
    assert [(s.name, s.address) for s in services] == [
        ("kafka", "127.0.0.1:9092"),
        ("redis", "127.0.0.1:6379"),
    ]


def test_node_url_replaces_only_the_port() -> None:
    assert _node_url("rediss://u:p@redis.example:7001/0?x=1", 7003) == (
        "rediss://u:p@redis.example:7003/0?x=1"
    )
    assert _node_url("redis://[::1]:7001/0", 7002) == "redis://[::1]:7002/0"


def test_a_server_log_past_its_limit_moves_aside_at_the_next_start(tmp_path: Path) -> None:
    log = tmp_path / "kafka-9092.log"
    _rotate(log, keep_bytes=10)  # no log yet: nothing to do
    log.write_bytes(b"x" * 10)
    _rotate(log, keep_bytes=10)
    assert log.read_bytes() == b"x" * 10  # at the limit: kept
    log.write_bytes(b"y" * 11)
    (tmp_path / "kafka-9092.log.1").write_bytes(b"older")
    _rotate(log, keep_bytes=10)
    assert not log.exists()
    assert (tmp_path / "kafka-9092.log.1").read_bytes() == b"y" * 11


@given(st.lists(st.binary(min_size=16, max_size=16), min_size=1, max_size=5))
def test_a_cluster_id_never_starts_with_a_dash(raw: list[bytes]) -> None:
    """kafka-storage would read such an id as an option and refuse to format."""
    ids = iter([*(uuid.UUID(bytes=b) for b in raw), uuid.UUID(int=7)])
    cluster_id = svc.new_cluster_id(ids.__next__)
    assert len(cluster_id) == 22 and not cluster_id.startswith("-")


def test_a_cluster_id_that_would_start_with_a_dash_is_drawn_again() -> None:
    dash = uuid.UUID(bytes=b"\xfb" + bytes(15))  # 111110.. : "-" in URL-safe base64
    ids = iter([dash, dash, uuid.UUID(int=1)])
    assert svc.new_cluster_id(ids.__next__) == "AAAAAAAAAAAAAAAAAAAAAQ"
