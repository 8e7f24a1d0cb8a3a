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

Modules: ``fields`` (what a rule may read), ``facts`` and ``checker`` (the type check),
``evaluate`` (compiled closures), ``segments`` (the file, memberships and reasons),
``errors``.

>>> from segmenters.state import CustomerState
>>> segs = parse_segments('version = "v1"\\n[segments.big]\\nrule = "revenue >= 1000"\\n')
>>> evaluate_custom(CustomerState("c", revenue=1500.0), 0.0, segs)
{'custom:big': ('member', 'rule `revenue >= 1000` holds (segments config v1)')}
>>> try:
...     parse_segments('[segments.bad]\\nrule = "revnue > 1"\\n')
... except SegmentConfigError as e:
...     print(e)  # doctest: +ELLIPSIS
line 2: segment 'bad': unknown field 'revnue' ...
"""

from segmenters.dimensions.custom.errors import SegmentConfigError
from segmenters.dimensions.custom.evaluate import Fn, _compile
from segmenters.dimensions.custom.fields import FIELDS, RuleField
from segmenters.dimensions.custom.segments import (
    CustomRule,
    CustomSegments,
    compile_rule,
    custom_memberships,
    custom_reason,
    evaluate_custom,
    parse_segments,
)

__all__ = [
    "FIELDS",
    "CustomRule",
    "CustomSegments",
    "Fn",
    "RuleField",
    "SegmentConfigError",
    "_compile",
    "compile_rule",
    "custom_memberships",
    "custom_reason",
    "evaluate_custom",
    "parse_segments",
]
