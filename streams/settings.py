"""Runtime settings of segstream, from ``SEGSTREAM_*`` environment variables.

One frozen class, passed explicitly to everything that needs it (the Faust app, the
store, the CLI). Nested groups use ``__``: ``SEGSTREAM_JOURNEY__CART_ABANDON_MINUTES=45``.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from segmenters.config import (
    KEEP_PURCHASES_S,
    EngineConfig,
    InterestConfig,
    JourneyConfig,
    StateConfig,
    ValueConfig,
)


class CollectorSettings(BaseModel):
    """The HTTP collector (``segstream collector``): ``SEGSTREAM_COLLECTOR__*``.

    >>> CollectorSettings().max_batch, CollectorSettings().max_body_bytes
    (500, 524288)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8088, ge=1, le=65535)
    write_keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='Site -> write key, as JSON: \'{"shop-de": "k1"}\'. A request names its '
        "site by its key (header X-Write-Key or ?writeKey=). Empty: no key is asked for, and "
        "the collector warns at start.",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins (scheme://host[:port]) whose pages may send events, as JSON; "
        '["*"] allows every origin. A request with another Origin header gets 403.',
    )
    max_body_bytes: int = Field(512 * 1024, ge=1024, description="Larger bodies get 413.")
    max_batch: int = Field(500, ge=1, le=10_000, description="Most events in one request.")
    rate_per_s: float = Field(
        100.0, ge=0, description="Events per second per client address (token bucket); 0: off."
    )
    rate_burst: int = Field(
        1000, ge=1, description="Bucket size: events a client may send at once."
    )
    rate_clients: int = Field(100_000, ge=1, description="Client buckets kept in memory (LRU).")
    behind_proxy: bool = Field(
        False,
        description="Take the client address from the last X-Forwarded-For entry (set only "
        "behind a proxy that writes that header).",
    )
    anonymous_ttl_s: float = Field(
        30 * 86400.0,
        gt=0,
        description="How long an anonymous id's recent events and its link to a customer "
        "are kept after their last use.",
    )
    anonymous_history: int = Field(
        200, ge=0, description="Most recent events kept per anonymous id, re-published on identify."
    )
    linger_ms: int = Field(2, ge=0, description="Kafka producer linger (batching of requests).")
    demo: bool = Field(False, description="Also serve a demo shop page at /demo.")


