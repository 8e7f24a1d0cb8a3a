"""Retention policy: which segment changes trigger which actions, from a TOML file.

Actions are defined once per channel (``[actions.email.win_back]``) and referenced by
rules as ``"email/win_back"``, so two rules that trigger the same action share its
cooldown and holdout. Errors name the line and the offending action or rule.

>>> p = load_policy('''
... [actions.email.hello]
... template = "hello_v1"
... [[rules]]
... dimension = "journey"
... current = "cart_abandoner"
... actions = ["email/hello"]
... ''')
>>> [a.id for a in p.matching("journey", "browser", "cart_abandoner")]
['email/hello']
>>> try:
...     load_policy('[[rules]]\\ndimension="journey"\\ncurrent="lapsed"\\nactions=["ads/x"]')
... except PolicyError as e:
...     print(e)  # doctest: +ELLIPSIS
line 4: rule 1 (journey -> lapsed): unknown action 'ads/x' ...
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from segmenters.tomlfile import line_of, load_toml
from segmenters.vocabulary import Vocabulary

Channel = Literal["email", "ads", "push", "webhook"]
#: Channels that reach the customer directly: they need consent and respect quiet hours.
PERSONAL: frozenset[str] = frozenset({"email", "push"})
Cap = Annotated[int, Field(ge=0)]
DAY = 86400.0


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the line and the entry."""


class ActionSpec(BaseModel):
    """One action: what to send on which channel, and how often at most."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channel: Channel
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,40}$")
    template: str | None = None
    audience: str | None = None
    #: Higher goes first when several actions compete for a channel's frequency cap.
    priority: int = 0
    delay_s: float = Field(0.0, ge=0)
    cooldown_s: float = Field(0.0, ge=0)
    #: Share of customers held out as a control group (recorded, not sent).
    holdout: float = Field(0.0, ge=0, le=1)
    #: Act only on a change at most this old by the wall clock (history is not news).
    max_age_s: float = Field(DAY, gt=0)

    @property
    def id(self) -> str:
        return f"{self.channel}/{self.name}"

    @model_validator(mode="after")
    def _target(self) -> ActionSpec:
        if self.channel == "ads" and (self.audience is None or self.template is not None):
            raise ValueError("an ads action needs an `audience` (and no `template`)")
        if self.channel in PERSONAL and (self.template is None or self.audience is not None):
            raise ValueError(f"a {self.channel} action needs a `template` (and no `audience`)")
        if self.channel == "webhook" and (self.template is None) == (self.audience is None):
            raise ValueError("a webhook action needs one of `template` or `audience`")
        return self


class Rule(BaseModel):
    """A transition (``previous`` omitted: from any segment) and the actions it triggers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dimension: str = Field(min_length=1)
    previous: str | None = None
    current: str = Field(min_length=1)
    actions: tuple[str, ...] = Field(min_length=1)

    def matches(self, dimension: str, previous: str | None, current: str) -> bool:
        return (
            self.dimension == dimension
            and self.current == current
            and (self.previous is None or self.previous == previous)
        )


