"""A standalone local ``redis-server``: found on PATH or installed from Debian's package.

Also the PING probe (its Redis call is streams/store/admin.py's) and the redis-server
binary that the cluster nodes (cluster.py) start with their own command line.
"""

from __future__ import annotations

import os
import shutil
import time

from streams.devservices.process import (
    PROBE_TIMEOUT_S,
    REDIS_START_TIMEOUT_S,
    Echo,
    ServiceError,
    _local_service,
    _locked,
    _needs_start,
    _run,
    _Service,
    _start,
    _tail_text,
)
from streams.settings import Settings
from streams.store import admin


def _redis_service(settings: Settings) -> _Service:
    host, port = settings.redis_host_port
    url = settings.redis_url
    return _local_service(
        settings.cache_dir,
        "redis",
        host,
        port,
        mark="redis-server",
        answers=lambda: redis_answers(url),
    )


def redis_answers(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """True if the Redis at ``url`` answers PING (with the credentials in the URL)."""
    return admin.redis_answers(url, timeout_s)


def _redis_up(settings: Settings, echo: Echo) -> None:
    service = _redis_service(settings)
    with _locked(service.lock_file):
        if not _needs_start(service, [service.port], echo):
            return
        host, port = service.host, service.port
        server = _redis_server(service, echo)
        if server is None:
            echo(f"redis: the redis-server package started a server on {service.address}; using it")
            return
        data = settings.cache_dir / f"redis-data-{port}"
        data.mkdir(parents=True, exist_ok=True)
        command = [
            server,
            "--bind",
            _bind_address(host),
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(data),
            "--logfile",
            str(service.log_file),
            "--daemonize",
            "no",
        ]
        _start(service, command, REDIS_START_TIMEOUT_S, "redis-server", echo)


def _redis_server(service: _Service, echo: Echo) -> str | None:
    """The redis-server binary, installed if missing; None if installing it started a
    server that answers on ``service``'s address (the Debian package starts one)."""
    server = _find_redis_server()
    if server is None:
        server = _install_redis_server(echo)
        if service.answers():
            return None
    return server


def _bind_address(host: str) -> str:
    return "127.0.0.1" if host == "localhost" else host


def _find_redis_server() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    for candidate in ("/usr/bin/redis-server", "/usr/sbin/redis-server"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _install_redis_server(echo: Echo) -> str:
    """Install Debian's redis-server; refresh the package index only if the first try fails."""
    apt = shutil.which("apt-get")
    if apt is None:
        raise ServiceError("redis-server is not installed; install Redis 6+ and run this again")
    if os.geteuid() != 0:
        raise ServiceError(
            "redis-server is not installed; install it with "
            "`sudo apt-get install redis-server` and run this again"
        )
    echo("redis: redis-server not found; installing the Debian package with apt-get...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt, "install", "-y", "-q", "redis-server"]
    started = time.monotonic()
    if _run(install, env, 900.0).returncode != 0:
        _run([apt, "update", "-q"], env, 900.0)
        result = _run(install, env, 900.0)
        if result.returncode != 0:
            raise ServiceError(
                f"`apt-get install redis-server` failed:\n{_tail_text(result.stdout)}"
            )
    server = _find_redis_server()
    if server is None:
        raise ServiceError("apt-get installed redis-server but no redis-server binary was found")
    echo(f"redis: installed {server} in {time.monotonic() - started:.1f} s")
    return server
