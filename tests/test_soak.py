"""Soak: a 1,000-day fetch against the API double with about a quarter of first attempts
failing, in a mix of every transient fault, equals the fault-free answer exactly: through
``AsyncClient.usage``, the sync ``Client``, and a backfill into a store."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import pytest
from _helpers import D0, DAY, expected_records

from r9s_async import AsyncClient, Client, UsageStore
from r9s_async.testing import TEST_API_KEY, FakeR9sAPI, FaultPlan

pytestmark = pytest.mark.usefixtures("quiet_asyncio")

DAYS = 1_000
# Faults hit first attempts only, so every window is answered on its second attempt at the
# latest. Retry-After 0 and a short timeout keep the run to seconds; many windows in flight
# keep a window waiting out its backoff from holding up the others.
SETTINGS: dict[str, Any] = {"timeout": 0.25, "max_retries": 3, "max_concurrency": 64}


def faulty_api(seed: int) -> FakeR9sAPI:
    plan = FaultPlan.transient(0.25, seed=seed, attempts=1, retry_after=0, stall=30)
    return FakeR9sAPI(mode="events", events_per_day=6, end_inclusive=False, fault_plan=plan)


def assert_a_quarter_of_first_attempts_failed_in_every_way(api: FakeR9sAPI) -> None:
    attempts = collections.Counter(r.query["start_time"] for r in api.requests)
    faults = collections.Counter(r.fault for r in api.requests if r.fault is not None)
    assert DAYS == len(attempts)
    assert set(FaultPlan.TRANSIENT) == set(faults)
    assert 0.2 <= faults.total() / DAYS <= 0.3
    assert {1, 2} == set(attempts.values())  # bounded: a fault, then the answer


async def test_a_thousand_days_through_a_quarter_of_faults_equal_the_fault_free_answer() -> None:
    api = faulty_api(seed=1)
    async with api.serve() as url, AsyncClient(TEST_API_KEY, base_url=url, **SETTINGS) as client:
        report = await client.usage(D0, D0 + DAYS * DAY)

    assert expected_records(api, D0, D0 + DAYS * DAY) == report.records
    assert sum(r.tokens for r in report.records) == report.total_tokens
    assert DAYS == len(report.request_ids)
    assert_a_quarter_of_first_attempts_failed_in_every_way(api)


def test_the_same_through_the_sync_client() -> None:
    api = faulty_api(seed=2)
    with api.serve_in_thread() as url, Client(TEST_API_KEY, base_url=url, **SETTINGS) as client:
        report = client.usage(D0, D0 + DAYS * DAY)

    assert expected_records(api, D0, D0 + DAYS * DAY) == report.records
    assert DAYS == len(report.request_ids)
    assert_a_quarter_of_first_attempts_failed_in_every_way(api)


async def test_the_same_through_a_backfill_stores_each_window_exactly_once(
    tmp_path: Path,
) -> None:
    api = faulty_api(seed=3)
    db = tmp_path / "x.sqlite3"
    async with api.serve() as url, AsyncClient(TEST_API_KEY, base_url=url, **SETTINGS) as client:
        result = await client.backfill(D0, D0 + DAYS * DAY, db=db)

    with UsageStore(db) as store:
        stored = list(store.iter_records())
        windows = store.windows()
    # The backfill's range is [start, end), and this fake's end_time is exclusive too.
    assert expected_records(api, D0, D0 + DAYS * DAY) == stored
    assert [D0 + day * DAY for day in range(DAYS)] == [w.start for w in windows]
    assert all(w.request_id for w in windows)
    assert (DAYS, len(stored)) == (result.windows_fetched, result.records)
    assert_a_quarter_of_first_attempts_failed_in_every_way(api)
