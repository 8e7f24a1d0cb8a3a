"""The type checker: a rule is refused with its reason before it is ever evaluated."""

from __future__ import annotations

import ast
from dataclasses import dataclass

from segmenters.dimensions.custom.errors import _Refused
from segmenters.dimensions.custom.facts import (
    _ARITH,
    _COMPARE,
    _ORDER,
    Facts,
    _Can,
    _const,
    _facts_of,
    _meet,
    _natural,
)
from segmenters.dimensions.custom.fields import FIELDS, MAX_DEPTH
from segmenters.vocabulary import Vocabulary, did_you_mean


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
