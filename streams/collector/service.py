"""The HTTP collector: websites put shop events on Kafka (``segstream collector``).

=====================================  ===================================================
``POST /v1/events``                    one event, ``{"batch": [...], "sent_at": ...}`` or
                                       a JSON array (at most ``max_batch`` events)
``GET /v1/pixel.gif?type=...``         one event in the query string; a 1x1 GIF
``POST /v1/identify``                  ``{"anonymous_id", "customer_id"}``: link them and
                                       move the anonymous history onto the customer
``GET /v1/segstream.js``               the browser snippet
``GET /demo``                          a demo shop page (``SEGSTREAM_COLLECTOR__DEMO``)
``GET /health``                        the process is alive
``GET /ready``                         Kafka and Redis answer (else 503 with ``reasons``)
=====================================  ===================================================

The ``/v1/events``, ``/v1/pixel.gif`` and ``/v1/identify`` endpoints check the Origin
against the allow-list (and answer CORS preflights), the write key (header
``X-Write-Key`` or ``?writeKey=``), the body size, the number of events and a token
bucket per client address, in that order, and answer refusals as JSON
``{"error": code, "message": ...}``.

An accepted event is answered 2xx only after Kafka acknowledged it (``acks=all``,
idempotent producer). Each event goes to its type's topic keyed by its ``customer_id``,
with the headers ``received_at`` (server time, ISO-8601) and ``site``. Events with only an
``anonymous_id`` go to customer ``anon:<anonymous_id>`` until the id is linked; see
docs/collector.md.

A wrong method on those paths (``GET /v1/events``) answers 405 with ``Allow``. Redis is
needed only for anonymous events and identify: while it does not answer, those get 503
with ``Retry-After`` (each such event ``failed``; identified events of the same batch go
on), and ``/ready`` says so.

Nothing identifying is logged: no customer ids, no addresses, no access log.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from aiokafka import AIOKafkaProducer

from streams.collector.guards import (
    RateLimiter,
    client_address,
    cors_decision,
    pseudonym,
    site_for_key,
)
from streams.collector.intake import (
    ANON_PREFIX,
    MAX_ID,
    Outcome,
    Prepared,
    RequestError,
    clock_skew,
    iso,
    prepare,
    query_to_event,
    republished,
    split_body,
    valid_id,
)
from streams.kafka.clients import aiokafka_kwargs
from streams.kafka.topics import TOPIC_OF_TYPE, ensure_topics
from streams.settings import Settings
from streams.store.clients import async_redis_client
from streams.store.identity import REDIS_DOWN, drop_history, link_customer, link_events, ping

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parents[1] / "static"
INGEST_PATHS = frozenset({"/v1/events", "/v1/pixel.gif", "/v1/identify"})
#: A transparent 1x1 GIF.
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
NO_STORE = {"Cache-Control": "no-store"}
#: Seconds a client should wait before retrying when Redis or Kafka did not answer.
RETRY_AFTER_S = 5
#: How long ``/ready`` and the start check wait for each service.
PROBE_TIMEOUT_S = 3.0


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {"error": code, "message": message}, status=status, headers={**NO_STORE, **(headers or {})}
    )


class Collector:
    """The collector's state: the producer, Redis, the rate limiter and counters."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cfg = settings.collector
        self.keys = {site: key.get_secret_value() for site, key in self.cfg.write_keys.items()}
        self.limiter = RateLimiter(self.cfg.rate_per_s, self.cfg.rate_burst, self.cfg.rate_clients)
        self.salt = secrets.token_bytes(16)
        self.topics = {t: settings.topic(name) for t, name in TOPIC_OF_TYPE.items()}
        self.counts: Counter[str] = Counter()
        self.producer: AIOKafkaProducer | None = None
        self.redis: Any = None  # an asyncio Redis client from streams.store.clients
        self._reporter: asyncio.Task[None] | None = None
        self.ttl = int(self.cfg.anonymous_ttl_s)

    # --- lifecycle -------------------------------------------------------------------
    async def start(self, _app: web.Application | None = None) -> None:
        self.producer = AIOKafkaProducer(
            **aiokafka_kwargs(self.settings),
            client_id=f"{self.settings.app_id}-collector",
            acks="all",
            enable_idempotence=True,
            linger_ms=self.cfg.linger_ms,
            request_timeout_ms=15000,
        )
        await self.producer.start()
        self.redis = async_redis_client(self.settings)
        self._reporter = asyncio.create_task(self._report())
        redis_down = await self._redis_problem()
        if redis_down:
            log.error(
                "Redis does not answer (%s): anonymous events and identify get 503 until it "
                "does; /ready says not ready",
                redis_down,
            )
        if not self.keys:
            log.warning(
                "SEGSTREAM_COLLECTOR__WRITE_KEYS is not set: anyone who can reach the "
                "collector can send events"
            )
        log.info(
            "collector on %s:%d: %d site(s), %d allowed origin(s)",
            self.cfg.host,
            self.cfg.port,
            len(self.keys),
            len(self.cfg.allowed_origins),
        )

    async def stop(self, _app: web.Application | None = None) -> None:
        if self._reporter is not None:
            self._reporter.cancel()
        if self.producer is not None:
            await self.producer.stop()  # delivers what is buffered
        if self.redis is not None:
            await self.redis.aclose()

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(60)
            if self.counts:
                log.info("collector last minute: %s", dict(sorted(self.counts.items())))
                self.counts.clear()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=self.cfg.max_body_bytes)
        app.router.add_post("/v1/events", self.events)
        app.router.add_get("/v1/pixel.gif", self.pixel)
        app.router.add_post("/v1/identify", self.identify)
        app.router.add_get("/v1/segstream.js", self.snippet)
        app.router.add_get("/health", self.health)
        app.router.add_get("/ready", self.ready)
        if self.cfg.demo:
            app.router.add_get("/demo", self.demo)
        app.on_startup.append(self.start)
        app.on_cleanup.append(self.stop)
        return app

    # --- protection ------------------------------------------------------------------
    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path not in INGEST_PATHS:
            passed: web.StreamResponse = await handler(request)
            return passed
        preflight = request.method == "OPTIONS"
        cors = cors_decision(
            request.headers.get("Origin"),
            self.cfg.allowed_origins,
            preflight=preflight,
            host=request.host,
        )
        headers = cors.headers
        try:
            if not cors.allowed:
                self.counts["refused:origin"] += 1
                raise RequestError(403, "origin_not_allowed", "this origin may not send events")
            if preflight:
                return web.Response(status=204, headers=headers)
            given = request.headers.get("X-Write-Key") or request.query.get("writeKey")
            site = site_for_key(given, self.keys)
            if site is None:
                self.counts["refused:write_key"] += 1
                raise RequestError(
                    401, "invalid_write_key", "missing or unknown write key (X-Write-Key)"
                )
            request["site"] = site
            response: web.StreamResponse = await handler(request)
        except RequestError as exc:
            self.counts[f"refused:{exc.code}"] += 1
            return _error(exc.status, exc.code, exc.message, {**headers, **exc.headers})
        except web.HTTPRequestEntityTooLarge:
            self.counts["refused:body_too_large"] += 1
            return _error(
                413,
                "body_too_large",
                f"the body is larger than {self.cfg.max_body_bytes} bytes",
                headers,
            )
        except web.HTTPMethodNotAllowed as exc:
            self.counts["refused:method"] += 1
            allow = ", ".join(sorted({*exc.allowed_methods, "OPTIONS"}))
            return _error(
                405,
                "method_not_allowed",
                f"{request.method} is not allowed on {request.path}; use {allow}",
                {**headers, "Allow": allow},
            )
        except REDIS_DOWN as exc:
            self.counts["failed:redis"] += 1
            return _error(
                503,
                "redis_unavailable",
                f"Redis does not answer ({type(exc).__name__}); retry later",
                {**headers, "Retry-After": str(RETRY_AFTER_S)},
            )
        except Exception:
            log.exception("request to %s failed", request.path)
            return _error(500, "internal", "internal error; retry later", headers)
        response.headers.update(headers)
        return response

    def _limit(self, request: web.Request, cost: int) -> None:
        client = client_address(
            request.remote,
            request.headers.get("X-Forwarded-For"),
            behind_proxy=self.cfg.behind_proxy,
        )
        wait = self.limiter.take(pseudonym(client, self.salt), cost, now=time.monotonic())
        if wait > 0:
            retry = max(1, int(wait + 0.999))
            raise RequestError(
                429,
                "rate_limited",
                f"too many events from this client; retry after {retry} s",
                {"Retry-After": str(retry)},
            )

    # --- ingest ----------------------------------------------------------------------
    async def ingest(
        self, items: list[Any], *, site: str, sent_at: str | None = None
    ) -> list[Outcome]:
        """Validate, resolve identities, produce, and await Kafka's acknowledgement."""
        assert self.producer is not None and self.redis is not None
        received = datetime.now(UTC)
        skew = clock_skew(sent_at, received)
        outcomes: list[Outcome | None] = [None] * len(items)
        accepted: list[Prepared] = []
        for i, item in enumerate(items):
            r = prepare(
                i,
                item,
                now=received,
                new_id=lambda: str(uuid.uuid4()),
                skew=skew,
                max_event_bytes=self.settings.max_event_bytes,
                max_future_s=self.settings.max_future_s,
            )
            if isinstance(r, Outcome):
                outcomes[i] = r
            else:
                accepted.append(r)
        anonymous = [p for p in accepted if p.anonymous_id is not None]
        if anonymous:
            try:
                linked = await link_events(
                    self.redis,
                    self.settings.key_prefix,
                    [(p.anonymous_id or "", orjson.dumps(p.event)) for p in anonymous],
                    keep=self.cfg.anonymous_history,
                    ttl=self.ttl,
                )
            except REDIS_DOWN as exc:  # anonymous events need Redis; the others go on
                reason = f"Redis does not answer ({type(exc).__name__}); retry"
                for p in anonymous:
                    outcomes[p.index] = Outcome(p.index, "failed", p.event_id, reason)
                accepted = [p for p in accepted if p.anonymous_id is None]
            else:
                for p, customer in zip(anonymous, linked, strict=True):
                    if customer:
                        p.event["customer_id"] = customer
        acked = await self._produce(
            [(p.event, self.topics[p.event["type"]]) for p in accepted],
            site=site,
            received=received,
        )
        for p, error in zip(accepted, acked, strict=True):
            if error is None:
                outcomes[p.index] = Outcome(p.index, "accepted", p.event_id)
            else:
                outcomes[p.index] = Outcome(p.index, "failed", p.event_id, error)
        done = [o for o in outcomes if o is not None]
        for o in done:
            self.counts[o.status] += 1
        return done

    async def _produce(
        self,
        events: list[tuple[dict[str, Any], str]],
        *,
        site: str,
        received: datetime,
        extra: list[tuple[str, bytes]] | None = None,
    ) -> list[str | None]:
        """Send each event keyed by its customer; per event None (acknowledged) or why not."""
        assert self.producer is not None
        headers = [("received_at", iso(received).encode()), ("site", site.encode())]
        headers += extra or []
        futures: list[Any] = []
        for event, topic in events:
            try:
                futures.append(
                    await self.producer.send(
                        topic,
                        value=orjson.dumps(event),
                        key=str(event["customer_id"]).encode(),
                        headers=headers,
                    )
                )
            except Exception as exc:  # noqa: BLE001 - reported per event
                futures.append(exc)
        pending = [f for f in futures if not isinstance(f, BaseException)]
        results = iter(await asyncio.gather(*pending, return_exceptions=True))
        out: list[str | None] = []
        for f in futures:
            result = f if isinstance(f, BaseException) else next(results)
            if isinstance(result, BaseException):
                out.append(f"not acknowledged by Kafka ({type(result).__name__}); retry")
            else:
                out.append(None)
        return out

    @staticmethod
    def _answer(outcomes: list[Outcome]) -> web.Response:
        n = Counter(o.status for o in outcomes)
        status = 503 if n["failed"] else (200 if n["accepted"] else 400)
        body = {
            "accepted": n["accepted"],
            "rejected": n["rejected"],
            "failed": n["failed"],
            "results": [o.to_json() for o in outcomes],
        }
        retry = {"Retry-After": str(RETRY_AFTER_S)} if n["failed"] else {}
        return web.json_response(body, status=status, headers={**NO_STORE, **retry})

    # --- endpoints -------------------------------------------------------------------
    async def events(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = split_body(raw, max_events=self.cfg.max_batch)
        self._limit(request, len(body.items))
        outcomes = await self.ingest(body.items, site=request["site"], sent_at=body.sent_at)
        return self._answer(outcomes)

    async def pixel(self, request: web.Request) -> web.Response:
        event = query_to_event({k: request.query[k] for k in request.query})
        self._limit(request, 1)
        outcomes = await self.ingest([event], site=request["site"])
        if outcomes[0].status == "accepted":
            return web.Response(body=GIF, content_type="image/gif", headers=NO_STORE)
        return self._answer(outcomes)

    async def identify(self, request: web.Request) -> web.Response:
        assert self.redis is not None
        raw = await request.read()
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise RequestError(400, "invalid_json", f"the body is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise RequestError(400, "invalid_body", "expected {anonymous_id, customer_id}")
        given_aid, given_customer = doc.get("anonymous_id"), doc.get("customer_id")
        if not valid_id(given_aid, limit=MAX_ID - len(ANON_PREFIX)):
            raise RequestError(400, "invalid_anonymous_id", "anonymous_id is missing or invalid")
        if not valid_id(given_customer) or str(given_customer).startswith(ANON_PREFIX):
            raise RequestError(400, "invalid_customer_id", "customer_id is missing or invalid")
        aid, customer = str(given_aid), str(given_customer)
        self._limit(request, 1)
        prefix = self.settings.key_prefix
        history = await link_customer(self.redis, prefix, aid, customer, ttl=self.ttl)
        moved: dict[str, dict[str, Any]] = {}
        for item in history:
            try:
                event = orjson.loads(item)
                moved.setdefault(str(event["event_id"]), republished(event, customer))
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue
        errors = await self._produce(
            [(e, self.topics[e["type"]]) for e in moved.values() if e.get("type") in self.topics],
            site=request["site"],
            received=datetime.now(UTC),
            extra=[("merged_from", f"{ANON_PREFIX}{aid}".encode())],
        )
        failed = sum(1 for e in errors if e is not None)
        if failed:
            self.counts["identify:failed"] += 1
            raise RequestError(
                503, "not_acknowledged", f"{failed} re-published event(s) not acknowledged; retry"
            )
        await drop_history(self.redis, prefix, aid)
        self.counts["identify"] += 1
        return web.json_response({"status": "linked", "republished": len(errors)}, headers=NO_STORE)

    async def snippet(self, request: web.Request) -> web.Response:
        return web.Response(
            body=(STATIC / "segstream.js").read_bytes(),
            content_type="application/javascript",
            charset="utf-8",
            headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"},
        )

    async def demo(self, request: web.Request) -> web.Response:
        return web.Response(
            body=(STATIC / "demo-shop.html").read_bytes(),
            content_type="text/html",
            charset="utf-8",
            headers={"Cache-Control": "no-cache"},
        )

    async def health(self, request: web.Request) -> web.Response:
        """Liveness only: the process answers. Load balancers should probe ``/ready``."""
        return web.json_response({"status": "ok"})

    async def ready(self, request: web.Request) -> web.Response:
        """200 when Kafka and Redis answer, else 503 with the ``reasons``."""
        reasons = [r for r in (await self._kafka_problem(), await self._redis_problem()) if r]
        return web.json_response(
            {"ready": not reasons, "reasons": reasons},
            status=503 if reasons else 200,
            headers=NO_STORE,
        )

    async def _redis_problem(self) -> str | None:
        try:
            assert self.redis is not None
            await asyncio.wait_for(ping(self.redis), PROBE_TIMEOUT_S)
        except Exception as exc:  # any failure is the reason
            return f"redis: {type(exc).__name__}: {exc}"
        return None

    async def _kafka_problem(self) -> str | None:
        try:
            assert self.producer is not None
            await asyncio.wait_for(self.producer.client.fetch_all_metadata(), PROBE_TIMEOUT_S)
        except Exception as exc:  # any failure is the reason
            return f"kafka: {type(exc).__name__}: {exc}"
        return None


def run(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM; buffered events are delivered before the exit."""
    logging.getLogger("kafka").setLevel(logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    ensure_topics(settings)
    collector = Collector(settings)
    web.run_app(
        collector.app(),
        host=settings.collector.host,
        port=settings.collector.port,
        access_log=None,  # an access log would hold client addresses
        print=None,
    )
