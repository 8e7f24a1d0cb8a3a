from segmenters.config import InterestConfig
from streams.settings import Settings


def test_interest_thresholds_and_weights_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("SEGSTREAM_INTEREST__MIN_SHARE", "0.6")
    monkeypatch.setenv("SEGSTREAM_INTEREST__MIN_EVENTS", "5")
    monkeypatch.setenv("SEGSTREAM_STATE__INTEREST_HALF_LIFE_DAYS", "14")
    monkeypatch.setenv("SEGSTREAM_STATE__INTEREST_PURCHASE_WEIGHT", "8")
    engine = Settings().engine
    assert engine.interest == InterestConfig(min_share=0.6, min_events=5)
    assert engine.state.interest_half_life_days == 14.0
    assert engine.state.interest_purchase_weight == 8.0
    assert engine.state.interest_cart_weight == 3.0
