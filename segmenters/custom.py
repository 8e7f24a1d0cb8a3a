"""Custom segments: named boolean rules over a customer's state, from a TOML file.

A marketer writes rules such as ``revenue >= 1000 and orders >= 3`` or
``journey == "cart_abandoner" and cart_value > 200``. Rules are parsed into a small
expression tree (comparisons, ``and``/``or``/``not``, arithmetic, ``in``, constants and
the fields in :data:`FIELDS`): no ``eval``, nothing else is callable. A dimension
``custom:<name>`` holds ``member`` while the rule holds and ``non_member`` after it stops
holding. A customer who never matched has no segment for it, so nothing is emitted for them.

>>> segs = parse_segments('version = "v1"\\n[segments.big]\\nrule = "revenue >= 1000"\\n')
>>> evaluate_custom(CustomerState("c", revenue=1500.0), 0.0, segs)
{'custom:big': ('member', 'rule `revenue >= 1000` holds (segments config v1)')}
>>> parse_segments('[segments.bad]\\nrule = "revnue > 1"\\n')
Traceback (most recent call last):
...
segmenters.custom.SegmentConfigError: line 2: segment 'bad': unknown field 'revnue' ...
"""

from __future__ import annotations

import ast
import operator
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .state import CustomerState, decayed_value

DAY = 86400.0
NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")


def _days(since: float | None, now: float) -> float | None:
    return None if since is None else (now - since) / DAY


def _mobile_share(s: CustomerState) -> float:
    total = sum(s.devices.values())
    return s.devices.get("mobile", 0) / total if total else 0.0


#: Fields a rule may use: name -> (meaning, how to compute it at event time ``now``).
FIELDS: dict[str, tuple[str, Callable[[CustomerState, float], Any]]] = {
    "orders": ("distinct orders", lambda s, now: s.orders),
    "revenue": ("net revenue", lambda s, now: s.revenue),
    "items": ("items bought", lambda s, now: s.items),
    "refunds": ("refund events", lambda s, now: s.refunds),
    "avg_order_value": (
        "revenue / orders",
        lambda s, now: s.revenue / s.orders if s.orders else 0.0,
    ),
    "cart_items": ("units in the cart", lambda s, now: s.cart_items),
    "cart_value": ("value of the cart", lambda s, now: s.cart_value),
    "views": (
        "recent browsing (decayed, 7-day half-life)",
        lambda s, now: decayed_value(s.views, now, half_life_s=7 * DAY),
    ),
    "cart_adds": (
        "recent cart additions (decayed)",
        lambda s, now: decayed_value(s.cart_adds, now, half_life_s=7 * DAY),
    ),
    "days_since_order": (
        "days since the last order (None: never)",
        lambda s, now: _days(s.last_order_at, now),
    ),
    "days_since_seen": ("days since the last event", lambda s, now: _days(s.last_seen, now)),
    "tenure_days": ("days since the first event", lambda s, now: _days(s.first_seen, now)),
    "categories": ("distinct categories", lambda s, now: len(s.categories)),
    "mobile_share": ("share of events from mobile", lambda s, now: _mobile_share(s)),
    "country": (
        "country (profile, else events)",
        lambda s, now: s.profile.get("country") or s.geo.get("country"),
    ),
    "birth_year": ("profile birth year", lambda s, now: s.profile.get("birth_year")),
    "gender": ("profile gender", lambda s, now: s.profile.get("gender")),
    "income_band": ("profile income band", lambda s, now: s.profile.get("income_band")),
    "marketing_consent": ("profile consent", lambda s, now: s.profile.get("marketing_consent")),
    "journey": ("journey segment", lambda s, now: s.segment("journey")),
    "rfm": ("RFM segment", lambda s, now: s.segment("rfm")),
    "behaviour": ("behaviour cluster", lambda s, now: s.segment("behaviour")),
}

_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_ARITH: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


class SegmentConfigError(ValueError):
    """A custom-segment file that cannot be used; the message names the line."""


def _check(node: ast.AST) -> None:
    """Refuse anything but the small expression language."""
    if isinstance(node, ast.Expression):
        _check(node.body)
    elif isinstance(node, ast.BoolOp):
        for v in node.values:
            _check(v)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not | ast.USub):
        _check(node.operand)
    elif isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
        for v in (node.left, *node.comparators):
            _check(v)
    elif isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
        _check(node.left)
        _check(node.right)
    elif isinstance(node, ast.Tuple | ast.List):
        for v in node.elts:
            _check(v)
    elif isinstance(node, ast.Constant) and isinstance(node.value, int | float | str | bool):
        pass
    elif isinstance(node, ast.Constant) and node.value is None:
        pass
    elif isinstance(node, ast.Name):
        if node.id not in FIELDS:
            raise ValueError(f"unknown field {node.id!r} (known: {', '.join(sorted(FIELDS))})")
    else:
        raise ValueError(f"not allowed in a rule: {ast.unparse(node)!r}")


