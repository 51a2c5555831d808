"""Turning the times users pass into whole Unix seconds, or a clear error; UTC days. Pure."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

__all__ = [
    "DAY",
    "UNBOUNDED",
    "TimeLike",
    "day_start",
    "to_half_open",
    "to_unix",
    "utc_day",
]

TimeLike = int | datetime | date
"""What the time arguments accept: Unix seconds, an aware ``datetime`` or a ``date``."""

DAY = 86_400
"""Seconds in a UTC day: every UTC midnight is a multiple of it."""

UNBOUNDED = 1 << 62
"""The end :func:`to_half_open` gives an open-ended range: later than any time it accepts."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
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
        value = (value - date(1970, 1, 1)).days * DAY
    if value < 0:
        raise ValueError(f"{name} must be >= 0 (1970-01-01T00:00:00Z or later), got {value}")
    if value > _MAX:
        raise ValueError(f"{name} is after 9999-12-31, got {value}")
    return value


def to_half_open(start: object, end: object, *, open_ends: bool = False) -> tuple[int, int]:
    """Validate a half-open range ``[start, end)``: the one conversion every range goes through.

    A record at ``t`` is in the range when ``start <= t < end``. Both bounds round up to whole
    seconds, since for whole-second timestamps ``t >= start`` iff ``t >= ceil(start)`` and
    ``t < end`` iff ``t < ceil(end)``. See :func:`to_unix` for the types taken.

    Args:
        start: The first second.
        end: The exclusive end. ``None`` is now: the end of the current second
            (``int(time.time()) + 1``), so a record stamped this second is in the range.
        open_ends: Let ``None`` stand for an open end instead: ``0`` for ``start``,
            :data:`UNBOUNDED` for ``end`` (the store's reads).

    Raises:
        TypeError: A time of the wrong type.
        ValueError: A bad time, or an empty range: ``end`` at or before ``start``.
    """
    first = 0 if open_ends and start is None else to_unix(start, "start", round_up=True)
    if end is None:
        last = UNBOUNDED if open_ends else int(time.time()) + 1
    else:
        last = to_unix(end, "end", round_up=True)
    if last <= first:
        if last == first and _since_epoch(start) < _since_epoch(end):
            raise ValueError(
                f"[start, end) holds no whole second (both round up to {first}); widen the range"
            )
        relation = "equals start" if last == first else "is before start"
        raise ValueError(
            f"the range [start, end) is empty: end ({last}) {relation} ({first}); "
            "end is exclusive, so it must be after start"
        )
    return first, last


def day_start(timestamp: int) -> int:
    """The UTC midnight (Unix seconds) that begins the day ``timestamp`` falls on."""
    return timestamp - timestamp % DAY


def utc_day(timestamp: int) -> date:
    """The UTC date that Unix second ``timestamp`` falls on."""
    return date.fromordinal(_EPOCH_ORDINAL + timestamp // DAY)


def _since_epoch(value: object) -> timedelta:
    # Exact, for comparing already validated values of mixed types.
    if value is None:
        return timedelta.max
    if isinstance(value, datetime):
        return value - _EPOCH
    if isinstance(value, date):
        return value - date(1970, 1, 1)
    assert isinstance(value, int)
    return timedelta(seconds=value)
