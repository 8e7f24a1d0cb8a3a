"""Settings of the HTTP collector (``segstream collector``): ``SEGSTREAM_COLLECTOR__*``.

>>> CollectorSettings().max_batch, CollectorSettings().max_body_bytes
(500, 524288)
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class CollectorSettings(BaseModel):
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
