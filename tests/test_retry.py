"""Retry timing: full-jitter exponential backoff, and ``Retry-After`` as seconds or a date."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from r9s_async import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    ConfigurationError,
    MalformedResponseError,
    R9sError,
    RateLimitError,
    ServerError,
)
from r9s_async._retry import (
    BACKOFF_BASE,
    BACKOFF_CAP,
    RETRY_AFTER_CAP,
    RETRYABLE_STATUSES,
    Retry,
    backoff_delay,
    decide_retry,
    is_retryable,
    parse_retry_after,
)

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


def test_backoff_starts_at_half_a_second_and_is_capped_at_thirty() -> None:
    assert (0.5, 30.0) == (BACKOFF_BASE, BACKOFF_CAP)


@settings(max_examples=200, deadline=None)
@given(retry=st.integers(min_value=0, max_value=10_000), seed=st.integers())
def test_backoff_is_within_zero_and_the_capped_exponential(retry: int, seed: int) -> None:
    delay = backoff_delay(retry, random.Random(seed))

    assert 0.0 <= delay <= min(30.0, 0.5 * 2.0 ** min(retry, 64))


def test_backoff_is_full_jitter_so_it_spreads_over_the_whole_interval() -> None:
    rng = random.Random(1234)

    delays = [backoff_delay(3, rng) for _ in range(2000)]

    assert max(delays) <= 4.0
    assert min(delays) < 0.5
    assert max(delays) > 3.5


def test_backoff_reaches_the_cap_and_stays_there() -> None:
    rng = random.Random(7)

    assert max(backoff_delay(20, rng) for _ in range(2000)) > 29.0


def test_backoff_is_reproducible_with_a_seeded_random() -> None:
    first = [backoff_delay(n, random.Random(42)) for n in range(6)]
    second = [backoff_delay(n, random.Random(42)) for n in range(6)]

    assert first == second


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("0", 0.0), ("7", 7.0), (" 120 ", 120.0), ("1.5", 1.5), ("86400", 86_400.0)],
)
def test_retry_after_in_seconds(header: str, seconds: float) -> None:
    assert seconds == parse_retry_after(header, now=NOW)


def test_retry_after_as_an_http_date() -> None:
    header = format_datetime(NOW + timedelta(seconds=90), usegmt=True)

    assert 90.0 == parse_retry_after(header, now=NOW)


def test_retry_after_as_an_http_date_with_a_numeric_offset() -> None:
    assert 30.0 == parse_retry_after("Wed, 01 Jan 2025 13:00:30 +0100", now=NOW)


def test_retry_after_a_date_in_the_past_means_now() -> None:
    assert 0.0 == parse_retry_after("Wed, 01 Jan 2025 11:00:00 GMT", now=NOW)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "   ",
        "soon",
        "-1",
        "-0",
        "nan",
        "NaN",
        "inf",
        "Infinity",
        "1e30",
        "1e3",
        "1_0",
        "+5",
        "0x10",
        "9" * 400,
        "86401",
        "Fri, 01 Jan 2100 00:00:00 GMT",
        "Thu, 02 Jan 2025 12:00:01 GMT",
        "Mon, 99 Oct 2015 07:28:00 GMT",
    ],
)
def test_retry_after_nonsense_is_ignored(header: str | None) -> None:
    assert parse_retry_after(header, now=NOW) is None


def test_retry_after_dates_are_measured_from_the_real_clock_by_default() -> None:
    soon = datetime.now(UTC) + timedelta(hours=1)

    seconds = parse_retry_after(format_datetime(soon, usegmt=True))

    assert seconds is not None
    assert 3000 < seconds <= 3600


def test_retry_after_a_date_without_a_zone_is_read_as_utc() -> None:
    assert 60.0 == parse_retry_after("Wed, 01 Jan 2025 12:01:00 -0000", now=NOW)


# -- the policy, as a table -------------------------------------------------------------------


def by_tenths(retry: int) -> float:
    return (retry + 1) / 10


@pytest.mark.parametrize(
    ("failure", "retry", "expected"),
    [
        (APIConnectionError("reset"), 0, Retry(0.1, None, False)),
        (APITimeoutError("slow"), 1, Retry(0.2, None, False)),
        (ServerError("busy", status=503), 0, Retry(0.1, None, False)),
        (ServerError("busy", status=503, retry_after=7.0), 0, Retry(7.0, 7.0, False)),
        (RateLimitError("slow down", status=429), 2, Retry(0.3, None, True)),
        (RateLimitError("slow down", status=429, retry_after=0.0), 0, Retry(0.0, 0.0, True)),
        (RateLimitError("slow down", status=429, retry_after=120.0), 0, Retry(120.0, 120.0, True)),
        (APIError("timeout", status=408), 0, Retry(0.1, None, False)),
        (APIError("busy", status=200, code=503), 0, Retry(0.1, None, False)),
        # Give up:
        (APIConnectionError("reset"), 3, None),  # out of retries
        (RateLimitError("slow down", status=429, retry_after=121.0), 0, None),  # too long
        (ServerError("broken", status=501), 0, None),
        (BadRequestError("bad", status=400), 0, None),
        (AuthenticationError("who", status=401), 0, None),
        (APIError("odd", status=200, code=400), 0, None),
        (MalformedResponseError("not JSON", status=200), 0, None),
        (ClientClosedError("closed"), 0, None),
        (ConfigurationError("no key"), 0, None),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else repr(v),
)
def test_the_retry_policy(failure: R9sError, retry: int, expected: Retry | None) -> None:
    assert expected == decide_retry(failure, retry, max_retries=3, backoff=by_tenths)


def test_no_retries_allowed_means_every_failure_is_final() -> None:
    assert None is decide_retry(APIConnectionError("reset"), 0, max_retries=0, backoff=by_tenths)


def test_the_cap_on_retry_after_is_two_minutes() -> None:
    assert 120.0 == RETRY_AFTER_CAP


@pytest.mark.parametrize("status", sorted(RETRYABLE_STATUSES))
def test_the_retryable_statuses_are_retried(status: int) -> None:
    assert is_retryable(APIError("x", status=status))
