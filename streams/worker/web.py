"""The worker's HTTP API (Faust web, aiohttp underneath).

=======================================================  ==========================
``GET /health``                                          the process is alive
``GET /ready``                                           Kafka and Redis answer,
                                                         input partitions are
                                                         assigned and no clock of
                                                         theirs is ahead of wall
                                                         time: 200, else 503 with
                                                         the reasons
``GET /customers/{id}``                                  the customer look-up (as
                                                         ``segstream customer --json``)
``DELETE /customers/{id}``                               erase the customer
``GET /segments``                                        every segment and its size
``GET /segments/{dimension}/{segment}/members``          members, paged (``cursor``,
                                                         ``count``; ``SSCAN``)
``GET /segments/{dimension}/{segment}/members.csv``      every member, as CSV (read and
                                                         sent in pages)
``GET /metrics``                                         Prometheus text format
``GET /dashboard``, ``GET /static/{file}``               the dashboard page and its
                                                         files (no data in them)
``GET /api/status``                                      counters, per-partition lag,
                                                         freshness, clocks, stalls
``GET /api/sizes?count=``                                segment sizes over time (the
                                                         last ``count`` records)
``GET /api/sizes?since=&every=&dimension=&segment=``     segment sizes over a window of
                                                         wall time, one point per
                                                         ``every``, and the change
``GET /api/history?since=&every=``                       the workers' throughput, lag
                                                         and freshness over a window of
                                                         wall time, one point per
                                                         ``every``
``GET /api/report?since=&dimension=&sample=``            the segment report (size,
                                                         share, change, entries, exits,
                                                         conversion, revenue, CLV,
                                                         P(alive), engagement, flags)
``GET /api/flows?window=``                               segment flows in a window
``GET /api/deadletters?since=&limit=``                   dead-letter reasons ranked, each
                                                         with an example (the last
                                                         records of each partition)
``GET /api/vocabulary``                                  descriptions of the behaviour
                                                         clusters and custom segments
``GET /api/actions?since=&until=``                      retention-action uplift (numbers)
``GET /api/value``                                       the value model, the value
                                                         segments' sizes, and P(alive),
                                                         CLV deciles and the BG/NBD fit
                                                         over a sample of buyers
=======================================================  ==========================

Every endpoint but ``/health``, ``/ready``, ``/dashboard`` and ``/static/*`` requires
``Authorization: Bearer <token>`` when ``SEGSTREAM_API_TOKEN`` is set, and answers 401
otherwise. Without a token the API is open, and the worker logs a warning at start. The
dashboard page takes the token from ``?token=`` (or asks for it) and sends it as the
bearer token to ``/api/*``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import faust
from aiohttp import web as aioweb
from faust.web import Request, Response, View

from segmenters.actions.uplift import parse_when
from segmenters.clv import day_of
from segmenters.clv.distribution import distribution, value_sizes
from segmenters.clv.model import ClvModel
from segmenters.contract import Erasure
from segmenters.deadletters import Letter, parse_since, rank
from segmenters.eventtime import clock_fault, iso_utc, span
from segmenters.reports import MAX_POINTS, parse_span
from streams.kafka.deadletters import read_recent
from streams.kafka.topics import DEADLETTER, ERASED, TOMBSTONED
from streams.settings import Settings
from streams.store import StateStore
from streams.store.clocks import load_watermarks
from streams.store.clv import buyer_summaries, load_clv_model
from streams.store.erase import EraseConflict, erase_async
from streams.store.queries import ReadModel, lookup_clock
from streams.worker.metrics import CONTENT_TYPE_LATEST, Metrics

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 2.0
MAX_PAGE = 1000
DEFAULT_PAGE = 100
STATIC = Path(__file__).resolve().parents[1] / "static"
#: The files ``/static/{name}`` serves, and their content types (nothing else is served).
STATIC_FILES = {
    "dashboard.js": "application/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "chart.umd.min.js": "application/javascript; charset=utf-8",
}
#: The page may load and call only its own origin: no request leaves the worker's host.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
DEFAULT_SIZES = 1440
MAX_SIZES = 10080
#: ``/api/value`` scores a uniform sample of at most this many buyers ...
VALUE_SAMPLE = 2_000
#: ... and reuses it this long (per model version): a dashboard poll costs no scan.
VALUE_CACHE_S = 60.0
#: Members per segment ``/api/report`` reads unless asked (at most SEGSTREAM_REPORT_SAMPLE).
REPORT_SAMPLE = 1_000
#: ``/api/deadletters`` ranks at most the last this many records of each partition ...
DEADLETTER_SCAN = 2_000
#: ... read at most this often (in a thread: the Kafka client blocks).
DEADLETTER_CACHE_S = 10.0
MAX_DEADLETTER_KINDS = 100
#: Members per SSCAN page of ``members.csv``.
CSV_PAGE = 1_000


@dataclass
class WebContext:
    """What the views need from the worker, passed in (no globals)."""

    settings: Settings
    store: StateStore
    #: Input partitions this worker owns.
    assigned: Callable[[], Iterable[int]]
    #: Raises if Kafka does not answer.
    kafka_probe: Callable[[], Awaitable[None]]
    #: Sends the erase tombstone and waits for the broker's acknowledgement.
    send_tombstone: Callable[[str], Awaitable[None]]
    #: Held while erasing, so no batch of the worker runs in between (may be None).
    lock: asyncio.Lock | None = None
    #: The worker's metrics (``/metrics``, ``/api/status``); None: those answer 503.
    metrics: Metrics | None = None
    #: Owned partitions -> their clocks; a clock too far ahead of wall time makes
    #: ``/ready`` fail (None: not checked).
    clocks: Callable[[Iterable[int]], dict[int, float]] | None = None
    #: The uplift report for a window of decision times (``since``, ``until``: epoch
    #: seconds or None); None: no actions in this worker (``/api/actions`` gives no rows).
    actions: Callable[[float | None, float | None], Awaitable[dict[str, Any]]] | None = None
    #: The segments' context now (custom segments' descriptions); None: not known here.
    context: Callable[[], Any] | None = None

    @cached_property
    def reads(self) -> ReadModel:
        """The read model on the worker's Redis client (look-ups, sizes, members, flows)."""
        return ReadModel.of(self.store.client, self.settings)