def _eval(node: ast.AST, values: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Expression):
        return _eval(node.body, values)
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(_eval(v, values) for v in node.values)
        return any(_eval(v, values) for v in node.values)
    if isinstance(node, ast.UnaryOp):
        x = _eval(node.operand, values)
        return (not x) if isinstance(node.op, ast.Not) else -x
    if isinstance(node, ast.Compare):
        left = _eval(node.left, values)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = _eval(right_node, values)
            try:
                if not _COMPARE[type(op)](left, right):
                    return False
            except TypeError:  # comparing with a missing value (None): the rule does not hold
                return False
            left = right
        return True
    if isinstance(node, ast.BinOp):
        try:
            return _ARITH[type(node.op)](_eval(node.left, values), _eval(node.right, values))
        except (TypeError, ZeroDivisionError):
            return None
    if isinstance(node, ast.Tuple | ast.List):
        return tuple(_eval(v, values) for v in node.elts)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return values[node.id]
    raise AssertionError(node)  # _check refused everything else


@dataclass(frozen=True)
class CustomRule:
    name: str
    rule: str
    description: str
    tree: ast.Expression

    @property
    def dimension(self) -> str:
        return f"custom:{self.name}"


@dataclass(frozen=True)
class CustomSegments:
    version: str
    rules: tuple[CustomRule, ...]


class _SegmentEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rule: str = Field(min_length=1, max_length=2000)
    description: str = ""


class _SegmentFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str = "1"
    segments: dict[str, _SegmentEntry] = Field(default_factory=dict)


def _line_of(text: str, name: str) -> int:
    """Line number of a segment's ``rule`` (or its table header) in the file."""
    lines = text.splitlines()
    header = None
    for i, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped in (f"[segments.{name}]", f'[segments."{name}"]'):
            header = i
        elif header is not None and stripped.startswith("rule"):
            return i
        elif header is not None and stripped.startswith("["):
            break
    return header or 1


def parse_segments(text: str) -> CustomSegments:
    """Parse and validate a custom-segment file; errors name the line."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SegmentConfigError(f"not valid TOML: {exc}") from None
    try:
        doc = _SegmentFile.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = [str(p) for p in err["loc"]]
        line = _line_of(text, loc[1]) if len(loc) > 1 and loc[0] == "segments" else 1
        raise SegmentConfigError(f"line {line}: {'.'.join(loc)}: {err['msg']}") from None
    rules = []
    for name, entry in doc.segments.items():
        line = _line_of(text, name)
        if not NAME.match(name):
            raise SegmentConfigError(
                f"line {line}: segment name {name!r} must be lower case letters, digits and _"
            )
        try:
            tree = ast.parse(entry.rule, mode="eval")
            _check(tree)
        except SyntaxError as exc:
            raise SegmentConfigError(
                f"line {line}: segment {name!r}: rule is not an expression: {exc.msg}"
            ) from None
        except ValueError as exc:
            raise SegmentConfigError(f"line {line}: segment {name!r}: {exc}") from None
        rules.append(CustomRule(name, entry.rule, entry.description, tree))
    return CustomSegments(version=doc.version, rules=tuple(rules))


def evaluate_custom(
    state: CustomerState, now: float, segments: CustomSegments | None
) -> dict[str, tuple[str, str]]:
    """Each custom dimension's segment for ``state``; unseen non-members are left out."""
    if segments is None or not segments.rules:
        return {}

    class _Lazy(dict[str, Any]):
        def __missing__(self, key: str) -> Any:
            value = FIELDS[key][1](state, now)
            self[key] = value
            return value

    values = _Lazy()
    out = {}
    for r in segments.rules:
        holds = bool(_eval(r.tree, values))
        if holds:
            out[r.dimension] = (
                "member",
                f"rule `{r.rule}` holds (segments config {segments.version})",
            )
        elif state.segment(r.dimension) is not None:
            out[r.dimension] = (
                "non_member",
                f"rule `{r.rule}` no longer holds (segments config {segments.version})",
            )
    return out
