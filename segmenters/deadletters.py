"""Dead letters for operators: reason kinds, the ranking, selections and payload views.

A dead letter (``segmenters.contract.DeadLetter``) is identified by where it sits in the
dead-letter topic, ``<partition>:<offset>`` (its id, as ``segstream deadletters`` prints
and takes it). Reasons carry variable parts (columns, sizes, times, the unknown type's
name); :func:`reason_kind` masks them, so 40 ``invalid JSON`` reasons that differ only in
their column count as one kind.

>>> reason_kind("invalid JSON: expected value at line 1 column 17")
'invalid JSON: expected value at line <n> column <n>'
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from segmenters.contract import DeadLetter


class SelectionError(ValueError):
    """A selector that does not parse (an id, a window, a line of a fixes file)."""


@dataclass(frozen=True, slots=True)
class Letter:
    """One dead letter and where it sits in the dead-letter topic."""

    partition: int
    offset: int
    letter: DeadLetter

    @property
    def id(self) -> str:
        return f"{self.partition}:{self.offset}"

    @property
    def at(self) -> float:
        """When it was dead-lettered, epoch seconds."""
        return self.letter.dead_lettered_at.timestamp()

    @property
    def kind(self) -> str:
        return reason_kind(self.letter.reason)

    @property
    def payload(self) -> bytes | None:
        """The original message's value."""
        v = self.letter.value_b64
        return None if v is None else base64.b64decode(v)

    @property
    def key(self) -> bytes | None:
        k = self.letter.key_b64
        return None if k is None else base64.b64decode(k)


def parse_letter(partition: int, offset: int, value: bytes) -> Letter:
    """The dead letter at ``partition:offset``; ``SelectionError`` if it is not one."""
    try:
        return Letter(partition, offset, DeadLetter.model_validate_json(value))
    except ValueError as exc:
        raise SelectionError(f"{partition}:{offset} is not a dead letter: {exc}") from None


# --------------------------------------------------------------------------- reason kinds

_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_UNKNOWN_TYPE = re.compile(r"^unknown type (?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:\d\d)?")
_SPAN = re.compile(r"\b\d+(?:\.\d+)? (?:days|hours|s)\b")
_NUMBER = re.compile(r"(?<![\w])\d+(?:\.\d+)?(?![\w])")


def reason_kind(reason: str) -> str:
    """The reason with its variable parts masked: numbers ``<n>``, times ``<time>``,
    durations ``<duration>``, an unknown type's name ``<type>``. Text in quotes is kept
    (the allowed values or pattern pydantic names), except the unknown type.

    >>> reason_kind("unknown type 'x1' (expected 'browse', 'cart')")
    "unknown type <type> (expected 'browse', 'cart')"
    >>> reason_kind("oversized: 70211 bytes > limit 65536")
    'oversized: <n> bytes > limit <n>'
    >>> reason_kind("missing field lines.0.sku; geo.country: String should match pattern "
    ...             "'^[A-Z]{2}$' (+2 more)")
    "missing field lines.<n>.sku; geo.country: String should match pattern '^[A-Z]{2}$' (+<n> more)"
    >>> reason_kind("occurred_at 2026-12-07T12:00:00Z is 5.0 hours ahead of the record "
    ...             "timestamp 2026-12-07T07:00:00.120000Z; limit SEGSTREAM_MAX_FUTURE_S=300")
    'occurred_at <time> is <duration> ahead of the record timestamp <time>; limit SEGSTREAM_MAX_FUTURE_S=<n>'
    """  # noqa: E501
    text = _UNKNOWN_TYPE.sub("unknown type <type>", reason)
    out, last = [], 0
    for m in _QUOTED.finditer(text):
        out.append(_mask(text[last : m.start()]))
        out.append(m.group())
        last = m.end()
    out.append(_mask(text[last:]))
    return "".join(out)


def _mask(text: str) -> str:
    text = _TIME.sub("<time>", text)
    text = _SPAN.sub("<duration>", text)
    return _NUMBER.sub("<n>", text)


def matches(letter: Letter, reason: str) -> bool:
    """``--reason``: a case-insensitive part of the reason or of its kind.

    >>> l = Letter(0, 1, DeadLetter.of(reason="invalid JSON: expected value at line 1 column 3",
    ...     topic="events.cart", partition=0, offset=1, key=None, value=b"x", at=0.0))
    >>> matches(l, "invalid json"), matches(l, "line <n> column <n>"), matches(l, "missing")
    (True, True, False)
    """
    wanted = reason.casefold()
    return wanted in letter.letter.reason.casefold() or wanted in letter.kind.casefold()


# --------------------------------------------------------------------------- the ranking


@dataclass(slots=True)
class KindRow:
    """One reason kind over a window: how many, an example, from where, when."""

    kind: str
    count: int = 0
    example: str = ""
    example_id: str = ""
    topics: dict[str, int] = field(default_factory=dict)
    first: float = 0.0
    last: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "count": self.count,
            "example": {"reason": self.example, "deadletter": self.example_id},
            "topics": dict(sorted(self.topics.items(), key=lambda kv: (-kv[1], kv[0]))),
            "first": iso(self.first),
            "last": iso(self.last),
        }