class KafkaSecurity(BaseModel):
    """How clients authenticate to Kafka and encrypt the traffic: ``SEGSTREAM_KAFKA_SECURITY__*``.

    ``protocol`` is Kafka's ``security.protocol``; SASL protocols need ``username`` and
    ``password``; TLS protocols verify the broker against ``ca_file`` (else the system's
    CAs) and present ``cert_file``/``key_file`` if the broker wants client certificates.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SSL", "SASL_SSL"] = "PLAINTEXT"
    mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    username: str | None = None
    password: SecretStr | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    key_password: SecretStr | None = None
    check_hostname: bool = True

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @model_validator(mode="after")
    def _complete(self) -> KafkaSecurity:
        if self.sasl and (not self.username or self.password is None):
            raise ValueError(f"protocol {self.protocol} needs a username and a password")
        if not self.tls and (self.ca_file or self.cert_file or self.key_file):
            raise ValueError(
                f"ca_file/cert_file/key_file need protocol SSL or SASL_SSL, not {self.protocol}"
            )
        if self.key_file and not self.cert_file:
            raise ValueError("key_file needs cert_file")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SEGSTREAM_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
    )

    kafka_bootstrap: str = "127.0.0.1:9092"
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="redis:// or rediss:// (TLS); may carry user:password@ as well.",
    )
    kafka_security: KafkaSecurity = KafkaSecurity()
    redis_username: str | None = Field(None, description="Redis ACL user (else the URL's).")
    redis_password: SecretStr | None = Field(None, description="Its password (else the URL's).")
    redis_ca_file: Path | None = Field(None, description="CA bundle for a rediss:// server.")
    redis_cert_file: Path | None = Field(None, description="Client certificate (rediss://).")
    redis_key_file: Path | None = Field(None, description="Its private key (rediss://).")
    redis_cluster: bool = Field(
        False,
        description="The URL names one node of a Redis Cluster (the others are discovered). "
        "`segstream services up` then starts a local 3-master cluster on the URL's port and "
        "the next two.",
    )

    app_id: str = Field("segstream", description="Faust app id, also the consumer group.")
    topic_prefix: str = Field("", description="Prepended to every topic name.")
    key_prefix: str = Field("seg", description="Prepended to every Redis key.")
    topic_partitions: int = Field(4, ge=1)
    topic_replication: int = Field(1, ge=1)

    batch_size: int = Field(
        2000,
        ge=1,
        description="Most events per ingest batch: fetch rounds that arrive while the worker "
        "is busy are merged up to this (a round is never split; its size is set by "
        "SEGSTREAM_FETCH_PARTITION_BYTES); also per batch of a replay after Redis lost "
        "writes, and where whole-fetch delivery is off.",
    )
    batch_window_s: float = Field(
        0.05, gt=0, description="Longest wait to fill a batch where whole-fetch delivery is off."
    )
    fetch_partition_bytes: int = Field(
        16384,
        ge=1024,
        description="Most bytes fetched per partition per request: bounds how far the four "
        "input topics can run apart in a catch-up (see docs/design.md).",
    )
    commit_interval_s: float = Field(2.8, gt=0, description="How often offsets are committed.")
    session_timeout_s: float = Field(
        30.0,
        ge=6,
        description="How long the group waits for a silent worker before "
        "handing its partitions to others.",
    )
    max_event_bytes: int = Field(65536, ge=256, description="Larger messages are dead-lettered.")
    state_cache_size: int = Field(50000, ge=0, description="Customers kept in worker memory.")
    dedupe_retention_s: float = Field(
        30 * 86400,
        gt=0,
        description="How long a customer's applied event ids are kept after its last "
        "event: within it, an event produced again (a second replay) is not applied twice.",
    )

    clock: Literal["event", "live"] = Field(
        "event",
        description="event: a partition's clock is its watermark (replays give the same "
        "segments as living through them); live: it also follows wall time when idle.",
    )
    allowed_lateness_s: float = Field(5.0, ge=0, description="Clock = watermark - this.")
    max_future_s: float = Field(
        300.0,
        ge=0,
        description="Bounded event time: an event whose occurred_at is more than this ahead "
        "of its Kafka record timestamp (in live mode also of the wall clock) is "
        "dead-lettered, and the collector rejects it; a partition clock this far ahead of "
        "the wall clock is a fault (/ready, metrics, dashboard).",
    )
    timer_interval_s: float = Field(0.25, gt=0, description="How often due timers are scanned.")
    timer_batch: int = Field(1000, ge=1, description="Most timers fired per partition per scan.")
    rfm_refresh_s: float = Field(5.0, gt=0, description="How often RFM quantiles are refreshed.")

    rescore_per_s: float = Field(
        400,
        ge=0,
        description="Customers per partition per second re-evaluated against fresh "
        "RFM quantiles and cluster model (the rescoring sweep); 0 turns it off.",
    )
    rescore_pass_s: float = Field(
        30.0, gt=0, description="A new rescoring pass over a partition starts at most this often."
    )
    clusters: int = Field(6, ge=2, le=50, description="Behavioural clusters learned.")
    cluster_sample_percent: int = Field(
        5,
        ge=0,
        le=100,
        description="Share of event updates sent to the trainer (besides every customer the "
        "rescoring sweep visits).",
    )
    cluster_snapshot_s: float = Field(10.0, gt=0, description="How often the trainer publishes.")
    cluster_margin: float = Field(0.1, ge=0, lt=1, description="Hysteresis of cluster changes.")
    cluster_max_move: float = Field(
        0.01,
        ge=0,
        le=1,
        description="A new cluster snapshot must move fewer than this share of the trainer's "
        "recent customers to another cluster (0: nobody, 1: no limit); one that moves as many "
        "or more, or rewords a cluster, is held back.",
    )
    cluster_max_hold_s: float = Field(
        6 * 3600.0,
        ge=0,
        description="Longest a drifted cluster snapshot is held back before it is released "
        "in steps that each move fewer than SEGSTREAM_CLUSTER_MAX_MOVE of the customers "
        "(segments must not freeze for ever); 0 releases in steps at once.",
    )
    cluster_seed: int = 0
    features_min_move: float = Field(
        0.25,
        ge=0,
        description="A customer's vector goes to the trainer (segments.features) only when it "
        "moved this far (in the model's standard deviations) from the last one sent.",
    )
    features_memory: int = Field(
        200_000, ge=1, description="Customers whose last sent vector a worker remembers."
    )
    clv_sample: int = Field(
        200_000,
        ge=100,
        description="Most buyers the value models are fitted on (a uniform sample of them).",
    )
    clv_refit_s: float = Field(
        3600.0, gt=0, description="How often the value models (BG/NBD, Gamma-Gamma) are refitted."
    )
    clv_horizon_days: float = Field(
        365.0, gt=0, description="Horizon of expected orders and CLV, in days."
    )

    sizes_every_s: float = Field(60.0, gt=0, description="How often segment sizes are recorded.")
    sizes_keep: int = Field(
        10080,
        ge=10,
        description="Size records kept (a week at 1/min; about 4.5 MB a day with 100 "
        "segments, docs/reports.md).",
    )
    history_every_s: float = Field(
        10.0,
        gt=0,
        description="How often each worker records its operating figures (throughput, lag, "
        "freshness) for the dashboard's history.",
    )
    history_keep_s: float = Field(
        86400.0,
        ge=60,
        description="How long operating-figure records are kept (a day: about 1.2 MB per "
        "worker at 10 s, docs/state_format.md).",
    )
    report_over_broad_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="The segment report flags a targeting segment holding more than this "
        "share of its dimension's customers as over-broad.",
    )
    report_stale_days: float = Field(
        14.0, gt=0, description="The segment report flags a segment nobody entered for this long."
    )
    report_sample: int = Field(
        5000, ge=1, description="Members per segment the segment report reads (a sample above)."
    )
    stall_after_s: float = Field(
        60.0,
        gt=0,
        description="A partition with lag and no offset applied for this long is reported "
        "stalled (/metrics, dashboard).",
    )
    segments_file: Path | None = Field(
        None, description="TOML file of custom segments, reloaded when it changes."
    )

    actions_enabled: bool = Field(
        True, description="Decide retention actions in the pipeline (segment changes -> actions.*)."
    )
    actions_file: Path | None = Field(
        None,
        description="TOML retention policy (docs/actions.md), reloaded when it changes; "
        "unset: the packaged defaults (config/actions.toml).",
    )
    actions_keep_purchases_s: float = Field(
        KEEP_PURCHASES_S,
        ge=0,
        description="Purchases outside every conversion window are kept this long, for "
        "assignments that may still come: a customer's events are read from different "
        "topics, each at its own pace, so a late cart event can make a change older than "
        "a purchase already read.",
    )
    currency: str = Field(
        "EUR",
        pattern=r"^[A-Z]{3}$",
        description="ISO-4217 code of the shop's amounts: the uplift report's revenue is "
        "labelled with it (purchase totals are summed as sent, never converted).",
    )
    uplift_min_group: int = Field(
        30,
        ge=0,
        description="Uplift rows with fewer customers than this in either group (treated, "
        "control) show 'too few' instead of an interval.",
    )

    web_enabled: bool = True
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=1, le=65535)
    api_token: SecretStr | None = Field(
        None,
        description="Bearer token the worker's HTTP API requires (all but /health and "
        "/ready); unset: the API is open, and the worker warns at start.",
    )
    log_level: str = "info"

    cache_dir: Path = Field(Path.home() / ".cache" / "segstream")
    kafka_version: str = "3.9.1"
    kafka_heap: str = Field("512m", description="Java -Xmx of the local broker.")

    journey: JourneyConfig = JourneyConfig()
    #: The interest dimension's thresholds (``SEGSTREAM_INTEREST__MIN_SHARE``, ...).
    interest: InterestConfig = InterestConfig()
    state: StateConfig = StateConfig()
    #: The value dimension's thresholds (``SEGSTREAM_VALUE__CHURN_P_ALIVE``, ...).
    value: ValueConfig = ValueConfig()
    #: The HTTP collector for websites (``segstream collector``, streams/collector/).
    collector: CollectorSettings = CollectorSettings()

    @model_validator(mode="after")
    def _redis_tls(self) -> Settings:
        tls_files = self.redis_ca_file or self.redis_cert_file or self.redis_key_file
        if tls_files and urlparse(self.redis_url).scheme != "rediss":
            raise ValueError("redis_ca_file/redis_cert_file/redis_key_file need a rediss:// URL")
        return self

    @cached_property
    def engine(self) -> EngineConfig:
        return EngineConfig(
            journey=self.journey, state=self.state, interest=self.interest, value=self.value
        )

    @property
    def kafka_host_port(self) -> tuple[str, int]:
        first = self.kafka_bootstrap.split(",")[0].strip()
        if "://" in first:
            first = first.split("://", 1)[1]
        host, _, port = first.rpartition(":")
        return (host or "127.0.0.1"), int(port or 9092)

    @property
    def redis_host_port(self) -> tuple[str, int]:
        url = urlparse(self.redis_url)
        return url.hostname or "127.0.0.1", url.port or 6379

    def topic(self, name: str) -> str:
        """The full name of a topic: ``topic('events.cart')`` -> ``<prefix>events.cart``."""
        return f"{self.topic_prefix}{name}"