@dataclass
class ValueSample:
    """The last ``/api/value`` figures of the sampled buyers, kept per model version."""

    version: int | None = None
    at: float = 0.0
    figures: dict[str, Any] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def figures_of(
        self, ctx: WebContext, model: ClvModel, now: Callable[[], float] = time.monotonic
    ) -> dict[str, Any]:
        """The figures of ``model`` on a sample of buyers, at most ``VALUE_CACHE_S`` old:
        one poll at a time computes them (the scan and the scoring in a thread)."""
        async with self.lock:
            fresh = self.version == model.version and now() - self.at < VALUE_CACHE_S
            if self.figures is None or not fresh:
                self.figures = await value_figures(ctx, model)
                self.version, self.at = model.version, now()
            return self.figures


async def value_figures(ctx: WebContext, model: ClvModel) -> dict[str, Any]:
    """P(alive), CLV deciles and the fit table of a uniform sample of stored buyers, each
    with T counted to their partition's clock day, as the look-up counts it."""
    settings = ctx.settings
    marks = await load_watermarks(ctx.store.client, settings.key_prefix)
    wall = time.time()
    days: dict[int, int] = {}
    for p in range(settings.topic_partitions):
        clock = lookup_clock(
            marks, p, lateness=settings.allowed_lateness_s, mode=settings.clock, wall=wall
        )
        if clock is not None:
            days[p] = day_of(clock)

    def run() -> dict[str, Any]:
        summaries = buyer_summaries(settings, days.__getitem__, sample=VALUE_SAMPLE) if days else []
        figures = distribution(summaries, model, horizon_days=settings.clv_horizon_days)
        return {**figures.as_dict(), "computed_at": wall}

    return await asyncio.to_thread(run)