def rank(letters: Iterable[Letter], *, since: float | None = None) -> list[KindRow]:
    """Reason kinds, most frequent first (ties: the most recent first); the example of a
    kind is its latest dead letter.

    >>> def dl(reason, topic, at, offset):
    ...     return Letter(0, offset, DeadLetter.of(reason=reason, topic=topic, partition=0,
    ...                   offset=offset, key=None, value=None, at=at))
    >>> rows = rank([dl("invalid JSON: x at line 1 column 2", "events.cart", 10.0, 0),
    ...              dl("missing field sku", "events.cart", 11.0, 1),
    ...              dl("invalid JSON: x at line 1 column 9", "events.browse", 12.0, 2)])
    >>> [(r.kind, r.count, r.example_id, r.topics) for r in rows]  # doctest: +NORMALIZE_WHITESPACE
    [('invalid JSON: x at line <n> column <n>', 2, '0:2', {'events.cart': 1, 'events.browse': 1}),
     ('missing field sku', 1, '0:1', {'events.cart': 1})]
    >>> [r.kind for r in rank([dl("a", "t", 5.0, 0)], since=6.0)]
    []
    """
    rows: dict[str, KindRow] = {}
    for letter in letters:
        at = letter.at
        if since is not None and at < since:
            continue
        kind = letter.kind
        row = rows.get(kind)
        if row is None:
            row = rows[kind] = KindRow(kind, first=at, last=at)
        row.count += 1
        topic = letter.letter.topic
        row.topics[topic] = row.topics.get(topic, 0) + 1
        row.first = min(row.first, at)
        if at >= row.last or not row.example:
            row.last = max(row.last, at)
            row.example, row.example_id = letter.letter.reason, letter.id
    return sorted(rows.values(), key=lambda r: (-r.count, -r.last, r.kind))


def newest_first(letters: Iterable[Letter]) -> list[Letter]:
    """Most recently dead-lettered first (ties: the later position first)."""
    return sorted(letters, key=lambda x: (x.at, x.partition, x.offset), reverse=True)


# --------------------------------------------------------------------------- selectors

_SPAN_TEXT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: float) -> float | None:
    """``--since``: a span back from ``now`` (``90s``, ``30m``, ``24h``, ``7d``, ``2w``),
    an ISO-8601 time with a zone, or ``all`` (None: no bound).

    >>> parse_since("24h", 100000.0), parse_since("all", 5.0)
    (13600.0, None)
    >>> parse_since("1970-01-02T00:00:00Z", 0.0)
    86400.0
    """
    t = text.strip()
    if t.lower() == "all":
        return None
    m = _SPAN_TEXT.match(t.lower())
    if m:
        return now - float(m.group(1)) * _UNIT_S[m.group(2)]
    try:
        at = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise SelectionError(
            f"{text!r} is not a span (24h, 30m, 7d), an ISO-8601 time or 'all'"
        ) from None
    if at.tzinfo is None:
        raise SelectionError(f"{text!r} has no zone: add Z or an offset like +01:00")
    return at.astimezone(UTC).timestamp()


def parse_id(text: str) -> tuple[int, int]:
    """A dead letter's id ``<partition>:<offset>`` (in the dead-letter topic).

    >>> parse_id("3:17")
    (3, 17)
    """
    part, sep, off = text.strip().partition(":")
    if not sep or not part.isdigit() or not off.isdigit():
        raise SelectionError(
            f"{text!r} is not a dead letter's id <partition>:<offset> (e.g. 3:17, "
            "as `segstream deadletters show` prints it)"
        )
    return int(part), int(off)


# --------------------------------------------------------------------------- payloads


def payload_json(value: bytes | None) -> tuple[Any, str | None]:
    """The payload for JSON output and a fixes file: (payload, encoding). ``json``: the
    parsed value; ``text``: UTF-8 text that is not JSON; ``base64``: anything else; no
    value: (None, None).

    >>> payload_json(b'{"a": 1}'), payload_json(b"{nope"), payload_json(b"\\xff")
    (({'a': 1}, 'json'), ('{nope', 'text'), ('/w==', 'base64'))
    """
    if value is None:
        return None, None
    try:
        return orjson.loads(value), "json"
    except orjson.JSONDecodeError:
        pass
    try:
        return value.decode("utf-8"), "text"
    except UnicodeDecodeError:
        return base64.b64encode(value).decode(), "base64"


def payload_bytes(payload: Any, encoding: str | None) -> bytes:
    """What :func:`payload_json` gave (perhaps edited) as the message's value again: a
    string is sent as is with ``text``, decoded with ``base64``; anything else (an
    object, most often) as compact JSON.

    >>> payload_bytes({"a": 1}, "json"), payload_bytes("{nope", "text"), payload_bytes("/w==", "base64")
    (b'{"a":1}', b'{nope', b'\\xff')
    """  # noqa: E501
    if isinstance(payload, str) and encoding == "text":
        return payload.encode()
    if isinstance(payload, str) and encoding == "base64":
        try:
            return base64.b64decode(payload, validate=True)
        except ValueError:
            raise SelectionError("payload is not base64 (payload_encoding is base64)") from None
    return orjson.dumps(payload)


