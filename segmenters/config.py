"""Thresholds of the segmentation rules.

Pure configuration: the core receives it as an argument, never reads it from the
environment. ``streams.settings`` builds it from ``SEGSTREAM_JOURNEY__*`` variables.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class JourneyConfig(BaseModel):
    """Thresholds of the journey dimension (DESIGN.md section 4).

    >>> JourneyConfig().cart_abandon_minutes
    30.0
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    cart_abandon_minutes: float = Field(30.0, gt=0)
    at_risk_days: float = Field(30.0, gt=0)
    lapsed_days: float = Field(90.0, gt=0)
    repeat_orders: int = Field(2, ge=2)
    loyal_orders: int = Field(4, ge=2)

    @model_validator(mode="after")
    def _ordered(self) -> JourneyConfig:
        if self.lapsed_days <= self.at_risk_days:
            raise ValueError("lapsed_days must be greater than at_risk_days")
        if self.loyal_orders <= self.repeat_orders:
            raise ValueError("loyal_orders must be greater than repeat_orders")
        return self


class StateConfig(BaseModel):
    """Bounds that keep one customer's state small (target: well under 1 KB)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Half-life of the browse and cart-add counters, in days.
    decay_half_life_days: float = Field(7.0, gt=0)
    #: How many recent ``order_id`` values are remembered so an order counts once.
    recent_order_ids: int = Field(32, ge=1)
    #: How many categories the affinity map keeps (the least-seen is evicted).
    max_categories: int = Field(12, ge=1)
    #: How many recently bought skus are remembered (so a late cart addition stays out).
    recent_bought_skus: int = Field(16, ge=1)
    #: How many distinct skus a cart keeps (the oldest addition is evicted).
    max_cart_lines: int = Field(50, ge=1)


class EngineConfig(BaseModel):
    """Everything the pure core needs, in one frozen value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    journey: JourneyConfig = JourneyConfig()
    state: StateConfig = StateConfig()
