"""Thresholds of the segmentation rules.

Pure configuration: the core receives it as an argument, never reads it from the
environment. ``streams.settings`` builds it from ``SEGSTREAM_JOURNEY__*``,
``SEGSTREAM_STATE__*`` and ``SEGSTREAM_INTEREST__*`` variables.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Purchases kept for action assignments still to come (cross-topic order), by default
#: (``SEGSTREAM_ACTIONS_KEEP_PURCHASES_S``). Here, not with the actions, so reading the
#: settings does not import the decision code (and scipy) for one number.
KEEP_PURCHASES_S = 2 * 86400.0


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
    #: Half-life of the category affinities of the interest dimension, in days.
    interest_half_life_days: float = Field(30.0, gt=0)
    #: What a view, a cart addition and a purchase line add to their category's affinity.
    interest_view_weight: float = Field(1.0, ge=0)
    interest_cart_weight: float = Field(3.0, ge=0)
    interest_purchase_weight: float = Field(5.0, ge=0)


class InterestConfig(BaseModel):
    """Thresholds of the interest dimension (docs/segmentation.md).

    >>> InterestConfig().min_share
    0.5
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: The top category's least share of the customer's decayed affinity.
    min_share: float = Field(0.5, gt=0, le=1)
    #: Categorized events before any segment, and the top category's least count.
    min_events: int = Field(3, ge=1)


class ValueConfig(BaseModel):
    """Thresholds of the value dimension (docs/value.md): churned below ``churn_p_alive``,
    otherwise tiers by the share of alive buyers ranked above.

    >>> ValueConfig().levels()
    (0.9, 0.7, 0.4)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    churn_p_alive: float = Field(0.3, gt=0, lt=1)
    top_share: float = Field(0.1, gt=0, lt=1)
    high_share: float = Field(0.2, gt=0, lt=1)
    medium_share: float = Field(0.3, gt=0, lt=1)

    @model_validator(mode="after")
    def _fits(self) -> ValueConfig:
        if self.top_share + self.high_share + self.medium_share >= 1:
            raise ValueError("top_share + high_share + medium_share must be below 1")
        return self

    def levels(self) -> tuple[float, float, float]:
        """The CLV quantiles a buyer must be above to be ``top``, ``high``, ``medium``."""
        top = 1 - self.top_share
        high = top - self.high_share
        return round(top, 9), round(high, 9), round(high - self.medium_share, 9)


class EngineConfig(BaseModel):
    """Everything the pure core needs, in one frozen value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    journey: JourneyConfig = JourneyConfig()
    state: StateConfig = StateConfig()
    interest: InterestConfig = InterestConfig()
    value: ValueConfig = ValueConfig()
