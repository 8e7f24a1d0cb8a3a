"""Compiled evaluation: a checked rule becomes closures, once."""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from typing import Any

from segmenters.dimensions.custom.facts import _ARITH, _COMPARE, _const

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
