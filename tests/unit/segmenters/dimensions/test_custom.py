import ast
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from segmenters.config import EngineConfig
from segmenters.core import Context, Source, fold
from segmenters.dimensions import custom
from segmenters.dimensions.custom import (
    FIELDS,
    SegmentConfigError,
    compile_rule,
    evaluate_custom,
    parse_segments,
)
from segmenters.state import CustomerState
from segmenters.vocabulary import Vocabulary
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

    path = Path(__file__).resolve().parents[4] / "config" / "segments.toml"
    assert len(parse_segments(path.read_text()).rules) == 3


# --- type checking when loaded (issue: rules that can never match) -----------------------


ROOT = Path(__file__).resolve().parents[4]
SIX = Vocabulary(clusters=6)
HEAD = 'version = "t"\n\n[segments.fine]\nrule = "orders >= 1"\n\n[segments.bad]\n'


def _refusal(rule: str) -> str:
    """The error for a file whose rule ``bad`` (on line 7) is ``rule``."""
    text = HEAD + f"rule = {json.dumps(rule)}\n"
    with pytest.raises(SegmentConfigError) as info:
        parse_segments(text, SIX)
    return str(info.value)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            "journey == 'cart_abandonr'",
            "unknown segment 'cart_abandonr' for journey (did you mean 'cart_abandoner'?)",
        ),
        ("country > 5", "`country > 5` compares country (text) with 5 (a number)"),
        (
            "revenue / items > 10",
            "divides by items, which may be 0: guard it, e.g. `items > 0 and revenue / items > 10`",
        ),
        ("[1]*100000000 == []", "arithmetic on a list or text (repetition, concatenation)"),
        ("'a'*10**9 == country", "arithmetic on a list or text (repetition, concatenation)"),
        ("orders ** 100 > 1", "`**` is not allowed in a rule"),
        ("country == []", "a list can only follow `in` or `not in`"),
        ("journey in []", "the list is empty, so `in` never holds"),
        ("mobile_share > 1", "can never hold: mobile_share is a number >= 0 and <= 1"),
        (
            "orders > 5 and orders < 2",
            "can never hold: the conditions on orders exclude each other",
        ),
        ("orders == 1.5", "can never hold: orders is a whole number >= 0"),
        ("behaviour == 'cluster_9'", "the model has 6 clusters, cluster_0 .. cluster_5"),
        ("rfm in ['champions', 'loyl']", "unknown segment 'loyl' for rfm (did you mean 'loyal'?)"),
        ("country == 'de'", "'de' never matches (did you mean 'DE'?)"),
        ("orders == None", "orders is never missing"),
        ("journey > 'browser'", "text can only be compared with ==, !=, in, not in"),
        ("marketing_consent == 1", "compares marketing_consent (yes/no) with 1 (a number)"),
        ("revenue", "`revenue` is number, not a condition"),
        ("1 > 2", "compares constants only"),
        ("revenue / 0 > 1", "divides by zero"),
        ("not " * 50 + "orders > 1", "nests deeper than"),
        ("revnue > 1", "unknown field 'revnue' (did you mean 'revenue'?)"),
    ],
)
def test_rules_that_can_never_match_are_refused_with_their_line(rule, message):
    error = _refusal(rule)
    assert error.startswith("line 7: segment 'bad': "), error
    assert message in error


def test_the_shipped_and_documented_rules_load():
    shipped = parse_segments((ROOT / "config" / "segments.toml").read_text(), SIX)
    assert len(shipped.rules) == 3
    doc = (ROOT / "docs" / "segmentation.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", doc, flags=re.S)
    documented = [parse_segments(b, SIX) for b in blocks if "[segments." in b]
    assert sum(len(d.rules) for d in documented) >= 5


def test_every_field_is_documented_with_its_type_and_unit():
    doc = (ROOT / "docs" / "segmentation.md").read_text()
    table = doc.split("| field | type | unit | meaning |")[1].split("\n\n")[0].splitlines()
    assert len(table) == len(FIELDS) + 2  # header rule, a row per field
    for name, f in FIELDS.items():
        row = next((ln for ln in table if ln.startswith(f"| `{name}` |")), None)
        assert row is not None, f"{name} is not in the field table"
        assert f.type_text in row and f.unit in row, row


def test_guarded_division_by_zero_is_no_match_without_an_exception():
    segs = parse_segments('[segments.avg]\nrule = "items > 0 and revenue / items > 10"\n')
    assert evaluate_custom(CustomerState("c", revenue=50.0, items=0), 0.0, segs) == {}
    member = evaluate_custom(CustomerState("c", revenue=50.0, items=2), 0.0, segs)
    assert member["custom:avg"][0] == "member"
    # the run-time rule under the check: a division by zero is undefined, and a comparison
    # with an undefined value is false (also `!=`), so an unguarded tree cannot raise either
    for rule in ("revenue / items > 10", "revenue / items != 10", "revenue / items < 10"):
        test = custom._compile(ast.parse(rule, mode="eval"))
        assert test({"revenue": 50.0, "items": 0}) is False


def test_a_missing_value_makes_a_comparison_false_except_the_none_tests():
    _, unequal = compile_rule("country != 'DE'")
    _, absent = compile_rule("country == None")
    _, listed = compile_rule("country not in ['DE', 'AT']")
    assert (unequal({"country": None}), absent({"country": None})) == (False, True)
    assert (unequal({"country": "FR"}), absent({"country": "FR"})) == (True, False)
    assert (listed({"country": None}), listed({"country": "FR"})) == (False, True)


# Property: the checker refuses a part of a rule as "can never hold" only if it is dead:
# putting False in its place changes the rule's value for no customer. Rules are random
# conjunctions/disjunctions of comparisons of fields with constants; values are random
# within each field's range (missing where a field may be missing).

