import pytest

from segmenters.config import EngineConfig
from segmenters.core import Context, Source, fold
from segmenters.custom import SegmentConfigError, evaluate_custom, parse_segments
from segmenters.state import CustomerState
from tests.unit.factories import Events, ev

FILE = """
version = "v7"

[segments.big]
rule = "revenue >= 100 and orders >= 2"

[segments.hot_cart]
rule = "journey == 'active_cart' and cart_value > 15"
"""


def test_membership_enters_and_leaves_with_the_config_version_in_the_reason():
    segs = parse_segments(FILE)
    e = Events()
    items = [
        (ev(d), Source("x", 0, i))
        for i, d in enumerate(
            [
                e.purchase("o1", ["A"], 0, price=60.0),
                e.purchase("o2", ["B"], 1, price=60.0),
                e.refund("o2", 60.0, 2),
            ]
        )
    ]
    r = fold(None, "c-1", items, config=EngineConfig(), ctx=Context(custom=segs))
    big = [(c.previous, c.current, c.reason) for c in r.changes if c.dimension == "custom:big"]
    assert [b[:2] for b in big] == [(None, "member"), ("member", "non_member")]
    assert "segments config v7" in big[0][2]


def test_a_customer_who_never_matched_emits_nothing():
    segs = parse_segments(FILE)
    assert evaluate_custom(CustomerState("c"), 0.0, segs) == {}


def test_rules_see_the_segments_of_the_same_evaluation():
    segs = parse_segments(FILE)
    e = Events()
    r = fold(
        None,
        "c-1",
        [(ev(e.add("A", 0, price=20.0)), Source("x", 0, 0))],
        config=EngineConfig(),
        ctx=Context(custom=segs),
    )
    assert r.state.segment("custom:hot_cart") == "member"


def test_missing_values_make_a_rule_false_not_an_error():
    segs = parse_segments('[segments.young]\nrule = "birth_year > 2000"\n')
    assert evaluate_custom(CustomerState("c"), 0.0, segs) == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[segments.a]\nrule = "revnue > 1"\n', "line 2: segment 'a': unknown field 'revnue'"),
        ("[segments.a]\nrule = \"__import__('os')\"\n", "not allowed in a rule"),
        ('[segments.a]\nrule = "orders.real > 1"\n', "not allowed in a rule"),
        ('[segments.a]\nrule = "orders >"\n', "rule is not an expression"),
        ('[segments.Bad-Name]\nrule = "orders > 1"\n', "must be lower case"),
        ('[segments.a]\nrule = "orders > 1"\ncolour = "red"\n', "line 2: segments.a.colour"),
        ("[segments.a\n", "not valid TOML"),
    ],
)
def test_bad_files_are_refused_with_the_line(text, message):
    with pytest.raises(SegmentConfigError) as info:
        parse_segments(text)
    assert message in str(info.value)


def test_shipped_example_file_is_valid():
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "config" / "segments.toml"
    assert len(parse_segments(path.read_text()).rules) == 3
