"""What a field can be under a rule's conditions: the facts the checker narrows."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from segmenters.dimensions import journey, rfm
from segmenters.dimensions.custom.fields import RuleField
from segmenters.vocabulary import BEHAVIOUR, Vocabulary

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