def payload_text(value: bytes | None, *, limit: int | None) -> str:
    """The payload for people: indented JSON, else the text, else base64; cut at
    ``limit`` characters with a note saying how much there is.

    >>> print(payload_text(b'{"a":[1]}', limit=None))
    {
      "a": [
        1
      ]
    }
    >>> payload_text(b"x" * 10, limit=4)
    'xxxx\\n... (10 bytes; the first 4 characters shown, --full for all)'
    >>> payload_text(None, limit=4)
    '(no value)'
    """
    if value is None:
        return "(no value)"
    parsed, encoding = payload_json(value)
    if encoding == "json":
        text = orjson.dumps(parsed, option=orjson.OPT_INDENT_2).decode()
    elif encoding == "text":
        text = parsed
    else:
        text = f"(not UTF-8; base64) {parsed}"
    if limit is not None and len(text) > limit:
        return (
            f"{text[:limit]}\n... ({len(value)} bytes; the first {limit} characters shown, "
            "--full for all)"
        )
    return text


def letter_json(letter: Letter) -> dict[str, Any]:
    """A dead letter for ``show --json``: also a line of a fixes file once its payload is
    edited (``redrive --from-file``). ``topic``, ``partition`` and ``offset`` are the
    original message's; ``deadletter`` is the dead letter's own id.

    >>> dl = Letter(2, 9, DeadLetter.of(reason="missing field sku", topic="events.cart",
    ...     partition=1, offset=4, key=b"c-1", value=b'{"type":"cart"}', at=0.0))
    >>> letter_json(dl)["payload"], letter_json(dl)["key"], letter_json(dl)["deadletter"]
    ({'type': 'cart'}, 'c-1', '2:9')
    """
    d = letter.letter
    key = letter.key
    payload, encoding = payload_json(letter.payload)
    doc: dict[str, Any] = {
        "deadletter": letter.id,
        "reason": d.reason,
        "kind": letter.kind,
        "topic": d.topic,
        "partition": d.partition,
        "offset": d.offset,
        "dead_lettered_at": d.dead_lettered_at.isoformat().replace("+00:00", "Z"),
    }
    try:
        doc["key"] = None if key is None else key.decode("utf-8")
    except UnicodeDecodeError:
        doc["key_b64"] = d.key_b64
    doc["payload"], doc["payload_encoding"] = payload, encoding
    return doc


@dataclass(frozen=True, slots=True)
class Fix:
    """A line of a fixes file: the dead letter it answers and the payload to send
    instead (and the key, if it changes)."""

    partition: int
    offset: int
    value: bytes
    key: bytes | None = None
    new_key: bool = False

    @property
    def id(self) -> str:
        return f"{self.partition}:{self.offset}"


def parse_fix(line: str) -> Fix:
    """One JSON line ``{"deadletter": "P:O", "payload": ..., "payload_encoding": ...}``
    (what ``show --json`` prints, edited); an optional ``"key"`` (a string, or null for
    none) replaces the original key.

    >>> parse_fix('{"deadletter": "1:5", "payload": {"type": "cart"}, "payload_encoding": "json"}')
    Fix(partition=1, offset=5, value=b'{"type":"cart"}', key=None, new_key=False)
    """
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise SelectionError(f"not a JSON line: {exc}") from None
    if not isinstance(doc, dict) or "deadletter" not in doc or "payload" not in doc:
        raise SelectionError('a line needs "deadletter" (<partition>:<offset>) and "payload"')
    partition, offset = parse_id(str(doc["deadletter"]))
    value = payload_bytes(doc["payload"], doc.get("payload_encoding"))
    if "key" in doc:
        key = doc["key"]
        if key is not None and not isinstance(key, str):
            raise SelectionError('"key" is a string (the customer_id) or null')
        return Fix(partition, offset, value, None if key is None else key.encode(), True)
    return Fix(partition, offset, value)


def message_digest(topic: str, key: bytes | None, value: bytes) -> str:
    """Names a message (topic, key, value) in the redrive ledger: the same message
    dead-lettered again, after a redrive or a redelivery, has the same digest.

    >>> d = message_digest("events.cart", b"c-1", b"{}")
    >>> d.startswith("msg:"), len(d), d == message_digest("events.cart", b"c-1", b"{}")
    (True, 36, True)
    >>> message_digest("events.cart", None, b"{}") != message_digest("events.cart", b"", b"{}")
    True
    """
    h = hashlib.sha256()
    for part in (topic.encode(), b"-" if key is None else b"+" + key, value):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return f"msg:{h.hexdigest()[:32]}"


def iso(at: float) -> str:
    """Epoch seconds as ISO-8601 UTC with ``Z``, to the second.

    >>> iso(0.5)
    '1970-01-01T00:00:00Z'
    """
    return datetime.fromtimestamp(int(at), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