NUMERIC = {
    "orders": st.integers(0, 6),
    "cart_items": st.integers(0, 6),
    "mobile_share": st.sampled_from([0.0, 0.25, 0.5, 1.0]),
    "revenue": st.sampled_from([-10.0, 0.0, 5.0, 10.0, 99.5]),
    "birth_year": st.one_of(st.none(), st.sampled_from([1900, 1990, 2000, 2100])),
    "days_since_order": st.one_of(st.none(), st.sampled_from([0.0, 3.0, 30.0])),
}
TEXT = {
    "journey": st.one_of(st.none(), st.sampled_from(journey_segments := ("loyal", "lapsed"))),
    "marketing_consent": st.one_of(st.none(), st.booleans()),
}
CONSTANTS = st.sampled_from([-1, 0, 1, 2, 2.5, 5, 6, 10, 1900, 2100])
OPS = st.sampled_from(["<", "<=", ">", ">=", "==", "!="])


@st.composite
def comparisons(draw):
    kind = draw(st.sampled_from(["num", "num", "num", "journey", "consent", "none"]))
    if kind == "num":
        name = draw(st.sampled_from(sorted(NUMERIC)))
        return f"{name} {draw(OPS)} {draw(CONSTANTS)}"
    if kind == "journey":
        op = draw(st.sampled_from(["==", "!=", "in", "not in"]))
        if "in" in op:
            values = draw(st.lists(st.sampled_from(journey_segments), min_size=1, max_size=2))
            return f"journey {op} {values!r}"
        return f"journey {op} {draw(st.sampled_from(journey_segments))!r}"
    if kind == "consent":
        return draw(st.sampled_from(["marketing_consent", "marketing_consent == False"]))
    name = draw(st.sampled_from(["birth_year", "days_since_order", "journey"]))
    return f"{name} {draw(st.sampled_from(['==', '!=']))} None"


RULES = st.recursive(
    comparisons(),
    lambda inner: st.lists(inner, min_size=2, max_size=3).flatmap(
        lambda parts: st.sampled_from([" and ", " or "]).map(
            lambda glue: glue.join(f"({p})" for p in parts)
        )
    ),
    max_leaves=5,
)
VALUES = st.fixed_dictionaries({**NUMERIC, **TEXT})


def _parts(tree: ast.Expression) -> list[ast.AST]:
    """The parts of a rule used as conditions: a field inside a comparison is a value, so
    `marketing_consent == False` is a part and its `marketing_consent` is not."""
    out: list[ast.AST] = [tree.body]
    for node in ast.walk(tree):
        if isinstance(node, ast.BoolOp):
            out.extend(node.values)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            out.append(node.operand)
    return out


class _Kill(ast.NodeTransformer):
    def __init__(self, target: ast.AST) -> None:
        self.target = target

    def visit(self, node: ast.AST) -> ast.AST:
        if node is self.target:
            return ast.Constant(False)
        return super().visit(node)


def _killed(rule: str, source: str) -> list[Callable[[dict[str, Any]], Any]]:
    """The rule with False in place of a part written ``source``, once per such part (the
    message names the part by its text only, which may occur more than once)."""
    out = []
    for i in range(sum(ast.unparse(p) == source for p in _parts(ast.parse(rule, mode="eval")))):
        tree = ast.parse(rule, mode="eval")
        target = [p for p in _parts(tree) if ast.unparse(p) == source][i]
        out.append(custom._compile(ast.fix_missing_locations(_Kill(target).visit(tree))))
    return out


CONSENT_CASE = "(marketing_consent == False) and ((journey == 'loyal') or (marketing_consent))"
CONSENT_VALUES = {
    **{"orders": 0, "cart_items": 0, "mobile_share": 0.0, "revenue": -10.0},
    **{"birth_year": None, "days_since_order": None},
    **{"journey": "loyal", "marketing_consent": None},
}


@example(rule=CONSENT_CASE, values=[CONSENT_VALUES])
@given(rule=RULES, values=st.lists(VALUES, min_size=1, max_size=20))
def test_a_part_refused_as_never_holding_is_dead(rule, values):
    tree = ast.parse(rule, mode="eval")
    test = custom._compile(tree)
    try:
        compile_rule(rule, SIX)
    except ValueError as exc:
        if "never hold" in str(exc):
            source = str(exc).split("`")[1]
            deads = _killed(rule, source)
            assert deads, (rule, exc)
            results = [test(v) for v in values]
            assert any(results == [dead(v) for v in values] for dead in deads), (rule, exc)
        return
    for v in values:  # an accepted rule evaluates without an exception
        assert test(v) in (True, False)


def test_a_bare_consent_under_consent_false_is_refused_and_dead_with_consent_missing():
    with pytest.raises(ValueError, match="^`marketing_consent` can never hold"):
        compile_rule(CONSENT_CASE, SIX)
    test = custom._compile(ast.parse(CONSENT_CASE, mode="eval"))
    dead = custom._compile(
        ast.parse(CONSENT_CASE.replace("or (marketing_consent)", "or False"), mode="eval")
    )
    # a missing consent fails `== False` and counts as no when bare (the documented rule)
    cases = [
        {**CONSENT_VALUES, "marketing_consent": consent, "journey": journey}
        for consent in (None, True, False)
        for journey in (None, "loyal", "lapsed")
    ]
    assert [test(v) for v in cases] == [dead(v) for v in cases]
    assert test(CONSENT_VALUES) is False
    assert test({**CONSENT_VALUES, "marketing_consent": False}) is True
    # the part the message names is the bare field, not the one inside `== False`
    assert [ast.unparse(p) for p in _parts(ast.parse(CONSENT_CASE, mode="eval"))].count(
        "marketing_consent"
    ) == 1
