"""The one private cattrs converter: strict JSON-to-model structuring, no I/O."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from math import isfinite
from typing import Any, TypeVar

from attrs import frozen
from cattrs import Converter
from cattrs.errors import ClassValidationError, IterableValidationError
from cattrs.gen import make_dict_structure_fn
from cattrs.v import transform_error

from ._models import Balance, UsageRecord

__all__ = ["MAX_TOKENS", "Meta", "SchemaError", "UsagePayload", "structure"]

T = TypeVar("T")


MAX_TOKENS = 2**63 - 1
"""The most tokens one record, one answer's total, or one answer's records together may
hold: what a signed 64-bit integer (the store's, SQLite's) holds. Anything else is refused."""
_TOKENS_RULE = "expected 0 <= int < 2**63"


class SchemaError(ValueError):
    """Raised by :func:`structure` with a readable path, e.g. ``expected int @ $.tokens``."""


class _Refused(ValueError):
    """A value of the right type that the schema refuses; its message carries its full path,
    so it is reported as it is, from however deep in cattrs' nested errors."""


@frozen
class Meta:
    """The ``meta`` object of every answer."""

    code: int
    message: str
    request_id: str


@frozen
class UsagePayload:
    """The ``data`` object of a usage answer."""

    records: list[UsageRecord]
    total_tokens: int


def _strict_int(value: Any, _: Any) -> int:
    # cattrs would coerce "7", 1.9 and True to int; an API that sends those is broken.
    if type(value) is int:
        return value
    raise TypeError(f"expected int, got {type(value).__name__}")


def _strict_str(value: Any, _: Any) -> str:
    if type(value) is str:
        return value
    raise TypeError(f"expected str, got {type(value).__name__}")


def _money(value: Any) -> Decimal:
    if type(value) is int:
        return Decimal(value)
    if type(value) is float and isfinite(value):
        # repr() is the shortest text that round-trips, i.e. what the server wrote.
        return Decimal(repr(value))
    raise TypeError(f"expected a finite number, got {type(value).__name__}")


def _structure_balance(value: Any, _: Any) -> Balance:
    if type(value) is not dict:
        raise TypeError(f"expected object, got {type(value).__name__}")
    exact = value.get("balance_str")
    if exact is not None:
        if type(exact) is not str:
            raise TypeError("expected str @ $.data.balance_str")
        try:
            balance = Decimal(exact)
        except InvalidOperation:
            raise ValueError("expected a decimal string @ $.data.balance_str") from None
        if not balance.is_finite():
            raise ValueError("expected a finite decimal @ $.data.balance_str")
    else:
        balance = _money_field(value, "balance")
    currency = value.get("currency_code")
    if type(currency) is not str:
        raise TypeError("expected str @ $.data.currency_code")
    return Balance(
        balance=balance,
        currency_code=currency,
        coupon_balance=_money_field(value, "coupon_balance"),
        credit_limit=_money_field(value, "credit_limit"),
        total_coupon_amount=_money_field(value, "total_coupon_amount"),
    )


def _money_field(data: dict[str, Any], name: str) -> Decimal:
    if name not in data:
        raise KeyError(f"missing field @ $.data.{name}")
    try:
        return _money(data[name])
    except TypeError as exc:
        raise TypeError(f"{exc} @ $.data.{name}") from None


_converter = Converter(detailed_validation=True, forbid_extra_keys=False)
_converter.register_structure_hook(int, _strict_int)
_converter.register_structure_hook(str, _strict_str)
_converter.register_structure_hook(Balance, _structure_balance)
_record_hook = make_dict_structure_fn(UsageRecord, _converter)
_converter.register_structure_hook(UsageRecord, _record_hook)
_checked_records = _converter.get_structure_hook(list[UsageRecord])


