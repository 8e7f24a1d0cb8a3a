"""Stored documents: the state as JSON compressed with a dictionary of the schema's words,
the action document, and reading every form written before (tagged zstd, deflate, JSON)."""

from __future__ import annotations

import zlib
from typing import Any

import orjson
import zstandard

from segmenters.actions.document import ActionDoc
from segmenters.state import CustomerState


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _zdict() -> bytes:
    """Deflate's preset dictionary for state documents: only schema words (field names,
    dimensions, built-in segments, contract enums, topic names), never data. Small
    documents share little within themselves; with it they shrink to a third.

    It is part of the stored format (tag ``\\x01``): never change it; add a new tag.
    """
    from segmenters.dimensions import journey, rfm

    words = [
        '{"customer_id":"","state_version":2,"first_seen":1767261600.0,"last_seen":',
        '"events":,"orders":,"revenue":,"items":,"first_order_at":,"last_order_at":',
        '"refunds":,"refunded":,"views":[,"cart_adds":[,"cart":{,"cart_at":,"bought":{',
        '"categories":{,"devices":{"mobile":,"desktop":,"tablet":,"other":}',
        '"channels":{"web":,"app":,"store":,"other":},"geo":{"country":"","region":"",',
        '"city":""},"geo_at":,"profile":{"birth_year":,"gender":"female","male",',
        '"income_band":,"language":,"marketing_consent":true,false},"segments":{',
        '"journey":["","rfm":["","behaviour":["cluster_","demographic":["',
        '"geographic":["',
        *(f'"{seg}",' for seg in (*journey.SEGMENTS, *rfm.SEGMENTS)),
        '"eval_at":,"offsets":{"events.browse/","events.cart/","events.purchase/",',
        '"events.profile/"},"order_ids":["',
    ]
    return "".join(reversed(words)).encode()  # deflate prefers what comes last


ZDICT_V1 = _zdict()
DOC_ZDICT_V1 = b"\x01"


#: Zstandard with ``ZDICT_V1`` as a raw-content dictionary: the documents come out as
#: small as deflate's (about 300 bytes from 850 of JSON on the bench workload) at a
#: quarter of the time (5 us against 20 us a write, and encoding was the largest stage
#: of a batch). Tag ``\x02``; ``\x01`` (deflate) stays readable: documents written before
#: are read as they are and rewritten in the new form by their next write.
DOC_ZSTD_V1 = b"\x02"
_ZSTD_DICT = zstandard.ZstdCompressionDict(ZDICT_V1, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
_ZSTD = zstandard.ZstdCompressor(
    level=1, dict_data=_ZSTD_DICT, write_checksum=False, write_dict_id=False
)
_UNZSTD = zstandard.ZstdDecompressor(dict_data=_ZSTD_DICT)


def encode_state(state: CustomerState) -> bytes:
    """The stored document: JSON compressed with a dictionary of the schema's words
    (``DOC_ZSTD_V1``): about a third of the bytes. Memory per customer is what a
    Redis-backed state pays for (docs/performance.md)."""
    return DOC_ZSTD_V1 + _ZSTD.compress(orjson.dumps(state.to_doc()))


_encode = encode_state


def load_doc(raw: bytes | str | None) -> dict[str, Any] | None:
    """A stored document as a dict: tagged compressed (zstd or deflate, each with the
    schema dictionary), or plain JSON (older writes)."""
    if not raw:
        return None
    if isinstance(raw, str):
        raw = raw.encode("latin-1")
    tag = raw[:1]
    if tag == DOC_ZSTD_V1:
        raw = _UNZSTD.decompress(raw[1:])
    elif tag == DOC_ZDICT_V1:
        d = zlib.decompressobj(-15, ZDICT_V1)
        raw = d.decompress(raw[1:]) + d.flush()
    elif tag != b"{":
        raw = zlib.decompress(raw)
    return dict(orjson.loads(raw))


def decode_actions(raw: bytes | str | None, customer_id: str) -> ActionDoc | None:
    """The ``act`` field of a customer's hash (JSON), or None when it has none."""
    if not raw:
        return None
    return ActionDoc.from_doc(orjson.loads(raw), customer_id)


def _decode(doc: bytes | str | None) -> CustomerState | None:
    raw = load_doc(doc)
    return None if raw is None else CustomerState.from_doc(raw)
