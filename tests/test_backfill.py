"""Backfills: exact per-day windows into a store, resumable, overlapping runs share one store."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from _helpers import D0, DAY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from r9s_async import (
    AsyncClient,
    BackfillProgress,
    BadRequestError,
    Client,
    ClientClosedError,
    StoredWindow,
    UsageRecord,
    UsageStore,
)
from r9s_async._backfill import plan_backfill
from r9s_async.testing import TEST_API_KEY, FakeR9sAPI, Fault


def truth(api: FakeR9sAPI, start: int, end: int) -> list[UsageRecord]:
    """The records with ``start <= timestamp < end``, in the fake's (server) order."""
    return [UsageRecord(**r) for r in api.records_in(start, end)]


def usage_requests(api: FakeR9sAPI) -> list[tuple[int, int]]:
    return [
        (int(r.query["start_time"]), int(r.query["end_time"]))
        for r in api.requests
        if r.path == "/usage"
    ]


def stored(start: int, end: int, status: str = "complete") -> StoredWindow:
    return StoredWindow("a", None, start, end, status, 0, None, 0, 0)  # type: ignore[arg-type]


# -- planning (pure) --------------------------------------------------------------------------


def test_a_plan_has_one_window_per_utc_day_partial_at_the_ends() -> None:
    windows, skipped = plan_backfill(
        D0 + 3600, D0 + 2 * DAY + 60, {}, now=D0 + 9 * DAY, refresh_recent=DAY
    )

    assert 0 == skipped
    assert [(D0 + 3600, D0 + DAY), (D0 + DAY, D0 + 2 * DAY), (D0 + 2 * DAY, D0 + 2 * DAY + 60)] == [
        (w.start, w.end) for w in windows
    ]


def test_an_empty_range_plans_nothing() -> None:
    assert ([], 0) == plan_backfill(D0 + 5, D0 + 5, {}, now=D0, refresh_recent=0)


@pytest.mark.parametrize(("start", "end"), [(D0 + 5, D0 + 5), (D0 + 5, D0 + 4)])
async def test_a_backfill_of_an_empty_range_is_refused_before_anything_is_sent(
    api: FakeR9sAPI, client: AsyncClient, tmp_path: Path, start: int, end: int
) -> None:
    with pytest.raises(ValueError, match="is empty"):
        await client.backfill(start, end, db=tmp_path / "u.db")

    assert [] == api.requests
    assert not (tmp_path / "u.db").exists()


def test_a_plan_skips_complete_days_and_widens_partial_ones_to_the_union() -> None:
    have = {
        D0: stored(D0, D0 + DAY),
        D0 + DAY: stored(D0 + DAY + 3600, D0 + 2 * DAY),  # only part of the day
        D0 + 2 * DAY: stored(D0 + 2 * DAY, D0 + 2 * DAY + 60),  # the end of an earlier run
    }

    windows, skipped = plan_backfill(D0, D0 + 3 * DAY, have, now=D0 + 9 * DAY, refresh_recent=DAY)

    assert 1 == skipped
    assert [(D0 + DAY, D0 + 2 * DAY), (D0 + 2 * DAY, D0 + 3 * DAY)] == [
        (w.start, w.end) for w in windows
    ]


def test_a_plan_never_shrinks_what_a_day_already_covers() -> None:
    have = {D0: stored(D0, D0 + DAY, "recent")}

    windows, _ = plan_backfill(D0 + 7200, D0 + 9000, have, now=D0 + 9 * DAY, refresh_recent=DAY)

    assert [(D0, D0 + DAY)] == [(w.start, w.end) for w in windows]


def test_a_plan_fetches_again_what_ended_within_refresh_recent() -> None:
    have = {D0: stored(D0, D0 + DAY), D0 + DAY: stored(D0 + DAY, D0 + 2 * DAY)}
    now = D0 + 2 * DAY + 3600

    windows, skipped = plan_backfill(D0, D0 + 2 * DAY, have, now=now, refresh_recent=DAY)

    assert 1 == skipped
    assert [(D0 + DAY, D0 + 2 * DAY)] == [(w.start, w.end) for w in windows]