# UsageRecord has no validators or converters, so building it through its slots is the same
# object as UsageRecord(...) at two thirds of the cost; this loop runs once per record.
_new_record = object.__new__
_set_timestamp = UsageRecord.__dict__["timestamp"].__set__
_set_tokens = UsageRecord.__dict__["tokens"].__set__
_set_model = UsageRecord.__dict__["model"].__set__


def _structure_records(value: Any, _: Any) -> list[UsageRecord]:
    # The hot path: a million records must not pay for cattrs' generic machinery.
    # Anything unusual falls through to the generated, detailed hook for the error message.
    if type(value) is not list:
        raise TypeError(f"expected list, got {type(value).__name__}")
    records: list[UsageRecord] = []
    append = records.append
    total = 0
    # One str per distinct model, not one per record (a third of a record's memory).
    models: dict[str, str] = {}
    shared = models.setdefault
    try:
        for item in value:
            timestamp = item["timestamp"]
            tokens = item["tokens"]
            model = item["model"]
            if (
                type(timestamp) is not int
                or type(tokens) is not int
                or type(model) is not str
                or tokens < 0
            ):
                break
            total += tokens
            record = _new_record(UsageRecord)
            _set_timestamp(record, timestamp)
            _set_tokens(record, tokens)
            _set_model(record, shared(model, model))
            append(record)
        else:
            # With every count >= 0, a sum that fits means every count fits.
            if total > MAX_TOKENS:
                _check_tokens(records)
            return records
    except (TypeError, KeyError, IndexError):
        pass
    result: list[UsageRecord] = _checked_records(value, list[UsageRecord])
    _check_tokens(result)
    return result


def _check_tokens(records: list[UsageRecord]) -> None:
    """Refuse a count outside ``[0, 2**63)``, or counts whose sum is outside it (one day's
    sum must fit the store), naming the first record at fault."""
    total = 0
    for index, record in enumerate(records):
        tokens = record.tokens
        if not 0 <= tokens <= MAX_TOKENS:
            raise _Refused(f"{_TOKENS_RULE} @ $.data.records[{index}].tokens (got {tokens})")
        total += tokens
    if total > MAX_TOKENS:
        raise _Refused(f"{_TOKENS_RULE} @ $.data.records (their tokens add up to {total})")


def _structure_usage(value: Any, _: Any) -> UsagePayload:
    payload = _generated_usage(value, UsagePayload)
    total = payload.total_tokens
    if not 0 <= total <= MAX_TOKENS:
        raise _Refused(f"{_TOKENS_RULE} @ $.data.total_tokens (got {total})")
    return payload


def _find_refused(exc: BaseException) -> _Refused | None:
    if isinstance(exc, _Refused):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        found = _find_refused(inner)
        if found is not None:
            return found
    return None


_converter.register_structure_hook_func(lambda t: t == list[UsageRecord], _structure_records)
_generated_usage = make_dict_structure_fn(UsagePayload, _converter)
_converter.register_structure_hook(UsagePayload, _structure_usage)
_structure_meta = make_dict_structure_fn(Meta, _converter)
_converter.register_structure_hook(Meta, _structure_meta)


def structure(value: Any, cls: type[T], path: str) -> T:
    """Structure ``value`` into ``cls`` strictly, or raise :class:`SchemaError`.

    Args:
        value: Decoded JSON.
        cls: One of :class:`Meta`, :class:`UsagePayload`, :class:`Balance`.
        path: Where ``value`` sits in the answer, for messages (``"$.data"``).
    """
    try:
        return _converter.structure(value, cls)
    except (ClassValidationError, IterableValidationError) as exc:
        refused = _find_refused(exc)
        if refused is not None:
            raise SchemaError(str(refused)) from None
        messages = transform_error(exc, path=path)
        raise SchemaError("; ".join(messages[:3])) from None
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        detail = str(exc).strip("'\"") or type(exc).__name__
        if " @ $" not in detail:
            detail = f"{detail} @ {path}"
        raise SchemaError(detail) from None