class QuietHours(BaseModel):
    """Local hours ``[start_hour, end_hour)`` in which email and push wait; may wrap midnight.

    >>> q = QuietHours(start_hour=21, end_hour=8, timezone="UTC")
    >>> q.end_after(21 * 3600.0) == 32 * 3600.0, q.end_after(8 * 3600.0)
    (True, None)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    start_hour: int = Field(ge=0, le=23)
    end_hour: int = Field(ge=0, le=23)
    timezone: str

    @model_validator(mode="after")
    def _valid(self) -> QuietHours:
        if self.start_hour == self.end_hour:
            raise ValueError("start_hour and end_hour must differ")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {self.timezone!r}") from None
        return self

    def end_after(self, at: float) -> float | None:
        """The end of the quiet period ``at`` falls in (epoch seconds), or None if not quiet."""
        zone = ZoneInfo(self.timezone)
        local = datetime.fromtimestamp(at, UTC).astimezone(zone)
        h = local.hour
        wraps = self.start_hour > self.end_hour
        quiet = (
            (h >= self.start_hour or h < self.end_hour)
            if wraps
            else (self.start_hour <= h < self.end_hour)
        )
        if not quiet:
            return None
        day = local.date() + timedelta(days=1 if wraps and h >= self.start_hour else 0)
        end = datetime(day.year, day.month, day.day, self.end_hour, tzinfo=zone)
        return end.timestamp()


class _Settings(BaseModel):
    """The policy's top-level settings, as the file states them and as :class:`Policy`
    keeps them (the two differ only in their actions and rules)."""

    model_config = ConfigDict(extra="forbid")

    version: str = "1"
    experiment: str = Field("default", min_length=1)
    conversion_window_s: float = Field(7 * DAY, gt=0)
    #: True: a missing ``marketing_consent`` stops email and push like an explicit false.
    require_consent: bool = False
    #: Sends per customer per channel in any rolling 24 hours; a channel not listed is uncapped.
    frequency_cap: dict[Channel, Cap] = Field(default_factory=dict)
    quiet_hours: QuietHours | None = None


class Policy(_Settings):
    """A validated policy: actions by id (``channel/name``) and the rules that use them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    actions: dict[str, ActionSpec] = Field(default_factory=dict)
    rules: tuple[Rule, ...] = ()

    def matching(self, dimension: str, previous: str | None, current: str) -> list[ActionSpec]:
        """The actions a transition triggers, each once, highest priority first."""
        memo = _memo(self)
        key = (dimension, previous, current)
        found = memo.matching.get(key)
        if found is None:
            ids = {
                a for r in self.rules if r.matches(dimension, previous, current) for a in r.actions
            }
            found = tuple(sorted((self.actions[i] for i in ids), key=lambda a: (-a.priority, a.id)))
            if len(memo.matching) >= _MEMO_ENTRIES:
                memo.matching.clear()
            memo.matching[key] = found
        return list(found)

    @property
    def dimensions(self) -> frozenset[str]:
        """The dimensions some rule names: a change of any other triggers nothing."""
        return _memo(self).dimensions

    def send_at(self, channel: str, at: float) -> float:
        """When a message for ``channel`` due at ``at`` may go out (quiet hours defer it)."""
        if self.quiet_hours is None or channel not in PERSONAL:
            return at
        end = self.quiet_hours.end_after(at)
        return at if end is None else end


class _Memo:
    """What a policy derives from its rules, kept per policy object: a policy is frozen,
    and ``decide`` asks for the same transitions on every change."""

    __slots__ = ("policy", "matching", "dimensions")

    def __init__(self, policy: Policy) -> None:
        # holding the policy keeps its id from being reused while the entry lives
        self.policy = policy
        self.matching: dict[tuple[str, str | None, str], tuple[ActionSpec, ...]] = {}
        self.dimensions = frozenset(r.dimension for r in policy.rules)


#: id(policy) -> its memo; few policies live at once (the loaded one, tests' variants).
_MEMOS: dict[int, _Memo] = {}
_MEMO_POLICIES = 16
_MEMO_ENTRIES = 4096


def _memo(policy: Policy) -> _Memo:
    memo = _MEMOS.get(id(policy))
    if memo is None or memo.policy is not policy:
        if len(_MEMOS) >= _MEMO_POLICIES:
            _MEMOS.clear()
        memo = _MEMOS[id(policy)] = _Memo(policy)
    return memo


class _File(_Settings):
    actions: dict[Channel, dict[str, dict[str, Any]]] = Field(default_factory=dict)
    rules: list[dict[str, Any]] = Field(default_factory=list)


