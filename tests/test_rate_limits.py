"""Reading the rate-limit headers servers send (IETF drafts and ``X-RateLimit-*``): pure."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from r9s_async._rate_limits import RateLimits, parse_rate_limits
from r9s_async.testing._faults import RateLimit, RateLimiter

NOW = datetime(2025, 1, 1, tzinfo=UTC)
EPOCH = int(NOW.timestamp())


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        # IETF draft -08 and later (structured fields)
        (
            {"RateLimit-Policy": '"default";q=100;w=60', "RateLimit": '"default";r=50;t=30'},
            RateLimits(100 / 60, None, 50, 30.0),
        ),
        (
            {"RateLimit-Policy": '"burst";q=20;w=1, "day";q=1000;w=86400'},
            RateLimits(20.0, None, None, None),
        ),
        ({"RateLimit": '"a";r=5;t=2, "b";r=1;t=9'}, RateLimits(None, None, 1, 9.0)),
        # drafts -06/-07
        (
            {
                "RateLimit-Limit": "10",
                "RateLimit-Remaining": "5",
                "RateLimit-Reset": "3",
                "RateLimit-Policy": "10;w=1;burst=5",
            },
            RateLimits(10.0, 5, 5, 3.0),
        ),
        ({"RateLimit-Limit": "10, 10;w=1, 1000;w=3600"}, RateLimits(10.0, None, None, None)),
        # X-RateLimit-*: Reset as delta seconds, a Unix time or an HTTP date
        (
            {"X-RateLimit-Limit": "20", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1"},
            RateLimits(None, None, 0, 1.0),
        ),
        ({"x-ratelimit-reset": str(EPOCH + 40)}, RateLimits(None, None, None, 40.0)),
        ({"X-RateLimit-Reset": "Wed, 01 Jan 2025 00:00:10 GMT"}, RateLimits(reset=10.0)),
        ({"X-RateLimit-Reset": str(EPOCH - 5)}, RateLimits(reset=0.0)),
    ],
)
def test_each_family_is_read(headers: dict[str, str], expected: RateLimits) -> None:
    assert expected == parse_rate_limits(headers, now=NOW)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"RateLimit-Policy": "nonsense;;q=-1,w=0"},
        {"RateLimit-Policy": '"x";q=10;w=0'},
        {"RateLimit-Policy": '"x";q=1e9;w=1'},
        {"RateLimit-Reset": "soon", "X-RateLimit-Remaining": "-3"},
        {"RateLimit-Reset": str(EPOCH + 40)},  # the drafts' reset is a delta only
        {"X-RateLimit-Reset": "nan"},
        {"X-RateLimit-Reset": str(EPOCH + 10 * 86400)},  # more than a day away
        {"RateLimit": '"a";r=x;t=1'},
        {"RateLimit-Policy": "q" * 10_000},
        {"RateLimit-Policy": '"hour";q=1000;w=3600'},  # too long a window to pace by
    ],
)
def test_nonsense_is_ignored(headers: dict[str, str]) -> None:
    assert parse_rate_limits(headers, now=NOW).empty


def test_the_fakes_limiter_announces_both_families_as_the_parser_reads_them() -> None:
    limiter = RateLimiter(RateLimit(rate=20, burst=5, headers=True))
    for _ in range(5):
        assert limiter.take("k", 0.0) is None
    assert limiter.take("k", 0.0) is not None

    announced = limiter.announce("k")

    assert {
        "RateLimit-Policy": '"default";q=20;w=1',
        "RateLimit": '"default";r=0;t=1',
        "X-RateLimit-Limit": "20",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "1",
    } == announced
    assert RateLimits(20.0, None, 0, 1.0) == parse_rate_limits(announced)
    assert RateLimits(None, None, 0, 1.0) == parse_rate_limits(
        {k: v for k, v in announced.items() if k.startswith("X-")}
    )
