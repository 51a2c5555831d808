"""Rate-limit headers a server may send, read into one :class:`RateLimits`. No I/O.

Three families are read, whichever the server sends:

- the IETF structured-field drafts (-08 on): ``RateLimit-Policy: "default";q=100;w=60``
  (quota ``q`` per window ``w`` seconds; several policies may be listed) and
  ``RateLimit: "default";r=50;t=30`` (``r`` left, ``t`` seconds to the reset);
- the older drafts: ``RateLimit-Limit``, ``RateLimit-Remaining``, ``RateLimit-Reset`` (delta
  seconds) and ``RateLimit-Policy: 10;w=1;burst=5``;
- the common ``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset``, whose reset may be delta
  seconds, a Unix time (as GitHub sends) or an HTTP date.

Nonsense is ignored (as :func:`parse_retry_after` does): a header that cannot be read never
fails a call, it only tells the throttle nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from attrs import frozen

__all__ = ["RateLimits", "parse_rate_limits"]

_MAX_RESET = 24 * 3600.0  # beyond a day the value is nonsense, not advice
# A quota per hour or day says little about the pace of a short call (1000 per hour may be
# spent in one burst): only windows up to this long set a rate; longer ones act through
# remaining and reset.
_PACING_WINDOW = 60.0
_EPOCH_AFTER = 1_000_000_000  # a reset larger than this is a Unix time, not a delta
_INT = re.compile(r"[0-9]{1,18}", re.ASCII)
_NUMBER = re.compile(r"[0-9]{1,18}(?:\.[0-9]{1,9})?", re.ASCII)
_KEY = re.compile(r"[a-z*][a-z0-9_.*-]*", re.ASCII)


@frozen
class RateLimits:
    """What the server said about its limits in one answer; ``None`` where it said nothing.

    Attributes:
        rate: Requests per second it allows (the tightest of its policies).
        burst: Requests it allows at once, if it says.
        remaining: Requests left before the reset.
        reset: Seconds until ``remaining`` is refilled.
    """

    rate: float | None = None
    burst: int | None = None
    remaining: int | None = None
    reset: float | None = None

    @property
    def empty(self) -> bool:
        """Whether the answer said nothing usable."""
        return self == _NOTHING


_NOTHING = RateLimits()


def parse_rate_limits(headers: Mapping[str, str], *, now: datetime | None = None) -> RateLimits:
    """The limits the answer's ``headers`` announce (case-insensitive names), or an empty
    :class:`RateLimits` when it announces none that can be read."""
    get = _getter(headers)
    rate: float | None = None
    burst: int | None = None
    for quota, window, policy_burst in _policies(get("ratelimit-policy")):
        per_second = quota / window
        if rate is None or per_second < rate:
            rate, burst = per_second, policy_burst
    remaining, reset = _structured_limit(get("ratelimit"))
    limit_value = get("ratelimit-limit") or get("x-ratelimit-limit")
    if rate is None and limit_value is not None and ";" in limit_value:
        # "RateLimit-Limit: 10, 10;w=1" (draft -03): the policy rides along with the limit.
        for quota, window, policy_burst in _policies(limit_value):
            per_second = quota / window
            if rate is None or per_second < rate:
                rate, burst = per_second, policy_burst
    if remaining is None:
        remaining = _int(get("ratelimit-remaining") or get("x-ratelimit-remaining"))
    if reset is None:
        reset = _reset(get("ratelimit-reset"), now, allow_dates=False)
    if reset is None:
        reset = _reset(get("x-ratelimit-reset"), now, allow_dates=True)
    return RateLimits(rate, burst, remaining, reset)


def _getter(headers: Mapping[str, str]) -> Callable[[str], str | None]:
    lowered: dict[str, str] | None = None

    def get(name: str) -> str | None:
        nonlocal lowered
        if lowered is None:
            # aiohttp's headers are case-insensitive already; a plain dict is not.
            lowered = {k.lower(): v for k, v in headers.items()}
        value = lowered.get(name)
        return value.strip() if isinstance(value, str) else None

    return get


def _members(value: str | None) -> list[tuple[str, dict[str, str]]]:
    """The members of a structured-field list: ``(item, {param: value})``."""
    if not value or len(value) > 4096:
        return []
    members = []
    for part in value.split(","):
        pieces = [p.strip() for p in part.split(";")]
        item, params = pieces[0], {}
        for piece in pieces[1:]:
            key, sep, raw = piece.partition("=")
            key = key.strip().lower()
            if not sep or not _KEY.fullmatch(key):
                continue
            params[key] = raw.strip().strip('"')
        members.append((item, params))
    return members


def _policies(value: str | None) -> list[tuple[int, float, int | None]]:
    """``(quota, window seconds, burst)`` of every readable policy."""
    policies = []
    for item, params in _members(value):
        # -08 and later: the quota is the "q" parameter; earlier drafts: the item itself.
        quota = _int(params["q"]) if "q" in params else _int(item)
        window = _number(params.get("w"))
        if quota is None or quota <= 0 or window is None or not 0 < window <= _PACING_WINDOW:
            continue
        burst = _int(params.get("burst"))
        policies.append((quota, window, burst if burst and burst > 0 else None))
    return policies


def _structured_limit(value: str | None) -> tuple[int | None, float | None]:
    """``(remaining, reset)`` from ``RateLimit: "default";r=50;t=30``: the tightest member."""
    remaining: int | None = None
    reset: float | None = None
    for _, params in _members(value):
        r = _int(params.get("r"))
        t = _number(params.get("t"))
        if r is None:
            continue
        if remaining is None or r < remaining:
            remaining, reset = r, t if t is not None and t <= _MAX_RESET else None
    return remaining, reset


def _int(value: str | None) -> int | None:
    if value is None or not _INT.fullmatch(value.strip()):
        return None
    return int(value)


def _number(value: str | None) -> float | None:
    if value is None or not _NUMBER.fullmatch(value.strip()):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _reset(value: str | None, now: datetime | None, *, allow_dates: bool) -> float | None:
    if not value:
        return None
    seconds = _number(value)
    current = now or datetime.now(UTC)
    if seconds is not None:
        if seconds > _EPOCH_AFTER:
            if not allow_dates:
                return None
            seconds -= current.timestamp()  # a Unix time
    elif allow_dates:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - current).total_seconds()
    else:
        return None
    seconds = max(seconds, 0.0)
    return seconds if seconds <= _MAX_RESET else None