def _top_line(text: str, loc: list[str]) -> int:
    """Line of an error in the top-level part of the file (settings, tables, channels)."""
    if len(loc) == 1:
        return line_of(text, "", key=loc[0])
    if loc[0] == "actions":
        return line_of(text, f"[actions.{loc[1]}.")
    if loc[0] == "rules":
        return line_of(text, "[[rules]]", int(loc[1]) if loc[1].isdigit() else 0)
    return line_of(text, f"[{loc[0]}]", key=loc[1])


def _rule_label(raw: dict[str, Any], i: int) -> str:
    return f"rule {i + 1} ({raw.get('dimension')} -> {raw.get('current')})"


class _RuleError(ValueError):
    """A rule that can never fire; ``key`` is the line's key (``current``, ``actions``...)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _check_rule(rule: Rule, actions: dict[str, ActionSpec], vocabulary: Vocabulary) -> None:
    """Refuse a rule that can never fire: unknown action, dimension or segment."""
    for a in rule.actions:
        if a not in actions:
            raise _RuleError(
                "actions", f"unknown action {a!r} (defined: {', '.join(sorted(actions))})"
            )
    error = vocabulary.dimension_error(rule.dimension)
    if error is not None:
        raise _RuleError("dimension", error)
    for key, seg in (("previous", rule.previous), ("current", rule.current)):
        error = None if seg is None else vocabulary.segment_error(rule.dimension, seg)
        if error is not None:
            raise _RuleError(key, error)
    if rule.previous == rule.current:
        raise _RuleError(
            "previous", f"previous and current are both {rule.current!r}: no change does that"
        )


def load_policy(text: str, vocabulary: Vocabulary | None = None) -> Policy:
    """Parse and validate a policy file; errors name the line and the action or rule.

    ``vocabulary`` says which segments exist (the configured cluster count, the custom
    segments); without it any ``cluster_<n>`` and any ``custom:<name>`` is accepted.
    """
    raw = load_toml(text, PolicyError)
    try:
        doc = _File.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = [str(p) for p in err["loc"] if p != "[key]"]
        raise PolicyError(f"line {_top_line(text, loc)}: {'.'.join(loc)}: {err['msg']}") from None
    actions: dict[str, ActionSpec] = {}
    for channel, table in doc.actions.items():
        for name, entry in table.items():
            header = f"[actions.{channel}.{name}]"
            try:
                spec = ActionSpec.model_validate({**entry, "channel": channel, "name": name})
            except ValidationError as exc:
                err = exc.errors(include_url=False)[0]
                field = ".".join(str(p) for p in err["loc"]) or None
                line = line_of(text, header, key=field)
                msg = err["msg"].removeprefix("Value error, ")
                msg = f"{field}: {msg}" if field else msg
                raise PolicyError(f"line {line}: action {channel}/{name}: {msg}") from None
            actions[spec.id] = spec
    rules = []
    for i, entry in enumerate(doc.rules):
        label = _rule_label(entry, i)
        try:
            rule = Rule.model_validate(entry)
            _check_rule(rule, actions, vocabulary or Vocabulary())
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            field = ".".join(str(p) for p in err["loc"])
            line = line_of(text, "[[rules]]", i, key=str(err["loc"][0]) if err["loc"] else None)
            raise PolicyError(f"line {line}: {label}: {field}: {err['msg']}") from None
        except _RuleError as exc:
            line = line_of(text, "[[rules]]", i, key=exc.key)
            raise PolicyError(f"line {line}: {label}: {exc}") from None
        rules.append(rule)
    try:
        return Policy(**doc.model_dump(exclude={"actions", "rules"}), actions=actions, rules=rules)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        raise PolicyError(f"line 1: {'.'.join(str(p) for p in err['loc'])}: {err['msg']}") from None


#: The shipped defaults (``segmenters/actions/actions.toml``; config/actions.toml links to it).
DEFAULT_POLICY_TEXT = resources.files(__package__).joinpath("actions.toml").read_text("utf-8")
DEFAULT_POLICY = load_policy(DEFAULT_POLICY_TEXT)
