"""One supervised local server process: start, reuse, stop and state.

A server segstream starts runs in its own session and outlives the CLI. It is found
again through its pid file, checked against its command line so a recycled pid never
gets a signal, and each service's ``up``/``down`` is serialised by a lock file. What a
particular server needs (jars, config, cluster formation) lives in the modules beside
this one; they only build command lines and probes and hand them to ``_start``.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

Echo = Callable[[str], None]

KAFKA_START_TIMEOUT_S = 240.0  # a broker loads every partition on disk before it answers
REDIS_START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 20.0
LOG_TAIL_LINES = 30
PROBE_TIMEOUT_S = 2.0
POLL_INTERVAL_S = 0.25
LOG_KEEP_BYTES = 32 * 1024 * 1024  # a server log past this is rotated at its next start
PROGRESS_EVERY_S = 15.0  # a slow start says how far it got


class ServiceError(RuntimeError):
    """A service could not be started or stopped; the message says why and what to do."""


@dataclass(frozen=True)
class ServiceState:
    """What ``segstream services status`` shows for one service."""

    name: str
    address: str
    answering: bool
    pid: int | None  # the process segstream started, if it is still alive
    detail: str


@dataclass(frozen=True)
class _Service:
    """One local service: where it answers and where segstream keeps its traces."""

    name: str
    host: str
    port: int
    local: bool  # only a service on this machine can be started, or stopped through a pid file
    pid_file: Path
    log_file: Path
    lock_file: Path
    mark: str  # found in the command line of the process we started; guards against pid reuse
    answers: Callable[[], bool]
    describe: Callable[[], str] | None = None  # more for ``status`` while it answers

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def _local_service(
    cache_dir: Path,
    name: str,
    host: str,
    port: int,
    *,
    mark: str,
    answers: Callable[[], bool],
    describe: Callable[[], str] | None = None,
    stem: str | None = None,
) -> _Service:
    """A service whose traces are ``run/<stem>-<port>.pid`` and ``logs/<stem>-<port>.log``
    under ``cache_dir`` (``stem`` defaults to ``name``); the lock is ``run/<name>-<port>.lock``,
    one per name and port whatever starts there."""
    run = cache_dir / "run"
    stem = stem or name
    return _Service(
        name=name,
        host=host,
        port=port,
        local=_is_local_host(host),
        pid_file=run / f"{stem}-{port}.pid",
        log_file=cache_dir / "logs" / f"{stem}-{port}.log",
        lock_file=run / f"{name}-{port}.lock",
        mark=mark,
        answers=answers,
        describe=describe,
    )


def _reuse(service: _Service, echo: Echo) -> bool:
    """True if the service answers already, or our process from an earlier ``up`` comes up."""
    if service.answers():
        pid = _our_pid(service)
        whose = f"started by segstream, pid {pid}" if pid else "not started by segstream"
        echo(f"{service.name}: {service.address} already answers ({whose}); using it")
        return True
    if not service.local:
        raise ServiceError(
            f"{service.name} does not answer on {service.address}, and {service.host} is not "
            "this machine, so segstream cannot start it; check the address in the settings"
        )
    pid = _our_pid(service)
    if pid is None:
        return False
    echo(f"{service.name}: pid {pid} from an earlier start does not answer yet; waiting for it")
    timeout = KAFKA_START_TIMEOUT_S if service.name == "kafka" else REDIS_START_TIMEOUT_S
    _wait_until_answering(service, lambda: _alive(pid), timeout, time.monotonic(), ours=False)
    echo(f"{service.name}: {service.address} answers (pid {pid})")
    return True


def _needs_start(service: _Service, ports: list[int], echo: Echo) -> bool:
    """False if the service answers already (see ``_reuse``); else True once its
    ``ports`` are known to be free for a new server."""
    if _reuse(service, echo):
        return False
    _require_free_ports(service, ports)
    return True


def _require_free_ports(service: _Service, ports: list[int]) -> None:
    """Refuse early, with a clear reason, when the server could not bind its ports."""
    for port in ports:
        if _listening(service.host, port):
            raise ServiceError(
                f"port {port} on {service.host} is taken by a process that is not a working "
                f"{service.name} server; stop it or choose another port in the settings"
            )


def _is_local_host(host: str) -> bool:
    """True if ``host`` is an address of this machine (a socket can be bound to it)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return False
    for family, kind, _, _, address in infos:
        with socket.socket(family, kind) as probe:
            try:
                probe.bind((address[0], 0))
                return True
            except OSError:
                continue
    return False


