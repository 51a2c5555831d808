"""Turning one HTTP answer (status, headers, body bytes) into data or a typed error. No I/O."""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from attrs import evolve, frozen

from ._converter import Meta, SchemaError, UsagePayload, structure
from ._exceptions import MalformedResponseError, api_error_class
from ._models import Balance, UsageRecord
from ._retry import parse_retry_after
from ._speedups import decode_clean_usage

T = TypeVar("T")

__all__ = ["Redact", "UsageAnswer", "decode_balance", "decode_usage"]

Redact = Callable[[str], str]
"""Removes secrets from text the server sent before it reaches an exception."""

_SUCCESS_CODES = frozenset({0, 200})
_SNIPPET = 120
_SCAN = 64 * 1024  # how much of a body is searched for an echoed key before it is cut
_NOT_JSON: Any = object()


@frozen
class UsageAnswer:
    """A decoded, schema-checked usage answer for one window."""

    payload: UsagePayload
    request_id: str


def _no_constants(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_no_constants)


def _loads(body: bytes) -> Any:
    # json.loads(body, parse_constant=...) builds a new decoder and scanner on every call.
    return _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))


def _snippet(body: bytes, redact: Redact) -> str:
    # Redact before cutting: a cut through an echoed key would leave part of it unredacted.
    # A key has no whitespace, so dropping the last word of a scan cut short drops any part
    # of a key that the cut went through.
    words = body[:_SCAN].decode("utf-8", "replace").split()
    if len(body) > _SCAN:
        words = words[:-1]
    text = redact(" ".join(words))
    return repr(text[:_SNIPPET] + ("..." if len(text) > _SNIPPET else ""))


def _reason(body: bytes, redact: Redact) -> str:
    if not body.strip():
        return "empty body"
    return f"non-JSON body: {_snippet(body, redact)}"


def _check(status: int, headers: Mapping[str, str], body: bytes, redact: Redact) -> tuple[Any, str]:
    """Raise for any error answer; return ``(data, request_id)`` for a success envelope."""
    try:
        document = _loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: a hostile or broken body nested thousands of levels deep.
        document = _NOT_JSON
    meta_value = document.get("meta") if type(document) is dict else None
    meta: Meta | None = None
    meta_problem = "missing field @ $.meta"
    if meta_value is not None:
        try:
            meta = structure(meta_value, Meta, "$.meta")
        except SchemaError as exc:
            meta_problem = str(exc)
    # Every field kept or printed from an answer is scrubbed like the message: a gateway may
    # echo the Authorization header as the request id.
    raw_id = meta.request_id if meta else _loose_request_id(meta_value)
    request_id = None if raw_id is None else redact(raw_id)

    if not 200 <= status <= 299:
        if meta is not None:
            message = redact(meta.message) or f"HTTP {status}"
            code: int | None = meta.code
        else:
            message = (
                _reason(body, redact)
                if document is _NOT_JSON
                else f"JSON body without the error envelope: {_snippet(body, redact)}"
            )
            code = None
        raise api_error_class(status)(
            message,
            status=status,
            code=code,
            request_id=request_id,
            retry_after=parse_retry_after(headers.get("Retry-After")),
        )
    if document is _NOT_JSON:
        raise MalformedResponseError(_reason(body, redact), status=status)
    if type(document) is not dict or "meta" not in document:
        raise MalformedResponseError("not the {meta, data} envelope", status=status)
    if meta is None:
        raise MalformedResponseError(redact(meta_problem), status=status, request_id=request_id)
    if meta.code not in _SUCCESS_CODES:
        raise api_error_class(meta.code)(
            redact(meta.message) or f"meta.code {meta.code}",
            status=status,
            code=meta.code,
            request_id=request_id,
            retry_after=parse_retry_after(headers.get("Retry-After")),
        )
    if "data" not in document:
        raise MalformedResponseError("missing field @ $.data", status=status, request_id=request_id)
    assert request_id is not None  # meta was structured, so it had one
    return document["data"], request_id


def _loose_request_id(meta: Any) -> str | None:
    if type(meta) is dict:
        value = meta.get("request_id")
        if type(value) is str:
            return value
    return None


def decode_usage(
    status: int, headers: Mapping[str, str], body: bytes, redact: Redact
) -> UsageAnswer:
    """Decode a ``/usage`` answer.

    Raises:
        APIError: An error status, or a success status whose ``meta.code`` is neither 0 nor 200.
        MalformedResponseError: Not JSON, not the envelope, or not the schema.
    """
    # Decoding a window allocates a dict and a record per entry. With the cyclic collector on,
    # every 700 allocations trigger a young collection, and as the old generations fill, full
    # ones over every record held so far (profiled: about a third of the parse time). This step
    # is synchronous and creates no cycles, so the collector is paused for it.
    collecting = gc.isenabled()
    if collecting:
        gc.disable()
    try:
        # The fast decoder (the speedups extra) takes only clean successes with nothing to
        # scrub; for anything else the pure decoder below decides, and words the error.
        echoes = _may_echo(body, redact)
        clean = None if echoes or not 200 <= status <= 299 else decode_clean_usage(body)
        if clean is not None:
            meta, payload = clean
            return UsageAnswer(payload, redact(meta.request_id))
        data, request_id = _check(status, headers, body, redact)
        payload = _structure_data(data, UsagePayload, status, request_id, redact)
        if echoes:
            payload = _scrub_models(payload, redact)
    finally:
        if collecting:
            gc.enable()
    return UsageAnswer(payload, request_id)


def decode_balance(status: int, headers: Mapping[str, str], body: bytes, redact: Redact) -> Balance:
    """Decode a ``/balance`` answer; see :func:`decode_usage` for the errors."""
    data, request_id = _check(status, headers, body, redact)
    balance = _structure_data(data, Balance, status, request_id, redact)
    return evolve(balance, currency_code=redact(balance.currency_code), request_id=request_id)


def _may_echo(body: bytes, redact: Redact) -> bool:
    """Whether the answer may hold the key anywhere (so its strings need scrubbing).

    One search of the raw body, instead of one per record: the key is ASCII, so in a UTF-8
    body its bytes appear as they are, unless a JSON escape (or another encoding) spells it.
    """
    if b"\\u" in body or body[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in body[:4]:
        return True
    text = body.decode("latin-1")
    return redact(text) != text


def _scrub_models(payload: UsagePayload, redact: Redact) -> UsagePayload:
    records = [
        r if redact(r.model) == r.model else UsageRecord(r.timestamp, r.tokens, redact(r.model))
        for r in payload.records
    ]
    return UsagePayload(records, payload.total_tokens)


def _structure_data(data: Any, cls: type[T], status: int, request_id: str, redact: Redact) -> T:
    """``data`` as ``cls``, or the :class:`MalformedResponseError` that says where it differs."""
    try:
        return structure(data, cls, "$.data")
    except SchemaError as exc:
        raise MalformedResponseError(
            redact(str(exc)), status=status, request_id=request_id
        ) from None
