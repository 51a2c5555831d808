"""Values and helpers shared by the tests: days, the client, expected records, waiting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from r9s_async import Account, AsyncClient, UsageRecord
from r9s_async.testing import TEST_API_KEY, FakeR9sAPI

DAY = 86_400
"""Seconds in a UTC day, written out here rather than taken from the code under test."""

D0 = 20_000 * DAY
"""The first test day: 2024-10-04, a UTC midnight."""

VENDOR_BALANCE: dict[str, Any] = {
    "balance": 470.010481,
    "balance_str": "470.010481",
    "coupon_balance": 0,
    "currency_code": "USD",
    "credit_limit": 0,
    "total_coupon_amount": 0,
}
"""The ``data`` of the vendor SDK's ``/balance`` example (the fake answers it too)."""


ALPHA = Account("https://a.example/api", "aaaaaaaaaaaaaaaa", "alpha")
"""A named account, for store tests that need no client."""

BETA = Account("https://b.example/api", "bbbbbbbbbbbbbbbb", None)
"""A second account, without a name (its label is its fingerprint)."""

PRICES_TOML = """
currency = "USD"
[[price]]
model = "gpt-4o"
per_million_tokens = "2.50"
[[price]]
model = "gpt-4o"
per_million_tokens = "3.75"
valid_from = 2025-03-02
[[price]]
model = "claude-*"
per_million_tokens = "15"
[[price]]
model = "claude-sonnet-*"
per_million_tokens = "9.99"
"""
"""A price table with a price change on 2025-03-02 and two patterns (the longer one wins)."""


def make_client(base_url: str, **settings: Any) -> AsyncClient:
    """An :class:`AsyncClient` with the test key, pointed at ``base_url``."""
    return AsyncClient(TEST_API_KEY, base_url=base_url, **settings)


def expected_records(api: FakeR9sAPI, start: int, end: int) -> list[UsageRecord]:
    """The half-open truth ``[start, end)`` that ``usage(start, end)`` must answer, in the
    fake's (server) order, whichever way the fake treats ``end_time``."""
    return [UsageRecord(**r) for r in api.records_in(start, end)]


async def eventually(condition: Callable[[], bool], *, within: float = 5.0) -> None:
    """Poll until ``condition()`` holds; fail if it does not within ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"still not true after {within}s")
        await asyncio.sleep(0.005)


def eventually_sync(condition: Callable[[], bool], *, within: float = 5.0) -> None:
    """:func:`eventually` for threads without an event loop."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {within}s")
        time.sleep(0.005)
