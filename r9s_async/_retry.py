"""The retry rule: which failures are retried, how long to wait, when to give up. No I/O.

:func:`decide_retry` is the whole policy: for a failed attempt it answers "give up" (``None``)
or a :class:`Retry` (wait this long, and tell the client-wide throttle this).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from attrs import frozen

from ._exceptions import APIConnectionError, APIError, R9sError, RateLimitError

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "RETRYABLE_STATUSES",
    "RETRY_AFTER_CAP",
    "Retry",
    "RetryEvent",
    "RetryHook",
    "backoff_delay",
    "decide_retry",
    "is_retryable",
    "parse_retry_after",
]

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
RETRY_AFTER_CAP = 120.0
"""A ``Retry-After`` longer than this (seconds) is not waited out: the error is raised."""

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


def is_retryable(error: APIError) -> bool:
    """Whether an API error is worth another attempt (transient by its status or code)."""
    return error.status in RETRYABLE_STATUSES or (
        200 <= error.status <= 299 and error.code in RETRYABLE_STATUSES
    )


@frozen
class Retry:
    """Try again: what :func:`decide_retry` answers for a failure worth another attempt.

    Attributes:
        wait: Seconds until the next attempt: the server's ``Retry-After`` or our backoff.
        retry_after: The server's ``Retry-After``, if it gave one: the throttle pauses for it.
        rate_limited: The failure was a 429: the throttle lowers the client's pace.
    """

    wait: float
    retry_after: float | None
    rate_limited: bool


def decide_retry(
    failure: R9sError, retry: int, *, max_retries: int, backoff: Callable[[int], float]
) -> Retry | None:
    """Whether and when to try again after ``failure`` of retry number ``retry`` (0-based).

    Connection errors, timeouts and transient API errors (:func:`is_retryable`) are retried
    up to ``max_retries`` times; anything else, or a ``Retry-After`` over
    :data:`RETRY_AFTER_CAP`, gives up (``None``). The server's ``Retry-After`` replaces our
    guess, ``backoff(retry)``.
    """
    transient = isinstance(failure, APIConnectionError) or (
        isinstance(failure, APIError) and is_retryable(failure)
    )
    if not transient or retry >= max_retries:
        return None
    retry_after = failure.retry_after if isinstance(failure, APIError) else None
    if retry_after is not None and retry_after > RETRY_AFTER_CAP:
        # Waiting minutes inside a call helps nobody: say so, with the server's figure.
        return None
    wait = retry_after if retry_after is not None else backoff(retry)
    return Retry(wait, retry_after, isinstance(failure, RateLimitError))


@frozen
class RetryEvent:
    """One failed attempt that is about to be retried; passed to ``on_retry``.

    Attributes:
        path: ``"/usage"`` or ``"/balance"``.
        window: ``(start_time, end_time)`` the attempt asked for, or ``None`` for balance.
        attempt: The number of the attempt that failed (1 for the first).
        wait: Seconds until the next attempt: the server's ``Retry-After`` or our backoff.
            Client-wide pacing after a 429 may hold it back a little longer.
        status: The HTTP status of the failed attempt, or ``None`` if none arrived.
        request_id: The request id the server gave, if any.
        error: What went wrong.
    """

    path: str
    window: tuple[int, int] | None
    attempt: int
    wait: float
    status: int | None
    request_id: str | None
    error: R9sError


RetryHook = Callable[[RetryEvent], None]
