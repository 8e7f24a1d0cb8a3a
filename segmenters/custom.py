"""Custom segments: named boolean rules over a customer's state, from a TOML file.

A marketer writes rules such as ``revenue >= 1000 and orders >= 3`` or
``journey == "cart_abandoner" and cart_value > 200``. Rules are parsed into a small
expression tree (comparisons, ``and``/``or``/``not``, ``+ - * /`` on numbers, ``in`` a
list, constants and the fields in :data:`FIELDS`): no ``eval``, nothing else is callable.
A dimension ``custom:<name>`` holds ``member`` while the rule holds and ``non_member``
after it stops holding. A customer who never matched has no segment for it, so nothing
is emitted for them.

Rules are type-checked when loaded (docs/segmentation.md, "Custom segments"): a rule that
compares a field with a value of another type, names a segment no customer can be in, can
never hold, divides by a field that may be 0 without a guard, or repeats a sequence is
refused with its line. A rule that passes is compiled once into closures.

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
import math
import operator
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import journey, rfm
from .state import CustomerState, decayed_value
from .vocabulary import BEHAVIOUR, COUNTRY, Vocabulary, did_you_mean

DAY = 86400.0
NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
#: Deepest nesting of a rule's expression tree (keeps checking and evaluation bounded).
MAX_DEPTH = 40
Kind = Literal["number", "text", "yes/no"]
_N: Kind = "number"


def _days(since: float | None, now: float) -> float | None:
    return None if since is None else (now - since) / DAY


def _mobile_share(s: CustomerState) -> float:
    total = sum(s.devices.values())
    return s.devices.get("mobile", 0) / total if total else 0.0


def _country_error(vocabulary: Vocabulary, value: Any) -> str | None:
    if COUNTRY.match(value):
        return None
    hint = f" (did you mean {value.upper()!r}?)" if COUNTRY.match(value.upper()) else ""
    return f"country is an ISO-3166 alpha-2 code in upper case, {value!r} never matches{hint}"


def _segment_of(dimension: str) -> Callable[[Vocabulary, Any], str | None]:
    def check(vocabulary: Vocabulary, value: Any) -> str | None:
        return vocabulary.segment_error(dimension, value)

    return check


@dataclass(frozen=True)
class RuleField:
    """A value a rule may use: its type, unit, possible range, and how to compute it."""

    kind: Kind
    meaning: str
    unit: str
    get: Callable[[CustomerState, float], Any] = field(repr=False)
    #: May be missing (None): a comparison with a missing value is false.
    optional: bool = False
    integer: bool = False
    low: float = -math.inf
    high: float = math.inf
    #: Why a text constant can never equal this field (unknown segment, bad code), or None.
    value_error: Callable[[Vocabulary, Any], str | None] | None = field(default=None, repr=False)
    #: The dimension whose segment this field is (its values are checked by the vocabulary).
    dimension: str | None = None

    @property
    def type_text(self) -> str:
        """``whole number >= 0``, ``number >= 0 and <= 1``, ``text``: for messages and docs."""
        text: str = "whole number" if self.integer else self.kind
        if self.low > -math.inf:
            text += f" >= {self.low:g}"
        if self.high < math.inf:
            text += f" {'and ' if self.low > -math.inf else ''}<= {self.high:g}"
        return text


#: Fields a rule may use. Times are event time; amounts are in the shop's currency as sent
#: on the events (not converted).
FIELDS: dict[str, RuleField] = {
    "orders": RuleField(
        _N, "distinct orders", "orders", lambda s, now: s.orders, integer=True, low=0
    ),
    "revenue": RuleField(
        _N, "net revenue: order totals minus refunds", "currency", lambda s, now: s.revenue
    ),
    "items": RuleField(_N, "units bought", "units", lambda s, now: s.items, integer=True, low=0),
    "refunds": RuleField(
        _N, "refund events", "refunds", lambda s, now: s.refunds, integer=True, low=0
    ),
    "avg_order_value": RuleField(
        _N,
        "revenue / orders (0 before a first order)",
        "currency",
        lambda s, now: s.revenue / s.orders if s.orders else 0.0,
    ),
    "cart_items": RuleField(
        _N, "units in the cart", "units", lambda s, now: s.cart_items, integer=True, low=0
    ),
    "cart_value": RuleField(
        _N,
        "value of the cart (quantity x unit price)",
        "currency",
        lambda s, now: s.cart_value,
        low=0,
    ),
    "views": RuleField(
        _N,
        "recent browse events, decayed with a 7-day half-life",
        "events",
        lambda s, now: decayed_value(s.views, now, half_life_s=7 * DAY),
        low=0,
    ),
    "cart_adds": RuleField(
        _N,
        "recent cart additions, decayed with a 7-day half-life",
        "events",
        lambda s, now: decayed_value(s.cart_adds, now, half_life_s=7 * DAY),
        low=0,
    ),
    "days_since_order": RuleField(
        _N,
        "days since the last order (missing before a first order)",
        "days",
        lambda s, now: _days(s.last_order_at, now),
        optional=True,
    ),
    "days_since_seen": RuleField(
        _N,
        "days since the last event",
        "days",
        lambda s, now: _days(s.last_seen, now),
        optional=True,
    ),
    "tenure_days": RuleField(
        _N,
        "days since the first event",
        "days",
        lambda s, now: _days(s.first_seen, now),
        optional=True,
    ),
    "categories": RuleField(
        _N,
        "distinct categories browsed, carted or bought (at most 12 kept)",
        "categories",
        lambda s, now: len(s.categories),
        integer=True,
        low=0,
    ),
    "mobile_share": RuleField(
        _N,
        "share of events sent from a mobile device",
        "share from 0 to 1",
        lambda s, now: _mobile_share(s),
        low=0,
        high=1,
    ),
    "country": RuleField(
        "text",
        "country, ISO-3166 alpha-2 in upper case (profile, else events)",
        "code",
        lambda s, now: s.profile.get("country") or s.geo.get("country"),
        optional=True,
        value_error=_country_error,
    ),
    "birth_year": RuleField(
        _N,
        "profile birth year",
        "year",
        lambda s, now: s.profile.get("birth_year"),
        optional=True,
        integer=True,
        low=1900,
        high=2100,
    ),
    "gender": RuleField(
        "text",
        "profile gender, as sent",
        "text",
        lambda s, now: s.profile.get("gender"),
        optional=True,
    ),
    "income_band": RuleField(
        "text",
        "profile income band, as sent",
        "text",
        lambda s, now: s.profile.get("income_band"),
        optional=True,
    ),
    "marketing_consent": RuleField(
        "yes/no",
        "profile marketing consent (a missing value counts as no)",
        "true/false",
        lambda s, now: s.profile.get("marketing_consent"),
        optional=True,
    ),
    "journey": RuleField(
        "text",
        "journey segment",
        "segment name",
        lambda s, now: s.segment(journey.DIMENSION),
        optional=True,
        value_error=_segment_of(journey.DIMENSION),
        dimension=journey.DIMENSION,
    ),
    "rfm": RuleField(
        "text",
        "RFM segment (missing before a first order)",
        "segment name",
        lambda s, now: s.segment(rfm.DIMENSION),
        optional=True,
        value_error=_segment_of(rfm.DIMENSION),
        dimension=rfm.DIMENSION,
    ),
    "behaviour": RuleField(
        "text",
        "behaviour cluster, cluster_<n> (missing before a first model)",
        "segment name",
        lambda s, now: s.segment(BEHAVIOUR),
        optional=True,
        value_error=_segment_of(BEHAVIOUR),
        dimension=BEHAVIOUR,
    ),
}

_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_ORDER = (ast.Lt, ast.LtE, ast.Gt, ast.GtE)
_FLIP: dict[type, type] = {ast.Lt: ast.Gt, ast.LtE: ast.GtE, ast.Gt: ast.Lt, ast.GtE: ast.LtE}
_ARITH: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


class SegmentConfigError(ValueError):
    """A custom-segment file that cannot be used; the message names the line."""


class _Refused(ValueError):
    pass


# --- what a field can be under a rule's conditions ---------------------------------------


@dataclass(frozen=True)
class _Can:
    """The values a field may take under some conditions: an interval, a finite set of
    allowed values, excluded values, and whether it must be missing or present."""

    lo: float = -math.inf
    lo_open: bool = False
    hi: float = math.inf
    hi_open: bool = False
    points: frozenset[Any] | None = None
    excluded: frozenset[Any] = frozenset()
    integer: bool = False
    missing: bool | None = None
    void: bool = False

    def meet(self, o: _Can) -> _Can:
        lo, lo_open = max((self.lo, self.lo_open), (o.lo, o.lo_open))
        hi, hi_closed = min((self.hi, not self.hi_open), (o.hi, not o.hi_open))
        points = self.points if o.points is None else o.points
        if self.points is not None and o.points is not None:
            points = self.points & o.points
        missing = self.missing if o.missing is None else o.missing
        void = self.void or o.void
        if self.missing is not None and o.missing is not None and self.missing != o.missing:
            void = True
        return _Can(
            lo,
            lo_open,
            hi,
            not hi_closed,
            points,
            self.excluded | o.excluded,
            self.integer or o.integer,
            missing,
            void,
        )

    def _fits(self, p: Any) -> bool:
        if p in self.excluded:
            return False
        if isinstance(p, bool) or not isinstance(p, int | float):
            return True
        if self.integer and p != int(p):
            return False
        above = p > self.lo or (p == self.lo and not self.lo_open)
        below = p < self.hi or (p == self.hi and not self.hi_open)
        return above and below

    def empty(self) -> bool:
        """True if no value (and not "missing" either) satisfies every condition."""
        if self.void:
            return True
        if self.missing:
            return False
        if self.points is not None:
            return not any(self._fits(p) for p in self.points)
        if self.integer and not (math.isinf(self.lo) or math.isinf(self.hi)):
            a = math.floor(self.lo) + 1 if self.lo_open else math.ceil(self.lo)
            b = math.ceil(self.hi) - 1 if self.hi_open else math.floor(self.hi)
            return a > b or (b - a < 64 and all(i in self.excluded for i in range(a, b + 1)))
        if self.lo > self.hi:
            return True
        if self.lo == self.hi:
            return self.lo_open or self.hi_open or self.lo in self.excluded
        return False


def _natural(f: RuleField, vocabulary: Vocabulary) -> _Can:
    points: frozenset[Any] | None = None
    if f.kind == "yes/no":
        points = frozenset({True, False})
    elif f.dimension in (journey.DIMENSION, rfm.DIMENSION):
        points = frozenset(journey.SEGMENTS if f.dimension == journey.DIMENSION else rfm.SEGMENTS)
    elif f.dimension == BEHAVIOUR and vocabulary.clusters is not None:
        points = frozenset(f"cluster_{i}" for i in range(vocabulary.clusters))
    return _Can(lo=f.low, hi=f.high, points=points, integer=f.integer, missing=None)


Facts = dict[str, _Can]


def _meet(a: Facts, b: Facts) -> Facts:
    out = dict(a)
    for k, v in b.items():
        out[k] = out[k].meet(v) if k in out else v
    return out


def _const(node: ast.AST) -> tuple[bool, Any]:
    """(True, value) for a constant, a negated number or a list of constants."""
    if isinstance(node, ast.Constant):
        return True, node.value
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub)
        and isinstance(node.operand, ast.Constant)
        and isinstance(node.operand.value, int | float)
        and not isinstance(node.operand.value, bool)
    ):
        return True, -node.operand.value
    if isinstance(node, ast.Tuple | ast.List):
        values = [_const(e) for e in node.elts]
        if all(ok for ok, _ in values):
            return True, frozenset(v for _, v in values)
    return False, None


def _facts_of(node: ast.AST) -> Facts:
    """What a condition, when it holds, says about single fields (``orders > 2``, ``x in [..]``)."""
    if isinstance(node, ast.Name):  # a bare yes/no field
        return {node.id: _Can(points=frozenset({True}), missing=False)}
    if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And):
        out: Facts = {}
        for v in node.values:
            out = _meet(out, _facts_of(v))
        return out
    if not isinstance(node, ast.Compare):
        return {}
    out = {}
    left = node.left
    for op, right in zip(node.ops, node.comparators, strict=True):
        name, other, kind = None, right, type(op)
        if isinstance(left, ast.Name):
            name, other = left.id, right
        elif isinstance(right, ast.Name) and kind not in (ast.In, ast.NotIn):
            name, other, kind = right.id, left, _FLIP.get(kind, kind)
        ok, c = _const(other)
        if name is not None and ok:
            out = _meet(out, {name: _fact(kind, c)})
        left = right
    return out


def _fact(kind: type, c: Any) -> _Can:
    """What ``field <kind> c`` says about the field (a comparison needs it present)."""
    if c is None:
        return _Can(missing=kind is ast.Eq)
    if kind is ast.Eq:
        return _Can(points=frozenset({c}), missing=False)
    if kind is ast.NotEq:
        return _Can(excluded=frozenset({c}), missing=False)
    if kind is ast.In:
        return _Can(points=c, missing=False)
    if kind is ast.NotIn:
        return _Can(excluded=c, missing=False)
    if isinstance(c, bool) or not isinstance(c, int | float):
        return _Can(missing=False)  # ordering on other types: the type check refuses it
    if kind is ast.Lt:
        return _Can(hi=c, hi_open=True, missing=False)
    if kind is ast.LtE:
        return _Can(hi=c, missing=False)
    if kind is ast.Gt:
        return _Can(lo=c, lo_open=True, missing=False)
    return _Can(lo=c, missing=False)


# --- the type checker ---------------------------------------------------------------------


def _describe(node: ast.AST, kind: str) -> str:
    if isinstance(node, ast.Name):
        return f"{node.id} ({kind})"
    if isinstance(node, ast.Constant):
        return f"{ast.unparse(node)} ({'a ' if kind == 'number' else ''}{kind})"
    return f"`{ast.unparse(node)}` ({kind})"


def _has_field(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) for n in ast.walk(node))


@dataclass
class _Checker:
    vocabulary: Vocabulary
    rule: str

    def condition(self, node: ast.AST, facts: Facts, strict: bool, depth: int) -> None:
        """Check a node used as a yes/no condition; ``facts`` hold where it is evaluated."""
        if depth > MAX_DEPTH:
            raise _Refused(f"the rule nests deeper than {MAX_DEPTH} levels")
        if isinstance(node, ast.BoolOp):
            if isinstance(node.op, ast.And):
                combined = _meet(facts, _facts_of(node))
                self._never(node, combined if strict else _facts_of(node))
                for v in node.values:
                    self.condition(v, combined, strict, depth + 1)
            else:
                for v in node.values:
                    self.condition(v, facts, strict, depth + 1)
            return
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            self.condition(node.operand, facts, False, depth + 1)
            return
        if isinstance(node, ast.Constant) and node.value is False:
            raise _Refused("`False` never holds")
        kind = self.value(node, facts, strict, depth)
        if kind != "yes/no":
            raise _Refused(
                f"`{ast.unparse(node)}` is {kind}, not a condition: compare it "
                f"(e.g. `{ast.unparse(node)} > 0`)"
            )
        if isinstance(node, ast.Compare | ast.Name):
            self._never(node, _meet(facts, _facts_of(node)) if strict else _facts_of(node))

    def _never(self, node: ast.AST, facts: Facts) -> None:
        """Refuse ``node`` if the conditions ``facts`` on some field leave it no value."""
        own = _facts_of(node)
        for name, can in facts.items():
            f = FIELDS.get(name)
            if f is None:
                continue
            natural = _natural(f, self.vocabulary)
            if not can.meet(natural).empty():
                continue
            alone = own.get(name)
            if alone is None or not alone.meet(natural).empty():
                why = f" together with the conditions on {name} around it"
            elif alone.void:
                why = f": {name} cannot be missing and present at once"
            elif alone.empty():
                why = f": the conditions on {name} exclude each other"
            else:
                why = f": {name} is a {f.type_text}"
            raise _Refused(f"`{ast.unparse(node)}` can never hold{why}")

    def value(self, node: ast.AST, facts: Facts, strict: bool, depth: int) -> str:
        """The type of an expression: number, text, yes/no, or none (the constant None)."""
        if depth > MAX_DEPTH:
            raise _Refused(f"the rule nests deeper than {MAX_DEPTH} levels")
        if isinstance(node, ast.Name):
            f = FIELDS.get(node.id)
            if f is None:
                hint = did_you_mean(node.id, FIELDS) or f" (known: {', '.join(sorted(FIELDS))})"
                raise _Refused(f"unknown field {node.id!r}{hint}")
            return f.kind
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, bool):
                return "yes/no"
            if isinstance(v, int | float):
                return "number"
            if isinstance(v, str):
                return "text"
            if v is None:
                return "none"
        if isinstance(node, ast.Compare):
            self._compare(node, facts, depth)
            return "yes/no"
        if isinstance(node, ast.BoolOp) or (
            isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)
        ):
            self.condition(node, facts, strict, depth)
            return "yes/no"
        if isinstance(node, ast.BinOp):
            return self._arith(node, facts, strict, depth)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            kind = self.value(node.operand, facts, strict, depth + 1)
            if kind != "number":
                raise _Refused(f"`{ast.unparse(node)}`: only a number can be negated")
            return "number"
        if isinstance(node, ast.Tuple | ast.List):
            raise _Refused(
                f"`{ast.unparse(node)}`: a list can only follow `in` or `not in`, "
                "e.g. `journey in ['loyal', 'repeat_buyer']`"
            )
        raise _Refused(f"not allowed in a rule: {ast.unparse(node)!r}")

    def _arith(self, node: ast.BinOp, facts: Facts, strict: bool, depth: int) -> str:
        src = ast.unparse(node)
        if isinstance(node.op, ast.Pow):
            raise _Refused(f"`{src}`: `**` is not allowed in a rule (write x * x)")
        if type(node.op) not in _ARITH:
            raise _Refused(f"not allowed in a rule: {src!r}")
        for side in (node.left, node.right):
            if isinstance(side, ast.List | ast.Tuple) or (
                isinstance(side, ast.Constant) and isinstance(side.value, str)
            ):
                raise _Refused(
                    f"`{src}`: arithmetic on a list or text (repetition, concatenation) "
                    "is not allowed in a rule"
                )
        kinds = [self.value(s, facts, strict, depth + 1) for s in (node.left, node.right)]
        if kinds != ["number", "number"]:
            raise _Refused(
                f"`{src}`: arithmetic needs numbers, got "
                f"{_describe(node.left, kinds[0])} and {_describe(node.right, kinds[1])}"
            )
        if isinstance(node.op, ast.Div):
            self._divisor(node, facts)
        return "number"

    def _divisor(self, node: ast.BinOp, facts: Facts) -> None:
        src, d = ast.unparse(node), node.right
        ok, c = _const(d)
        if ok:
            if c == 0:
                raise _Refused(f"`{src}` divides by zero")
            return
        if not isinstance(d, ast.Name):
            raise _Refused(
                f"`{src}`: divide only by a field or a number, so that the rule can guard "
                "it against 0"
            )
        f = FIELDS[d.id]
        can = facts.get(d.id, _Can()).meet(_natural(f, self.vocabulary))
        if not can.meet(_Can(points=frozenset({0}), missing=False)).empty():
            whole = ast.parse(self.rule, mode="eval").body
            rule = f"({self.rule})" if isinstance(whole, ast.BoolOp | ast.UnaryOp) else self.rule
            raise _Refused(
                f"`{src}` divides by {d.id}, which may be 0: guard it, e.g. `{d.id} > 0 and {rule}`"
            )

    def _compare(self, node: ast.Compare, facts: Facts, depth: int) -> None:
        left = node.left
        for op, right in zip(node.ops, node.comparators, strict=True):
            self._pair(node, left, op, right, facts, depth)
            left = right
        if not any(_has_field(n) for n in (node.left, *node.comparators)):
            raise _Refused(f"`{ast.unparse(node)}` compares constants only")

    def _pair(
        self,
        node: ast.Compare,
        left: ast.AST,
        op: ast.cmpop,
        right: ast.AST,
        facts: Facts,
        depth: int,
    ) -> None:
        src = ast.unparse(node)
        lk = self._side(src, left, facts, depth)
        if isinstance(op, ast.In | ast.NotIn):
            self._in(src, left, lk, op, right)
            return
        if type(op) not in _COMPARE:
            raise _Refused(f"not allowed in a rule: {src!r}")
        rk = self._side(src, right, facts, depth)
        if "none" in (lk, rk):
            if isinstance(op, _ORDER):
                raise _Refused(f"`{src}`: None (missing) can only be tested with == or !=")
            other = right if lk == "none" else left
            if not isinstance(other, ast.Name):
                raise _Refused(f"`{src}` never holds as meant: only a field can be missing")
            if not FIELDS[other.id].optional:
                raise _Refused(f"`{src}` never holds as meant: {other.id} is never missing")
            return
        if lk != rk:
            raise _Refused(f"`{src}` compares {_describe(left, lk)} with {_describe(right, rk)}")
        if isinstance(op, _ORDER) and lk != "number":
            raise _Refused(f"`{src}`: {lk} can only be compared with ==, !=, in, not in")
        for a, b in ((left, right), (right, left)):
            self._known_value(src, a, b)

    def _side(self, src: str, side: ast.AST, facts: Facts, depth: int) -> str:
        if isinstance(side, ast.List | ast.Tuple):
            raise _Refused(
                f"`{src}`: a list can only follow `in` or `not in`, "
                "e.g. `journey in ['loyal', 'repeat_buyer']`"
            )
        return self.value(side, facts, True, depth + 1)

    def _in(self, src: str, left: ast.AST, lk: str, op: ast.cmpop, right: ast.AST) -> None:
        if not isinstance(right, ast.List | ast.Tuple):
            raise _Refused(
                f"`{src}`: `in` needs a list of values after it, e.g. `country in ['DE', 'AT']`"
            )
        if not right.elts:
            raise _Refused(f"`{src}`: the list is empty, so `in` never holds")
        if lk not in ("number", "text", "yes/no"):
            raise _Refused(f"`{src}`: `in` needs a field or a value before it")
        for e in right.elts:
            ok, c = _const(e)
            if not ok:
                raise _Refused(f"`{src}`: the list after `in` may hold constants only")
            ek = self.value(e, {}, True, 0)
            if ek == "none":
                raise _Refused(f"`{src}`: write `x == None` to test for a missing value")
            if ek != lk:
                raise _Refused(f"`{src}` compares {_describe(left, lk)} with {_describe(e, ek)}")
            self._known_value(src, left, e)

    def _known_value(self, src: str, name: ast.AST, value: ast.AST) -> None:
        if not (isinstance(name, ast.Name) and isinstance(value, ast.Constant)):
            return
        f = FIELDS[name.id]
        if f.value_error is not None and isinstance(value.value, str):
            error = f.value_error(self.vocabulary, value.value)
            if error is not None:
                raise _Refused(f"`{src}`: {error}")


# --- compiled evaluation ------------------------------------------------------------------

Fn = Callable[[Mapping[str, Any]], Any]


def _compile(node: ast.AST) -> Fn:
    """Closures for a checked tree. A missing value (None) or a division by zero makes
    arithmetic undefined (None), and any comparison with an undefined or missing value is
    false, except the tests ``x == None`` and ``x != None``."""
    if isinstance(node, ast.Expression):
        body = _compile(node.body)
        if isinstance(node.body, ast.Name | ast.Constant):  # a bare yes/no field: None is no
            return lambda v: bool(body(v))
        return body
    if isinstance(node, ast.Name):
        name = node.id
        return lambda v: v[name]
    if isinstance(node, ast.Constant):
        c = node.value
        return lambda v: c
    if isinstance(node, ast.BoolOp):
        fs = tuple(_compile(x) for x in node.values)
        if isinstance(node.op, ast.And):

            def conjunction(v: Mapping[str, Any]) -> bool:
                for f in fs:
                    if not f(v):
                        return False
                return True

            return conjunction

        def disjunction(v: Mapping[str, Any]) -> bool:
            for f in fs:
                if f(v):
                    return True
            return False

        return disjunction
    if isinstance(node, ast.UnaryOp):
        g = _compile(node.operand)
        if isinstance(node.op, ast.Not):
            return lambda v: not g(v)
        return lambda v: None if (x := g(v)) is None else -x
    if isinstance(node, ast.BinOp):
        return _compile_arith(node)
    if isinstance(node, ast.Compare):
        tests = []
        left = node.left
        for op, right in zip(node.ops, node.comparators, strict=True):
            tests.append(_compile_pair(left, op, right))
            left = right
        if len(tests) == 1:
            return tests[0]
        return lambda v: all(t(v) for t in tests)
    raise AssertionError(ast.dump(node))  # the checker refused everything else


def _compile_arith(node: ast.BinOp) -> Fn:
    f, g, op = _compile(node.left), _compile(node.right), _ARITH[type(node.op)]
    divide = isinstance(node.op, ast.Div)

    def arith(v: Mapping[str, Any]) -> Any:
        a, b = f(v), g(v)
        if a is None or b is None or (divide and b == 0):
            return None
        return op(a, b)

    return arith


def _compile_pair(left: ast.AST, op: ast.cmpop, right: ast.AST) -> Fn:
    f = _compile(left)
    if isinstance(op, ast.In | ast.NotIn):
        values = _const(right)[1]
        inside = isinstance(op, ast.In)
        return lambda v: (a := f(v)) is not None and (a in values) == inside
    for a, b in ((left, right), (right, left)):
        if isinstance(b, ast.Constant) and b.value is None:
            h = _compile(a)
            if isinstance(op, ast.Eq):
                return lambda v: h(v) is None
            return lambda v: h(v) is not None
    g, cmp = _compile(right), _COMPARE[type(op)]
    if isinstance(left, ast.Name) and isinstance(right, ast.Constant):
        # the common ``field <op> constant``: the same test, two calls fewer
        name, c = left.id, right.value

        def compare_constant(v: Mapping[str, Any]) -> bool:
            a = v[name]
            if a is None:
                return False
            try:
                return bool(cmp(a, c))
            except TypeError:  # a stored value of another type than the field's (old data)
                return False

        return compare_constant

    def compare(v: Mapping[str, Any]) -> bool:
        a, b = f(v), g(v)
        if a is None or b is None:
            return False
        try:
            return bool(cmp(a, b))
        except TypeError:  # a stored value of another type than the field's (old data)
            return False

    return compare


# --- files ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomRule:
    name: str
    rule: str
    description: str
    tree: ast.Expression
    test: Fn = field(repr=False, compare=False)

    @cached_property
    def dimension(self) -> str:
        return f"custom:{self.name}"


@dataclass(frozen=True)
class CustomSegments:
    version: str
    rules: tuple[CustomRule, ...]

    @property
    def names(self) -> frozenset[str]:
        return frozenset(r.name for r in self.rules)


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


def compile_rule(rule: str, vocabulary: Vocabulary | None = None) -> tuple[ast.Expression, Fn]:
    """Parse, type-check and compile one rule; raises ValueError with the reason.

    >>> _, test = compile_rule("items > 0 and revenue / items > 10")
    >>> test({"items": 0, "revenue": 50.0}), test({"items": 2, "revenue": 50.0})
    (False, True)
    >>> compile_rule("country > 5")
    Traceback (most recent call last):
    ...
    ValueError: `country > 5` compares country (text) with 5 (a number)
    """
    try:
        tree = ast.parse(rule.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"rule is not an expression: {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise ValueError(f"the rule nests deeper than {MAX_DEPTH} levels") from None
    try:
        _Checker(vocabulary or Vocabulary(), rule.strip()).condition(tree.body, {}, True, 0)
    except _Refused as exc:
        raise ValueError(str(exc)) from None
    except RecursionError:
        raise ValueError(f"the rule nests deeper than {MAX_DEPTH} levels") from None
    return tree, _compile(tree)


def parse_segments(text: str, vocabulary: Vocabulary | None = None) -> CustomSegments:
    """Parse, type-check and compile a custom-segment file; errors name the line.

    ``vocabulary`` says which segments exist (the configured cluster count); without it,
    any ``cluster_<n>`` is accepted.
    """
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
            tree, test = compile_rule(entry.rule, vocabulary)
        except ValueError as exc:
            raise SegmentConfigError(f"line {line}: segment {name!r}: {exc}") from None
        rules.append(CustomRule(name, entry.rule, entry.description, tree, test))
    return CustomSegments(version=doc.version, rules=tuple(rules))


class _Values(dict[str, Any]):
    """Field values of one customer, computed on first use."""

    __slots__ = ("state", "now")

    def __init__(self, state: CustomerState, now: float) -> None:
        super().__init__()
        self.state, self.now = state, now

    def __missing__(self, key: str) -> Any:
        value = FIELDS[key].get(self.state, self.now)
        self[key] = value
        return value


def evaluate_custom(
    state: CustomerState, now: float, segments: CustomSegments | None
) -> dict[str, tuple[str, str]]:
    """Each custom dimension's segment for ``state``; unseen non-members are left out."""
    if segments is None or not segments.rules:
        return {}
    return {
        r.dimension: (segment, custom_reason(segments, r, segment))
        for r, segment in custom_memberships(state, now, segments)
    }


def custom_memberships(
    state: CustomerState, now: float, segments: CustomSegments | None
) -> list[tuple[CustomRule, str]]:
    """The segment of each custom dimension, as :func:`evaluate_custom` gives it, without
    the reasons: they are only written for a change (:func:`custom_reason`)."""
    if segments is None or not segments.rules:
        return []
    values = _Values(state, now)
    out = []
    for r in segments.rules:
        if r.test(values):
            out.append((r, "member"))
        elif state.segment(r.dimension) is not None:
            out.append((r, "non_member"))
    return out


def custom_reason(segments: CustomSegments, rule: CustomRule, segment: str) -> str:
    """Why the customer is in ``segment`` of ``rule``'s dimension."""
    if segment == "member":
        return f"rule `{rule.rule}` holds (segments config {segments.version})"
    return f"rule `{rule.rule}` no longer holds (segments config {segments.version})"
