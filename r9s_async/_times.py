"""Turning the times users pass into whole Unix seconds, or a clear error."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

__all__ = ["TimeLike", "to_range", "to_unix"]

TimeLike = int | datetime | date
"""What the time arguments accept: Unix seconds, an aware ``datetime`` or a ``date``."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)
_MAX = 253_402_300_799  # 9999-12-31T23:59:59Z


def to_unix(value: object, name: str, *, round_up: bool = False) -> int:
    """Whole Unix seconds for ``value``.

    Args:
        value: ``int`` seconds (>= 0), a timezone-aware ``datetime`` or a ``date`` (UTC midnight).
        name: The argument's name, for messages.
        round_up: Round a fractional ``datetime`` up instead of down (for range starts).

    Raises:
        TypeError: ``bool``, ``str``, ``float`` or anything else.
        ValueError: Negative or too large seconds, naive ``datetime``.
    """
    if isinstance(value, bool) or not isinstance(value, int | datetime | date):
        raise TypeError(
            f"{name} must be int Unix seconds, an aware datetime or a date, "
            f"not {type(value).__name__}"
        )
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"{name} is a naive datetime; give it a timezone, "
                "e.g. datetime(..., tzinfo=timezone.utc)"
            )
        seconds, rest = divmod(value - _EPOCH, _SECOND)
        value = seconds + (1 if round_up and rest else 0)
    elif isinstance(value, date):
        value = (value - date(1970, 1, 1)).days * 86_400
    if value < 0:
        raise ValueError(f"{name} must be >= 0 (1970-01-01T00:00:00Z or later), got {value}")
    if value > _MAX:
        raise ValueError(f"{name} is after 9999-12-31, got {value}")
    return value


def to_range(start: object, end: object) -> tuple[int, int]:
    """Validate a ``(start, end)`` pair; see :func:`to_unix`.

    Fractional datetimes are narrowed to the whole seconds inside them.

    Raises:
        ValueError: ``end`` is before ``start``.
    """
    first = to_unix(start, "start", round_up=True)
    last = to_unix(end, "end")
    if last < first:
        if _since_epoch(start) <= _since_epoch(end):
            raise ValueError(
                f"[start, end] holds no whole second (start rounds up to {first}, "
                f"end rounds down to {last}); widen the range"
            )
        raise ValueError(f"end ({last}) is before start ({first})")
    return first, last


def _since_epoch(value: object) -> timedelta:
    # Exact, for comparing already validated values of mixed types.
    if isinstance(value, datetime):
        return value - _EPOCH
    if isinstance(value, date):
        return value - date(1970, 1, 1)
    assert isinstance(value, int)
    return timedelta(seconds=value)
