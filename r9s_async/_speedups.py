"""The optional fast decoder of ``/usage`` answers (``r9s_async[speedups]``, msgspec): clean
successes only, everything else is left to the pure decoder. No I/O."""

from __future__ import annotations

from operator import attrgetter
from typing import Any

from attrs import frozen

from ._converter import MAX_TOKENS, Meta, UsagePayload
from ._models import UsageRecord

__all__ = ["decode_clean_usage", "intern_models", "speedups_enabled"]

_SUCCESS_CODES = frozenset({0, 200})


@frozen
class _Envelope:
    meta: Meta
    data: UsagePayload


_decoder: Any = None
_decode_error: type[Exception] = Exception
try:
    import msgspec
except ImportError:  # the extra is not installed: the pure decoder does everything
    pass
else:
    # Decodes straight into our attrs classes. msgspec never coerces ("5", 5.0, true and null
    # are errors for an int), like our cattrs hooks; what it cannot check is left to us below.
    _decoder = msgspec.json.Decoder(_Envelope)
    _decode_error = msgspec.MsgspecError

_tokens = attrgetter("tokens")
_set_model = UsageRecord.__dict__["model"].__set__


def speedups_enabled() -> bool:
    """Whether ``/usage`` answers are decoded with msgspec (the ``speedups`` extra)."""
    return _decoder is not None


def decode_clean_usage(body: bytes) -> tuple[Meta, UsagePayload] | None:
    """The meta and payload of a body that is exactly a successful ``/usage`` envelope.

    ``None`` for anything else: not JSON, another schema, a ``meta.code`` that is not a
    success, a token count outside ``[0, 2**63)``, or msgspec not installed. The pure decoder
    then decides, so errors read the same with and without the extra.
    """
    if _decoder is None:
        return None
    try:
        envelope: _Envelope = _decoder.decode(body)
    except _decode_error:
        return None
    meta, payload = envelope.meta, envelope.data
    if meta.code not in _SUCCESS_CODES or not 0 <= payload.total_tokens <= MAX_TOKENS:
        return None
    records = payload.records
    # msgspec decodes ints of any size; the pure path's bound, at C speed: with every count
    # >= 0, a sum that fits means every count fits.
    if records and (min(map(_tokens, records)) < 0 or sum(map(_tokens, records)) > MAX_TOKENS):
        return None
    intern_models(records)
    return meta, payload


def intern_models(records: list[UsageRecord]) -> None:
    """Make records with equal model names share one ``str`` (a decoder allocates one per
    record: 60 bytes each, a third of a record's memory)."""
    seen: dict[str, str] = {}
    shared = seen.setdefault
    for record in records:
        model = record.model
        first = shared(model, model)
        if first is not model:
            _set_model(record, first)