def _listening(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _require_tool(name: str, what: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ServiceError(f"`{name}` is not on PATH; install {what} and run this again")
    return path


def _start(service: _Service, command: list[str], timeout_s: float, label: str, echo: Echo) -> None:
    """Start a server in its own session (it outlives the CLI) and wait until it answers."""
    service.log_file.parent.mkdir(parents=True, exist_ok=True)
    service.pid_file.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    _rotate(service.log_file)
    with service.log_file.open("ab") as log:
        log.write(f"\n==== segstream: starting {label} at {time.ctime()} ====\n".encode())
        log.flush()
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=service.pid_file.parent,
        )
    service.pid_file.write_text(f"{process.pid}\n")
    _wait_until_answering(service, lambda: process.poll() is None, timeout_s, started, echo=echo)
    echo(
        f"{service.name}: started {label} on {service.address} in "
        f"{time.monotonic() - started:.1f} s (pid {process.pid}, log {service.log_file})"
    )


def _rotate(path: Path, keep_bytes: int = LOG_KEEP_BYTES) -> None:
    """Move a log past ``keep_bytes`` to ``<name>.1`` (replacing the older one), so a
    server's log, appended to at every start, stays bounded."""
    try:
        if path.stat().st_size > keep_bytes:
            path.replace(path.with_name(path.name + ".1"))
    except FileNotFoundError:
        pass


def _wait_until_answering(
    service: _Service,
    alive: Callable[[], bool],
    timeout_s: float,
    started: float,
    ours: bool = True,
    echo: Echo | None = None,
) -> None:
    """Poll until the service answers; raise with its log if it dies or takes too long.

    A server this call started (``ours``) is stopped on timeout, so no half-started
    broker is left behind; one from an earlier ``up`` is left for ``down``. Every
    PROGRESS_EVERY_S the wait is reported to ``echo``, with the broker's log-loading
    progress when its log shows it.
    """
    told = started
    while not service.answers():
        if echo is not None and time.monotonic() - told >= PROGRESS_EVERY_S:
            told = time.monotonic()
            loaded = _logs_loaded(service.log_file)
            echo(
                f"{service.name}: not answering yet after {told - started:.0f} s"
                + (f" ({loaded} partition logs loaded)" if loaded else "")
            )
        if not alive():
            service.pid_file.unlink(missing_ok=True)
            raise ServiceError(
                f"{service.name} exited while starting; last lines of {service.log_file}:\n"
                f"{_tail_file(service.log_file)}"
            )
        if time.monotonic() - started > timeout_s:
            if ours:
                _stop(service, lambda _: None)
            what = "was stopped" if ours else "still runs; `segstream services down` stops it"
            raise ServiceError(
                f"{service.name} did not answer on {service.address} within {timeout_s:.0f} s "
                f"and {what}; last lines of {service.log_file}:\n"
                f"{_tail_file(service.log_file)}"
            )
        time.sleep(POLL_INTERVAL_S)


def _stop(service: _Service, echo: Echo) -> None:
    """SIGTERM the process of our pid file, SIGKILL it after STOP_TIMEOUT_S."""
    pid = _read_pid(service.pid_file) if service.local else None
    if pid is None:
        echo(f"{service.name}: nothing started by segstream on {service.address}")
        return
    if not _alive(pid):
        service.pid_file.unlink(missing_ok=True)
        echo(f"{service.name}: pid {pid} is gone; removed its stale pid file")
        return
    if not _is_ours(pid, service.mark):
        service.pid_file.unlink(missing_ok=True)
        echo(f"{service.name}: pid {pid} is now another program; removed the pid file only")
        return
    started = time.monotonic()
    _signal(pid, signal.SIGTERM)
    if not _wait_gone(pid, STOP_TIMEOUT_S):
        echo(f"{service.name}: pid {pid} ignored SIGTERM for {STOP_TIMEOUT_S:.0f} s; killing it")
        _signal(pid, signal.SIGKILL)
        _wait_gone(pid, 5.0)
    service.pid_file.unlink(missing_ok=True)
    echo(f"{service.name}: stopped pid {pid} in {time.monotonic() - started:.1f} s")


def _state(service: _Service) -> ServiceState:
    answering = service.answers()
    pid = _our_pid(service)
    if answering and pid:
        detail = f"log {service.log_file}"
    elif answering:
        detail = "not started by segstream"
    elif pid:
        detail = f"alive but not answering (starting or stuck?), log {service.log_file}"
    else:
        detail = "not running"
    if answering and service.describe is not None:
        detail = f"{service.describe()}, {detail}"
    return ServiceState(service.name, service.address, answering, pid, detail)


def _our_pid(service: _Service) -> int | None:
    """The pid from our pid file if that process is alive and still the one we started."""
    pid = _read_pid(service.pid_file) if service.local else None
    if pid is None or not _alive(pid) or not _is_ours(pid, service.mark):
        return None
    return pid


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _alive(pid: int) -> bool:
    """True if pid runs. An exited child of ours is reaped, else it lingers as a zombie."""
    if _reap(pid):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if _is_defunct(pid):
        _reap(pid)  # it may have exited since the first try
        return False
    return True


def _reap(pid: int) -> bool:
    """True if pid was our child and has exited (and is now reaped)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == pid


def _is_defunct(pid: int) -> bool:
    """True once every thread has exited and only the exit status is left.

    The state letter alone is not enough: a JVM's main thread ends first, after which
    /proc/<pid>/stat shows Z while the shutdown threads still run and hold the ports.
    """
    proc = Path(f"/proc/{pid}")
    try:
        state = (proc / "stat").read_text().rpartition(")")[2].split()[:1]
        threads = [t for t in os.listdir(proc / "task") if t != str(pid)]
    except OSError:
        return False
    return state == ["Z"] and not threads


def _is_ours(pid: int, mark: str) -> bool:
    """Check the command line, so a recycled pid never gets a signal from us."""
    return mark in _command_line(pid)


def _command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return raw.replace(b"\0", b" ").decode(errors="replace")
    except FileNotFoundError:
        pass
    except OSError:
        return ""
    if Path("/proc/self").exists():
        return ""  # Linux, and the process is gone
    result = subprocess.run(  # no /proc (macOS): ask ps
        ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, check=False
    )
    return result.stdout


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise ``up``/``down`` of one service, so concurrent runs start it only once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(
    command: list[str], env: dict[str, str] | None, timeout_s: float
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion, stdout and stderr together."""
    try:
        return subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ServiceError(
            f"`{' '.join(command[:3])} ...` did not finish in {timeout_s:.0f} s"
        ) from exc


def _run_checked(command: list[str], failure: str, timeout_s: float) -> None:
    result = _run(command, None, timeout_s)
    if result.returncode != 0:
        raise ServiceError(
            f"{failure} (exit code {result.returncode}):\n{_tail_text(result.stdout)}"
        )


def _tail_text(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


_LOGS_LOADED = re.compile(rb"\((\d+/\d+) completed in ")


def _logs_loaded(path: Path, window: int = 64 * 1024) -> str | None:
    """The broker's last "loaded N/M partition logs" count in the end of its log.

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile(suffix=".log") as f:
    ...     _ = f.write(b"Completed load of Log(...) in 9ms (11023/16076 completed in /d)")
    ...     f.flush()
    ...     _logs_loaded(Path(f.name))
    '11023/16076'
    """
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, 2) - window))
            found = _LOGS_LOADED.findall(f.read())
    except OSError:
        return None
    return found[-1].decode() if found else None


def _tail_file(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return _tail_text(path.read_text(errors="replace"), lines)
    except OSError:
        return "(no log)"
