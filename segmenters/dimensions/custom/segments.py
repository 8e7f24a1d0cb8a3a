"""The segments file: parsing, and each customer's memberships and reasons."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from segmenters.dimensions.custom.checker import _Checker
from segmenters.dimensions.custom.errors import SegmentConfigError, _Refused
from segmenters.dimensions.custom.evaluate import Fn, _compile
from segmenters.dimensions.custom.fields import FIELDS, MAX_DEPTH, NAME
from segmenters.state import CustomerState
from segmenters.tomlfile import line_of, load_toml
from segmenters.vocabulary import Vocabulary


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
    return line_of(text, (f"[segments.{name}]", f'[segments."{name}"]'), key="rule", exact=True)


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
    raw = load_toml(text, SegmentConfigError)
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
