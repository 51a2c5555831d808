"""Retry timing: exponential backoff with full jitter and ``Retry-After`` parsing. No I/O."""

from __future__ import annotations

import math
import random
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["BACKOFF_BASE", "BACKOFF_CAP", "backoff_delay", "parse_retry_after"]

BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
RETRY_AFTER_MAX = 24 * 3600.0  # beyond a day the value is nonsense, not advice
# RFC 9110 delta-seconds is 1*DIGIT; a decimal fraction is tolerated. float() alone would also
# take "nan", "-0", "1e3", "1_0" and "+5".
_DELTA_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)


def backoff_delay(
    retry: int, rng: random.Random, *, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP
) -> float:
    """Seconds to wait before retry number ``retry`` (0-based).

    Full jitter: uniform in ``[0, min(cap, base * 2**retry)]``.
    """
    return rng.uniform(0.0, min(cap, base * 2.0 ** min(retry, 64)))


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date), or ``None``.

    Nonsense (``soon``, negative, NaN, infinite, or more than a day away) is ignored.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELTA_SECONDS.fullmatch(text):
        seconds = float(text)
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
        seconds = max(seconds, 0.0)
    if not math.isfinite(seconds) or seconds < 0 or seconds > RETRY_AFTER_MAX:
        return None
    return seconds