@settings(max_examples=200, deadline=None)
@given(
    start=st.integers(min_value=D0, max_value=D0 + 6 * DAY),
    length=st.integers(min_value=0, max_value=5 * DAY),
    spans=st.dictionaries(
        st.integers(min_value=0, max_value=8),
        st.tuples(st.integers(0, DAY), st.integers(0, DAY), st.booleans()),
    ),
)
def test_a_plan_and_the_days_it_skips_cover_the_range_exactly_once(
    start: int, length: int, spans: dict[int, tuple[int, int, bool]]
) -> None:
    end = start + length
    have = {
        D0 + d * DAY: stored(
            D0 + d * DAY + min(a, b), D0 + d * DAY + max(a, b), "complete" if ok else "recent"
        )
        for d, (a, b, ok) in spans.items()
    }

    windows, skipped = plan_backfill(start, end, have, now=D0 + 99 * DAY, refresh_recent=DAY)

    days = [w.start - w.start % DAY for w in windows]
    assert days == sorted(set(days))
    for w in windows:
        assert w.start - w.start % DAY <= w.start < w.end <= w.start - w.start % DAY + DAY
        old = have.get(w.start - w.start % DAY)
        if old is not None:  # never narrower than what the day held
            assert w.start <= old.start
            assert old.end <= w.end
    covered = sorted(
        [(w.start, w.end) for w in windows]
        + [
            (max(start, day), min(end, day + DAY))
            for day in range(start - start % DAY, end, DAY)
            if day not in days and max(start, day) < min(end, day + DAY)
        ]
    )
    assert len(covered) == len(windows) + skipped
    needed = [
        (max(start, day), min(end, day + DAY))
        for day in range(start - start % DAY, end, DAY)
        if max(start, day) < min(end, day + DAY)
    ]
    for (a, b), (c, d) in zip(needed, covered, strict=True):
        assert c <= a
        assert b <= d


# -- backfills against the fake ---------------------------------------------------------------


@pytest.mark.parametrize("end_inclusive", [True, False], ids=["end-inclusive", "end-exclusive"])
async def test_a_backfill_stores_exactly_the_records_of_the_half_open_range(
    end_inclusive: bool, tmp_path: Path
) -> None:
    api = FakeR9sAPI(mode="events", end_inclusive=end_inclusive)
    start, end = D0 + 3600, D0 + 5 * DAY  # partial first day; the end is a midnight
    async with api.serve() as url, AsyncClient(TEST_API_KEY, base_url=url) as client:
        result = await client.backfill(start, end, db=tmp_path / "usage.db")

    with UsageStore(tmp_path / "usage.db") as store:
        assert truth(api, start, end) == list(store.iter_records())
        windows = store.windows()
    expected = truth(api, start, end)
    assert (5, 5, 0, len(expected)) == (
        result.windows_total,
        result.windows_fetched,
        result.windows_skipped,
        result.records,
    )
    assert sum(r.tokens for r in expected) == result.tokens
    assert [(start, D0 + DAY)] + [(D0 + d * DAY, D0 + (d + 1) * DAY) for d in range(1, 5)] == [
        (w.start, w.end) for w in windows
    ]
    assert {"complete"} == {w.status for w in windows}


async def test_a_rerun_fetches_nothing_that_is_already_complete(
    api: FakeR9sAPI, client: AsyncClient, tmp_path: Path
) -> None:
    db = tmp_path / "usage.db"
    await client.backfill(D0, D0 + 4 * DAY, db=db)
    asked = len(api.requests)

    again = await client.backfill(D0, D0 + 4 * DAY, db=db)

    assert asked == len(api.requests)
    assert (4, 0, 4, 0) == (
        again.windows_total,
        again.windows_fetched,
        again.windows_skipped,
        again.records,
    )