@dataclass
class ReportCache:
    """The last ``/api/report`` per query, reused ``VALUE_CACHE_S``: a dashboard poll
    costs no scan of the members."""

    docs: dict[Any, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def get(
        self,
        key: Any,
        compute: Callable[[], Awaitable[dict[str, Any]]],
        now: Callable[[], float] = time.monotonic,
    ) -> dict[str, Any]:
        async with self.lock:
            hit = self.docs.get(key)
            if hit is None or now() - hit[0] >= VALUE_CACHE_S:
                self.docs = {k: v for k, v in self.docs.items() if now() - v[0] < VALUE_CACHE_S}
                hit = self.docs[key] = (now(), await compute())
            return hit[1]


@dataclass
class DeadLetterCache:
    """The last read of the dead-letter topic's newest records, reused
    ``DEADLETTER_CACHE_S``: dashboard polls cost one bounded read per 10 s."""

    letters: list[Letter] = field(default_factory=list)
    at: float | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def recent(
        self, settings: Settings, now: Callable[[], float] = time.monotonic
    ) -> list[Letter]:
        async with self.lock:
            if self.at is None or now() - self.at >= DEADLETTER_CACHE_S:
                self.letters = await asyncio.to_thread(read_recent, settings, DEADLETTER_SCAN)
                self.at = now()
            return self.letters


def deadletter_report(letters: list[Letter], since: float | None, limit: int) -> dict[str, Any]:
    """``/api/deadletters``: the reason kinds since ``since``, most frequent first."""
    rows = rank(letters, since=since)
    return {
        "since": since,
        "scanned": len(letters),
        "scan_limit": DEADLETTER_SCAN,
        "total": sum(r.count for r in rows),
        "kinds": [r.to_json() for r in rows[:limit]],
        "more_kinds": max(len(rows) - limit, 0),
    }


def vocabulary_doc(model: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    """Descriptions by segment (``behaviour``: the published cluster model's words for
    each cluster) and by dimension (a custom segment's description and rule)."""
    snapshot = (model or {}).get("model") or {}
    clusters = {
        f"cluster_{c['id']}": str(c.get("description") or "") for c in snapshot.get("clusters", [])
    }
    custom = getattr(context, "custom", None)
    dimensions = {
        r.dimension: {"description": r.description, "rule": r.rule}
        for r in (custom.rules if custom is not None else ())
    }
    return {
        "segments": {"behaviour": clusters} if clusters else {},
        "dimensions": dimensions,
        "model_version": snapshot.get("version"),
    }


def csv_cell(text: str) -> str:
    """A CSV field (RFC 4180 quoting); a leading ``=``, ``+``, ``@`` or ``-`` gets a
    ``'`` so that a spreadsheet does not run the id as a formula.

    >>> csv_cell("c-1"), csv_cell("a,b"), csv_cell("=1+1")
    ('c-1', '"a,b"', "'=1+1")
    """
    if text[:1] in ("=", "+", "@", "-", "\t", "\r"):
        text = "'" + text
    if any(ch in text for ch in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def history_params(query: Any) -> tuple[float, float | None] | str:
    """(window, every) of ``/api/sizes?since=&every=`` (and ``/api/history``) in seconds,
    or why invalid.

    >>> history_params({"since": "7d", "every": "1h"}), history_params({"since": "1h"})
    ((604800.0, 3600.0), (3600.0, None))
    >>> history_params({"since": "7d", "every": "1s"})
    'every: more than 5000 points; choose a larger step'
    """
    window = parse_span(query.get("since") or "")
    if window is None:
        return "since must be a duration like 30m, 12h or 7d"
    every = None
    if query.get("every"):
        every = parse_span(query.get("every"))
        if every is None:
            return "every must be a duration like 1m, 1h or 1d"
        if window / every > MAX_POINTS:
            return f"every: more than {MAX_POINTS} points; choose a larger step"
    return window, every


def bearer_ok(header: str | None, token: str | None) -> bool:
    """True if no token is required, or ``header`` is ``Bearer <token>``.

    >>> bearer_ok(None, None), bearer_ok("Bearer s3cret", "s3cret"), bearer_ok("Bearer x", "s3cret")
    (True, True, False)
    >>> bearer_ok(None, "s3cret"), bearer_ok("Basic s3cret", "s3cret")
    (False, False)
    """
    if token is None:
        return True
    scheme, _, value = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), token.encode())


def page_params(query: Any) -> tuple[int, int] | str:
    """(cursor, count) from the query string, or the reason they are invalid.

    >>> page_params({}), page_params({"cursor": "17", "count": "5"})
    ((0, 100), (17, 5))
    >>> page_params({"count": "0"})
    'count must be an integer from 1 to 1000'
    """
    try:
        cursor = int(query.get("cursor") or 0)
    except ValueError:
        return "cursor must be a non-negative integer"
    if cursor < 0:
        return "cursor must be a non-negative integer"
    try:
        count = int(query.get("count") or DEFAULT_PAGE)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_PAGE:
        return f"count must be an integer from 1 to {MAX_PAGE}"
    return cursor, count


def report_window(query: Any) -> tuple[float | None, float | None] | str:
    """(since, until) of ``/api/actions`` as epoch seconds, or why they are invalid.

    >>> report_window({}), report_window({"since": "2026-11-01", "until": "2026-11-01"})
    ((None, None), (1793491200.0, 1793577600.0))
    >>> report_window({"since": "yesterday"})
    "since: 'yesterday' is not an ISO-8601 date or datetime (2026-11-01, 2026-11-01T09:30Z)"
    """
    bounds: list[float | None] = []
    for name in ("since", "until"):
        text = query.get(name) or ""
        try:
            bounds.append(parse_when(text, end=name == "until") if text.strip() else None)
        except ValueError as exc:
            return f"{name}: {exc}"
    since, until = bounds
    if since is not None and until is not None and until <= since:
        return "until must be after since"
    return since, until


def kafka_probe_for(app: faust.App, settings: Settings) -> Callable[[], Awaitable[None]]:
    """A Kafka probe: a metadata request on the worker's producer connection.

    Falls back to a TCP connection to the bootstrap address while the producer is not
    started (or if the client library's layout changes).
    """

    async def probe() -> None:
        producer = getattr(getattr(app, "_producer", None), "_producer", None)
        client = getattr(producer, "client", None)
        if client is not None and hasattr(client, "fetch_all_metadata"):
            await client.fetch_all_metadata()
            return
        host, port = settings.kafka_host_port
        _, writer = await asyncio.open_connection(host, port)
        writer.close()
        await writer.wait_closed()

    return probe


def tombstone_sender(app: faust.App, settings: Settings) -> Callable[[str], Awaitable[None]]:
    """Send ``key=customer_id, value=None`` to the compacted ``customers.erased`` topic
    (and to ``segments.features``, which drops the customer's vectors)."""
    topics = [settings.topic(name) for name in TOMBSTONED]

    async def send(customer_id: str) -> None:
        key = Erasure(customer_id=customer_id).key()
        for topic in topics:
            await app.producer.send_and_wait(
                topic, key, None, partition=None, timestamp=None, headers=None
            )

    return send


def register_web(app: faust.App, ctx: WebContext) -> None:
    """Add the API's views to the app's web server."""
    settings = ctx.settings
    token = settings.api_token.get_secret_value() if settings.api_token else None
    reads = ctx.reads
    if settings.web_enabled and not token:
        log.warning(
            "SEGSTREAM_API_TOKEN is not set: the HTTP API on %s:%d (customer look-ups, erase) "
            "is open to anyone who can reach it",
            settings.web_host,
            settings.web_port,
        )

    class Protected(View):
        """Requires the bearer token (when one is configured)."""

        async def dispatch(self, request: Any) -> Any:
            if not bearer_ok(request.headers.get("Authorization"), token):
                return self.error(
                    401,
                    "missing or wrong bearer token",
                    headers={"WWW-Authenticate": 'Bearer realm="segstream"'},
                )
            return await super().dispatch(request)

    @app.page("/health", name="segstream.health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok", "host": socket.gethostname()})

    @app.page("/metrics", name="segstream.metrics")
    class PrometheusMetrics(Protected):
        async def get(self, request: Request) -> Response:
            if ctx.metrics is None:
                return self.error(503, "metrics are not collected by this process")
            return self.bytes(
                ctx.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
            )

    @app.page("/dashboard", name="segstream.dashboard")
    class Dashboard(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(
                (STATIC / "dashboard.html").read_bytes(),
                headers={"Content-Type": "text/html; charset=utf-8", **PAGE_HEADERS},
            )

    @app.page("/static/{name}", name="segstream.static")
    class Static(View):
        async def get(self, request: Request, name: str) -> Response:
            if name not in STATIC_FILES:
                return self.error(404, f"no file {name!r}")
            return self.bytes(
                (STATIC / name).read_bytes(),
                headers={"Content-Type": STATIC_FILES[name], **PAGE_HEADERS},
            )

    @app.page("/api/status", name="segstream.api.status")
    class Status(Protected):
        async def get(self, request: Request) -> Response:
            if ctx.metrics is None:
                return self.error(503, "metrics are not collected by this process")
            return self.json(ctx.metrics.refresh())

    @app.page("/api/sizes", name="segstream.api.sizes")
    class Sizes(Protected):
        async def get(self, request: Request) -> Response:
            if request.query.get("since"):
                window = history_params(request.query)
                if isinstance(window, str):
                    return self.error(400, window)
                since, every = window
                return self.json(
                    await reads.history(
                        since,
                        time.time(),
                        every=every,
                        dimension=request.query.get("dimension") or None,
                        segment=request.query.get("segment") or None,
                    )
                )
            try:
                count = int(request.query.get("count") or DEFAULT_SIZES)
            except ValueError:
                count = 0
            if not 1 <= count <= MAX_SIZES:
                return self.error(400, f"count must be an integer from 1 to {MAX_SIZES}")
            return self.json(await reads.sizes(count))

    @app.page("/api/history", name="segstream.api.history")
    class History(Protected):
        async def get(self, request: Request) -> Response:
            query = {
                "since": request.query.get("since") or "1h",
                "every": request.query.get("every"),
            }
            window = history_params(query)
            if isinstance(window, str):
                return self.error(400, window)
            since, every = window
            return self.json(await reads.ops(since, time.time(), every=every))

    @app.page("/api/flows", name="segstream.api.flows")
    class Flows(Protected):
        async def get(self, request: Request) -> Response:
            window = parse_window(request.query.get("window") or "1h")
            if window is None:
                return self.error(
                    400, "window must be seconds or a number with s, m, h or d, up to 7d"
                )
            return self.json(await reads.flows(window, time.time()))

    @app.page("/api/actions", name="segstream.api.actions")
    class Actions(Protected):
        async def get(self, request: Request) -> Response:
            window = report_window(request.query)
            if isinstance(window, str):
                return self.error(400, window)
            since, until = window
            if ctx.actions is None:
                return self.json(
                    {
                        "since": since,
                        "until": until,
                        "min_group": settings.uplift_min_group,
                        "currency": settings.currency,
                        "rows": [],
                    }
                )
            return self.json(await ctx.actions(since, until))

    report_cache = ReportCache()

    @app.page("/api/report", name="segstream.api.report")
    class Report(Protected):
        async def get(self, request: Request) -> Response:
            window = parse_span(request.query.get("since") or "7d")
            if window is None:
                return self.error(400, "since must be a duration like 30m, 12h or 7d")
            try:
                sample = int(
                    request.query.get("sample") or min(REPORT_SAMPLE, settings.report_sample)
                )
            except ValueError:
                sample = 0
            if not 1 <= sample <= settings.report_sample:
                return self.error(
                    400, f"sample must be an integer from 1 to {settings.report_sample}"
                )
            dimension = request.query.get("dimension") or None
            doc = await report_cache.get(
                (window, dimension, sample),
                lambda: reads.report(window, time.time(), dimension=dimension, sample=sample),
            )
            return self.json({**doc, "currency": settings.currency})

    value_sample = ValueSample()

    @app.page("/api/value", name="segstream.api.value")
    class Value(Protected):
        async def get(self, request: Request) -> Response:
            model = await load_clv_model(ctx.store.client, settings.key_prefix)
            segments = value_sizes(await reads.segment_sizes())
            if model is None:
                figures: dict[str, Any] = {
                    "customers": 0,
                    "horizon_days": settings.clv_horizon_days,
                    "p_alive": None,
                    "clv_deciles": None,
                    "fit": None,
                    "computed_at": None,
                }
            else:
                figures = await value_sample.figures_of(ctx, model)
            body = {
                "model": None if model is None else model.model_dump(),
                "segments": segments,
                "currency": settings.currency,
            }
            return self.json({**body, **figures})

    @app.page("/ready", name="segstream.ready")
    class Ready(View):
        async def get(self, request: Request) -> Response:
            ready, body = await readiness(ctx)
            return self.json(body, status=200 if ready else 503)

    @app.page("/customers/{customer_id}", name="segstream.customer")
    class Customer(Protected):
        async def get(self, request: Request, customer_id: str) -> Response:
            view = await reads.customer(customer_id, activity=True)
            if view is None:
                return self.error(404, f"no state for customer {customer_id!r}")
            return self.json(view)

        async def delete(self, request: Request, customer_id: str) -> Response:
            try:
                if ctx.lock is not None:
                    async with ctx.lock:
                        result = await erase_async(ctx.store.client, settings, customer_id)
                        ctx.store.forget([customer_id])
                else:
                    result = await erase_async(ctx.store.client, settings, customer_id)
                    ctx.store.forget([customer_id])
            except EraseConflict as exc:
                return self.error(409, str(exc))
            await ctx.send_tombstone(customer_id)
            log.info("erased customer %s (%d keys)", customer_id, result.keys_deleted)
            return self.json({**result.to_json(), "tombstone": settings.topic(ERASED)})

    @app.page("/segments", name="segstream.segments")
    class Segments(Protected):
        async def get(self, request: Request) -> Response:
            sizes = await reads.segment_sizes()
            out = [
                {"dimension": dimension, "segment": segment, "size": size}
                for (dimension, segment), size in sizes.items()
            ]
            return self.json({"segments": out})

    # A segment may hold slashes (``DE/Bavaria``, ``25-34/female/high``), so it matches
    # ``.+``; a dimension never does.
    @app.page("/segments/{dimension}/{segment:.+}/members", name="segstream.members")
    class Members(Protected):
        async def get(self, request: Request, dimension: str, segment: str) -> Response:
            params = page_params(request.query)
            if isinstance(params, str):
                return self.error(400, params)
            cursor, count = params
            page = await reads.members(dimension, segment, cursor, count)
            if page is None:
                return self.error(404, f"no segment {dimension}/{segment}")
            return self.json(page)

    @app.page("/segments/{dimension}/{segment:.+}/members.csv", name="segstream.members.csv")
    class MembersCsv(Protected):
        async def get(self, request: Any, dimension: str, segment: str) -> Any:
            page = await reads.members(dimension, segment, 0, CSV_PAGE)
            if page is None:
                return self.error(404, f"no segment {dimension}/{segment}")
            name = f"{dimension}-{segment}".replace("/", "_").replace(":", "_")
            stream = aioweb.StreamResponse(
                headers={
                    "Content-Type": "text/csv; charset=utf-8",
                    "Content-Disposition": f'attachment; filename="{name}.csv"',
                    "Cache-Control": "no-store",
                }
            )
            await stream.prepare(request)
            await stream.write(b"customer_id,dimension,segment\r\n")
            tail = f",{csv_cell(dimension)},{csv_cell(segment)}\r\n"
            while True:  # one SSCAN page in memory at a time
                rows = "".join(csv_cell(m) + tail for m in page["members"])
                await stream.write(rows.encode())
                if page["next_cursor"] is None:
                    break
                page = await reads.members(dimension, segment, int(page["next_cursor"]), CSV_PAGE)
                if page is None:
                    break
            await stream.write_eof()
            return stream

    deadletters = DeadLetterCache()

    @app.page("/api/deadletters", name="segstream.api.deadletters")
    class DeadLetters(Protected):
        async def get(self, request: Request) -> Response:
            try:
                since = parse_since(request.query.get("since") or "24h", time.time())
            except ValueError as exc:
                return self.error(400, str(exc))
            try:
                limit = int(request.query.get("limit") or 20)
            except ValueError:
                limit = 0
            if not 1 <= limit <= MAX_DEADLETTER_KINDS:
                return self.error(400, f"limit must be an integer from 1 to {MAX_DEADLETTER_KINDS}")
            try:
                letters = await deadletters.recent(settings)
            except Exception as exc:  # Kafka down or no topic: the panel says so
                return self.error(503, f"cannot read the dead-letter topic: {exc}")
            return self.json(
                {**deadletter_report(letters, since, limit), "topic": settings.topic(DEADLETTER)}
            )

    @app.page("/api/vocabulary", name="segstream.api.vocabulary")
    class VocabularyView(Protected):
        async def get(self, request: Request) -> Response:
            context = ctx.context() if ctx.context is not None else None
            return self.json(vocabulary_doc(await reads.model(), context))


def parse_window(text: str) -> float | None:
    """Seconds in ``300``, ``5m``, ``1h`` or ``7d``; None if invalid or not 1 min to 7 days.

    >>> parse_window("5m"), parse_window("1h"), parse_window("90"), parse_window("8d")
    (300.0, 3600.0, 90.0, None)
    """
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    scale = units.get(text[-1:], None)
    number = text[:-1] if scale is not None else text
    try:
        value = float(number) * (scale or 1)
    except ValueError:
        return None
    if not 60 <= value <= 7 * 86400:
        return None
    return value


async def readiness(ctx: WebContext) -> tuple[bool, dict[str, Any]]:
    """Whether this worker can do its job now, and if not, why."""
    reasons: list[str] = []
    try:
        await asyncio.wait_for(ctx.reads.ping(), PROBE_TIMEOUT_S)
    except Exception as exc:  # any failure is a reason, never a crash of the probe
        reasons.append(f"redis: {type(exc).__name__}: {exc}".rstrip(": "))
    try:
        await asyncio.wait_for(ctx.kafka_probe(), PROBE_TIMEOUT_S)
    except Exception as exc:
        reasons.append(f"kafka: {type(exc).__name__}: {exc}".rstrip(": "))
    try:
        partitions = sorted(set(ctx.assigned()))
    except Exception as exc:
        partitions = []
        reasons.append(f"partitions: {type(exc).__name__}: {exc}".rstrip(": "))
    else:
        if not partitions:
            reasons.append("partitions: no input partition assigned to this worker")
    faults = clock_faults(ctx, partitions, time.time())
    reasons += faults.values()
    body: dict[str, Any] = {"ready": not reasons, "partitions": partitions}
    if faults:
        body["clock_ahead"] = sorted(faults)
    if reasons:
        body["reasons"] = reasons
    return not reasons, body


def clock_faults(ctx: WebContext, partitions: list[int], wall: float) -> dict[int, str]:
    """Owned partitions whose clock runs more than ``SEGSTREAM_MAX_FUTURE_S`` ahead of
    ``wall``, each with its reason for ``/ready``."""
    if ctx.clocks is None or not partitions:
        return {}
    limit = ctx.settings.max_future_s
    return {
        p: f"clock: partition {p} clock {iso_utc(clock)} is {span(clock - wall)} ahead of the "
        f"wall clock (limit SEGSTREAM_MAX_FUTURE_S={limit:g}); repair with "
        f"segstream clock reset {p} --to <ISO time>"
        for p, clock in sorted(ctx.clocks(partitions).items())
        if clock_fault(clock, wall, limit)
    }
