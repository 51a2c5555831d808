"""Retry timing: full-jitter exponential backoff, and ``Retry-After`` as seconds or a date."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from r9s_async._retry import BACKOFF_BASE, BACKOFF_CAP, backoff_delay, parse_retry_after

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