async def test_overlapping_runs_complete_partial_days_and_never_store_a_record_twice(
    tmp_path: Path,
) -> None:
    api = FakeR9sAPI(mode="events")
    db = tmp_path / "usage.db"
    async with api.serve() as url, AsyncClient(TEST_API_KEY, base_url=url) as client:
        await client.backfill(D0 + DAY // 2, D0 + 2 * DAY + 3600, db=db)
        api.requests.clear()
        await client.backfill(D0, D0 + DAY + 60, db=db)
        second = usage_requests(api)
        await client.backfill(D0 + 2 * DAY, D0 + 3 * DAY, db=db)

    with UsageStore(db) as store:
        assert truth(api, D0, D0 + 3 * DAY) == list(store.iter_records())
    assert [(D0, D0 + DAY)] == second  # day 1 was complete; day 0 was widened


async def test_recent_windows_are_fetched_again_and_replaced(
    api: FakeR9sAPI, client: AsyncClient, tmp_path: Path
) -> None:
    db = tmp_path / "usage.db"
    now = int(time.time())
    midnight = now - now % DAY
    start = midnight - 3 * DAY

    await client.backfill(start, midnight, db=db)  # the last day ended < 1 day ago
    api.requests.clear()
    again = await client.backfill(start, midnight, db=db)

    assert [(midnight - DAY, midnight)] == usage_requests(api)
    assert (2, 1) == (again.windows_skipped, again.windows_fetched)
    with UsageStore(db) as store:
        assert truth(api, start, midnight) == list(store.iter_records())
        assert ["complete", "complete", "recent"] == [w.status for w in store.windows()]

    # Once nothing counts as recent, the window fetched while recent is fetched once more.
    api.requests.clear()
    settled = await client.backfill(start, midnight, db=db, refresh_recent=0)
    last = await client.backfill(start, midnight, db=db, refresh_recent=timedelta(0))

    assert [(midnight - DAY, midnight)] == usage_requests(api)
    assert (1, 0) == (settled.windows_fetched, last.windows_fetched)


async def test_a_members_backfill_is_asked_with_user_id_and_stored_apart(
    api: FakeR9sAPI, client: AsyncClient, tmp_path: Path
) -> None:
    db = tmp_path / "usage.db"

    await client.backfill(D0, D0 + 2 * DAY, db=db, user_id=42)

    assert {"42"} == {r.query.get("user_id") for r in api.requests}
    with UsageStore(db) as store:
        assert truth(api, D0, D0 + 2 * DAY) == list(store.iter_records(user_id="42"))
        assert [] == list(store.iter_records())


async def test_progress_is_reported_at_the_start_and_after_each_stored_window(
    api: FakeR9sAPI, client: AsyncClient, tmp_path: Path
) -> None:
    db = tmp_path / "usage.db"
    await client.backfill(D0, D0 + DAY, db=db)
    seen: list[BackfillProgress] = []
    expected = truth(api, D0 + DAY, D0 + 3 * DAY)

    result = await client.backfill(D0, D0 + 3 * DAY, db=db, progress=seen.append)

    assert [
        BackfillProgress(1, 3, 1, 0, 0, 0, 0),
        BackfillProgress(2, 3, 1, 4, sum(r.tokens for r in expected[:4]), 0, seen[1].requests),
        BackfillProgress(3, 3, 1, 8, sum(r.tokens for r in expected), 0, 2),
    ] == seen
    assert 1 <= seen[1].requests <= 2  # the next window may be asked before this one is stored
    assert (8, sum(r.tokens for r in expected)) == (result.records, result.tokens)


async def test_retries_are_counted_in_progress_and_result(
    api: FakeR9sAPI, client: AsyncClient, tmp_path: Path
) -> None:
    api.add_fault(Fault.error(503, "busy"), times=1, path="/usage", start_time=D0 + DAY)
    seen: list[BackfillProgress] = []

    result = await client.backfill(D0, D0 + 3 * DAY, db=tmp_path / "u.db", progress=seen.append)

    assert 1 == result.retries
    assert 1 == seen[-1].retries
    with UsageStore(tmp_path / "u.db") as store:
        assert truth(api, D0, D0 + 3 * DAY) == list(store.iter_records())


async def test_a_failed_window_raises_and_keeps_the_whole_windows_before_it(
    api: FakeR9sAPI, client: AsyncClient, tmp_path: Path
) -> None:
    db = tmp_path / "usage.db"
    api.add_fault(Fault.error(400, "no"), path="/usage", start_time=D0 + 5 * DAY)

    with pytest.raises(BadRequestError, match="no"):
        await client.backfill(D0, D0 + 10 * DAY, db=db)

    with UsageStore(db) as store:
        days = [w.start for w in store.windows()]
        assert [D0 + d * DAY for d in range(len(days))] == days
        assert len(days) <= 5
        assert truth(api, D0, D0 + len(days) * DAY) == list(store.iter_records())

    result = await client.backfill(D0, D0 + 10 * DAY, db=db)

    assert len(days) == result.windows_skipped
    with UsageStore(db) as store:
        assert truth(api, D0, D0 + 10 * DAY) == list(store.iter_records())


async def test_cancelling_a_backfill_leaves_only_whole_windows(
    threaded_base_url: str, api: FakeR9sAPI, tmp_path: Path
) -> None:
    db = tmp_path / "usage.db"
    api.latency = 0.01
    async with AsyncClient(TEST_API_KEY, base_url=threaded_base_url) as client:

        def stop_after_three(progress: BackfillProgress) -> None:
            if progress.windows_done == 3:
                task.cancel()

        task = asyncio.create_task(
            client.backfill(D0, D0 + 30 * DAY, db=db, progress=stop_after_three)
        )
        with pytest.raises(asyncio.CancelledError):
            await task

    with UsageStore(db) as store:
        windows = store.windows()
        assert 3 <= len(windows) < 30
        for w in windows:
            assert truth(api, w.start, w.end) == list(store.iter_records(w.start, w.end))
            assert w.record_count == store.count_records(w.start, w.end)


async def test_a_failing_progress_callback_stops_the_backfill_and_its_requests(
    threaded_base_url: str, api: FakeR9sAPI, tmp_path: Path
) -> None:
    api.latency = 0.05

    def fail_after_two(progress: BackfillProgress) -> None:
        if progress.windows_done == 2:
            raise RuntimeError("progress display broke")

    async with AsyncClient(TEST_API_KEY, base_url=threaded_base_url) as client:
        with pytest.raises(RuntimeError, match="progress display broke"):
            await client.backfill(D0, D0 + 30 * DAY, db=tmp_path / "u.db", progress=fail_after_two)

        assert {asyncio.current_task()} == asyncio.all_tasks()  # no fetch left running
    with UsageStore(tmp_path / "u.db") as store:
        assert 2 == len(store.windows())


async def test_a_borrowed_store_is_used_and_left_open(
    api: FakeR9sAPI, client: AsyncClient, tmp_path: Path
) -> None:
    with UsageStore(tmp_path / "usage.db") as store:
        await client.backfill(D0, D0 + DAY, db=store)

        assert not store.closed
        assert truth(api, D0, D0 + DAY) == list(store.iter_records())


def test_the_sync_client_backfills_the_same_way(
    api: FakeR9sAPI, threaded_base_url: str, tmp_path: Path
) -> None:
    seen: list[BackfillProgress] = []
    with Client(TEST_API_KEY, base_url=threaded_base_url) as client:
        result = client.backfill(D0, D0 + 2 * DAY, db=str(tmp_path / "u.db"), progress=seen.append)

    assert (2, 8) == (result.windows_fetched, result.records)
    assert 2 == seen[-1].windows_done
    with UsageStore(tmp_path / "u.db") as store:
        assert truth(api, D0, D0 + 2 * DAY) == list(store.iter_records())


def test_sync_and_async_backfill_have_the_same_signature() -> None:
    assert inspect.signature(AsyncClient.backfill) == inspect.signature(Client.backfill)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"start": "2025-01-01"}, TypeError, "start"),
        ({"end": D0 - 1}, ValueError, "before start"),
        ({"db": 3}, TypeError, "db"),
        ({"refresh_recent": -1}, ValueError, "refresh_recent"),
        ({"refresh_recent": "1d"}, TypeError, "refresh_recent"),
        ({"refresh_recent": True}, TypeError, "refresh_recent"),
        ({"user_id": ""}, ValueError, "user_id"),
        ({"progress": 5}, TypeError, "progress"),
    ],
)
async def test_bad_arguments_are_refused_before_any_request(
    api: FakeR9sAPI,
    client: AsyncClient,
    tmp_path: Path,
    kwargs: dict[str, Any],
    error: type[Exception],
    match: str,
) -> None:
    arguments: dict[str, Any] = {"start": D0, "end": D0 + DAY, "db": tmp_path / "u.db"}
    arguments.update(kwargs)

    with pytest.raises(error, match=match):
        await client.backfill(**arguments)

    assert [] == api.requests
    assert not (tmp_path / "u.db").exists()


