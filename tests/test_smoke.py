"""The shortest path a user takes: a month of usage through the fake API."""

from __future__ import annotations

from r9s_async import AsyncClient, UsageRecord
from r9s_async.testing import FakeR9sAPI


async def test_a_month_of_usage_equals_the_fake_apis_records(
    api: FakeR9sAPI, client: AsyncClient
) -> None:
    start, end = 86_400 * 100, 86_400 * 130
    expected = [UsageRecord(**r) for r in api.records_in(start, end)]

    report = await client.usage(start, end)

    assert expected == report.records
    assert sum(r.tokens for r in expected) == report.total_tokens