async def test_a_closed_client_cannot_backfill(client: AsyncClient, tmp_path: Path) -> None:
    await client.aclose()

    with pytest.raises(ClientClosedError):
        await client.backfill(D0, D0 + DAY, db=tmp_path / "u.db")


# -- overlapping runs, as a property ----------------------------------------------------------


@pytest.fixture(scope="module")
def events_client() -> Iterator[tuple[FakeR9sAPI, Client]]:
    api = FakeR9sAPI(mode="events", end_inclusive=False)
    with api.serve_in_thread() as url, Client(TEST_API_KEY, base_url=url) as client:
        yield api, client


span = st.tuples(
    st.integers(min_value=0, max_value=5 * DAY), st.integers(min_value=1, max_value=3 * DAY)
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs=st.lists(span, min_size=1, max_size=4))
def test_any_sequence_of_overlapping_runs_stores_each_record_once(
    events_client: tuple[FakeR9sAPI, Client], runs: list[tuple[int, int]]
) -> None:
    api, client = events_client
    with tempfile.TemporaryDirectory() as folder:
        db = os.path.join(folder, "usage.db")
        for offset, length in runs:
            client.backfill(D0 + offset, D0 + offset + length, db=db)

        with UsageStore(db) as store:
            windows = store.windows()
            records = list(store.iter_records())
    expected: list[UsageRecord] = []
    for w in windows:
        expected += truth(api, w.start, w.end)
    assert expected == records
    for offset, length in runs:  # every run's range is covered
        for day in range(D0 + offset - offset % DAY, D0 + offset + length, DAY):
            a, b = max(D0 + offset, day), min(D0 + offset + length, day + DAY)
            if a < b:
                assert any(w.start <= a and b <= w.end for w in windows)


# -- the multi-year run -----------------------------------------------------------------------


def test_a_three_year_backfill_stores_every_daily_record(
    api: FakeR9sAPI, threaded_base_url: str, tmp_path: Path
) -> None:
    start, end = D0 - 3 * 365 * DAY, D0 + DAY  # 1,096 UTC days
    with Client(TEST_API_KEY, base_url=threaded_base_url) as client:
        result = client.backfill(start, end, db=tmp_path / "u.db")

    assert (1096, 1096 * 4) == (result.windows_fetched, result.records)
    with UsageStore(tmp_path / "u.db") as store:
        assert 1096 * 4 == store.count_records()
        assert 1096 == len(store.windows())


_MEASURE = """
import json, resource, sys, time, tracemalloc
import r9s_async, r9s_async.testing
url, days, db = sys.argv[1], int(sys.argv[2]), sys.argv[3]
end = 20_000 * 86_400
with r9s_async.Client(r9s_async.testing.TEST_API_KEY, base_url=url) as client:
    client.backfill(end - 86_400, end, db=db + ".warm")  # imports and first-use allocations
    tracemalloc.start()
    began = time.perf_counter()
    result = client.backfill(end - days * 86_400, end, db=db)
    seconds = time.perf_counter() - began
    peak = tracemalloc.get_traced_memory()[1]
print(json.dumps({"records": result.records, "windows": result.windows_fetched,
                  "seconds": seconds, "peak": peak,
                  "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def test_peak_memory_of_a_backfill_does_not_grow_with_the_range(tmp_path: Path) -> None:
    """Three years hold three times the records of one; the peak must not follow them."""
    api = FakeR9sAPI(mode="events", events_per_day=40)
    figures = {}
    with api.serve_in_thread() as url:
        for days in (365, 3 * 365):
            done = subprocess.run(
                [sys.executable, "-c", _MEASURE, url, str(days), str(tmp_path / f"{days}.db")],
                capture_output=True,
                text=True,
                check=True,
                timeout=120,
            )
            figures[days] = json.loads(done.stdout)
    print(json.dumps(figures))  # the measured figures, for the record (pytest -s shows them)

    one, three = figures[365], figures[3 * 365]
    assert three["records"] > 2.9 * one["records"]
    # Holding the records would add well over 3 MB here; streaming adds ~one plan entry a day.
    assert three["peak"] - one["peak"] < 1_000_000


async def test_a_day_whose_records_stay_short_of_its_total_is_fetched_again(
    api: FakeR9sAPI, base_url: str, tmp_path: Path
) -> None:
    start = 20_000 * DAY
    cut_off = {
        "meta": {"code": 200, "message": "success", "request_id": "R" * 32},
        "data": {"records": [], "total_tokens": 1234},
    }
    # Every answer is short and its halves add nothing: three requests per call, not healed.
    api.add_fault(Fault.respond(200, cut_off), path="/usage", times=9)
    db = tmp_path / "usage.db"

    async with AsyncClient(TEST_API_KEY, base_url=base_url) as client:
        report = await client.usage(start, start + 3600)
        assert report.consistent is False
        first = await client.backfill(start, start + DAY, db=db, refresh_recent=0)
        second = await client.backfill(start, start + DAY, db=db, refresh_recent=0)

    assert (1, 0, 3) == (first.windows_fetched, first.windows_skipped, first.requests)
    assert (1, 0, 3) == (second.windows_fetched, second.windows_skipped, second.requests)
    assert 9 == len(api.requests)
    with UsageStore(db) as store:
        assert 0 == store.count_records()
        assert "recent" == store.windows()[0].status


# -- accounts ---------------------------------------------------------------------------------

OTHER_KEY = "sk_mg_" + "1" * 64


async def test_two_keys_backfilled_into_one_file_keep_each_accounts_totals_exact(
    tmp_path: Path,
) -> None:
    first, second = FakeR9sAPI(), FakeR9sAPI(api_key=OTHER_KEY, seed=7, models=("only-b",))
    db = tmp_path / "usage.db"
    async with first.serve() as url_a, second.serve() as url_b:
        async with AsyncClient(TEST_API_KEY, base_url=url_a) as a:
            await a.backfill(D0, D0 + 3 * DAY, db=db, account_name="alpha")
            account_a = a.account
        async with AsyncClient(OTHER_KEY, base_url=url_b) as b:
            result = await b.backfill(D0, D0 + 3 * DAY, db=db)
            account_b = b.account

    assert (3, 0) == (result.windows_fetched, result.windows_skipped)  # not alpha's days
    with UsageStore(db) as store:
        assert truth(first, D0, D0 + 3 * DAY) == list(store.iter_records(account="alpha"))
        assert truth(second, D0, D0 + 3 * DAY) == list(
            store.iter_records(account=account_b.fingerprint)
        )
        assert [account_a.fingerprint, account_b.fingerprint] == [
            acc.fingerprint for acc in store.accounts()
        ]
        assert ["alpha", None] == [acc.name for acc in store.accounts()]
        expected = sum(r.tokens for r in truth(first, D0, D0 + 3 * DAY)) + sum(
            r.tokens for r in truth(second, D0, D0 + 3 * DAY)
        )
        assert expected == sum(store.tokens_by_model().values())


async def test_the_same_key_at_two_base_urls_is_two_accounts(tmp_path: Path) -> None:
    production, staging = FakeR9sAPI(), FakeR9sAPI(seed=3)
    db = tmp_path / "usage.db"
    async with production.serve() as url_p, staging.serve() as url_s:
        async with AsyncClient(TEST_API_KEY, base_url=url_p) as p:
            await p.backfill(D0, D0 + DAY, db=db)
        async with AsyncClient(TEST_API_KEY, base_url=url_s) as s:
            again = await s.backfill(D0, D0 + DAY, db=db)

    assert 1 == again.windows_fetched
    with UsageStore(db) as store:
        assert [url_p, url_s] == [acc.base_url.rstrip("/") for acc in store.accounts()]
        assert 2 == len({acc.fingerprint for acc in store.accounts()})
        assert truth(production, D0, D0 + DAY) + truth(staging, D0, D0 + DAY) == list(
            store.iter_records()
        )


async def test_a_name_taken_by_another_account_fails_before_anything_is_fetched(
    tmp_path: Path,
) -> None:
    first, second = FakeR9sAPI(), FakeR9sAPI(api_key=OTHER_KEY)
    db = tmp_path / "usage.db"
    async with first.serve() as url_a, second.serve() as url_b:
        async with AsyncClient(TEST_API_KEY, base_url=url_a) as a:
            await a.backfill(D0, D0 + DAY, db=db, account_name="prod")
        async with AsyncClient(OTHER_KEY, base_url=url_b) as b:
            with pytest.raises(ValueError, match="'prod' is already used"):
                await b.backfill(D0, D0 + DAY, db=db, account_name="prod")
            with pytest.raises(ValueError, match="looks like a fingerprint"):
                await b.backfill(D0, D0 + DAY, db=db, account_name="0123456789abcdef")

    assert [] == usage_requests(second)


def test_the_sync_client_passes_the_account_name_down(
    threaded_base_url: str, tmp_path: Path
) -> None:
    db = tmp_path / "usage.db"
    with Client(TEST_API_KEY, base_url=threaded_base_url) as client:
        client.backfill(D0, D0 + DAY, db=db, account_name="sync")

    with UsageStore(db) as store:
        assert ["sync"] == [acc.name for acc in store.accounts()]
        assert ["sync"] == [w.account for w in store.windows()]


async def test_a_cut_off_day_is_healed_stored_complete_and_counted_as_one_window(
    tmp_path: Path,
) -> None:
    api = FakeR9sAPI(mode="events", events_per_day=1_500, record_cap=1_000)
    seen: list[BackfillProgress] = []
    async with api.serve() as url, AsyncClient(TEST_API_KEY, base_url=url) as client:
        result = await client.backfill(D0, D0 + 2 * DAY, db=tmp_path / "u.db", progress=seen.append)

    assert (2, 2) == (result.windows_total, result.windows_fetched)
    assert result.requests == len(api.requests) > 2
    assert [0, 1, 2] == [p.windows_done for p in seen]
    assert result.requests == seen[-1].requests
    with UsageStore(tmp_path / "u.db") as store:
        assert truth(api, D0, D0 + 2 * DAY) == list(store.iter_records())
        assert ["complete", "complete"] == [w.status for w in store.windows()]
