"""The fan-out and the healing of cut-off windows over plain coroutines, no server: ordered,
bounded, first failure cancels; halves until every part adds up."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest

from r9s_async import APITimeoutError, UsageRecord
from r9s_async._fanout import fan_out, heal
from r9s_async._windows import Window, WindowAnswer, report_window


async def test_results_come_in_plan_order_whatever_order_they_finish_in() -> None:
    async def fetch_one(n: int) -> int:
        await asyncio.sleep((5 - n) * 0.002)  # the last finishes first
        return n * 10

    results = [r async for r in fan_out(iter(range(6)), fetch_one, concurrency=3)]

    assert [0, 10, 20, 30, 40, 50] == results


async def test_at_most_twice_the_concurrency_is_started_ahead_of_the_consumer() -> None:
    started: list[int] = []
    release = asyncio.Event()

    async def fetch_one(n: int) -> int:
        started.append(n)
        await release.wait()
        return n

    windows = fan_out(iter(range(100)), fetch_one, concurrency=2)
    first = asyncio.ensure_future(anext(windows))
    await asyncio.sleep(0.01)
    assert [0, 1, 2, 3] == started
    release.set()
    assert 0 == await first
    await windows.aclose()


async def test_the_plan_is_consumed_lazily() -> None:
    taken: list[int] = []

    def plan() -> Iterator[int]:
        for n in range(10**9):
            taken.append(n)
            yield n

    async def fetch_one(n: int) -> int:
        return n

    windows = fan_out(plan(), fetch_one, concurrency=1)
    assert 0 == await anext(windows)
    await windows.aclose()

    assert len(taken) <= 3


async def test_the_first_failure_cancels_the_others_and_is_raised() -> None:
    cancelled: list[int] = []

    async def fetch_one(n: int) -> int:
        try:
            if n == 2:
                raise KeyError("window 2")
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(n)
            raise
        return n

    with pytest.raises(KeyError, match="window 2"):
        [r async for r in fan_out(iter(range(4)), fetch_one, concurrency=2)]

    assert [0, 1, 3] == sorted(cancelled)


async def test_a_failure_behind_a_slow_head_is_raised_without_waiting_for_the_head() -> None:
    async def fetch_one(n: int) -> int:
        if n == 1:
            raise ValueError("second")
        await asyncio.sleep(10)
        return n

    async with asyncio.timeout(2):
        with pytest.raises(ValueError, match="second"):
            [r async for r in fan_out(iter(range(2)), fetch_one, concurrency=2)]


async def test_the_deadline_cancels_what_is_in_flight_and_raises_a_timeout() -> None:
    cancelled: list[int] = []

    async def fetch_one(n: int) -> int:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(n)
            raise
        return n

    with pytest.raises(APITimeoutError, match=r"deadline of 0\.05s passed"):
        [r async for r in fan_out(iter(range(3)), fetch_one, concurrency=2, deadline=0.05)]

    assert [0, 1, 2] == sorted(cancelled)


async def test_closing_early_cancels_and_waits_for_what_is_running() -> None:
    unwound: list[int] = []

    async def fetch_one(n: int) -> int:
        if n == 0:
            return 0
        try:
            await asyncio.sleep(10)
        finally:
            unwound.append(n)
        return n

    windows = fan_out(iter(range(3)), fetch_one, concurrency=2)
    assert 0 == await anext(windows)
    await windows.aclose()

    assert [1, 2] == sorted(unwound)
    assert {asyncio.current_task()} == asyncio.all_tasks()


async def test_tasks_are_named_for_debugging() -> None:
    names: list[str] = []

    async def fetch_one(n: int) -> int:
        task = asyncio.current_task()
        assert task is not None
        names.append(task.get_name())
        return n

    with contextlib.suppress(StopAsyncIteration):
        [r async for r in fan_out(iter(range(2)), fetch_one, concurrency=1, name=lambda n: f"w{n}")]

    assert ["w0", "w1"] == names


async def test_an_empty_plan_yields_nothing() -> None:
    async def fetch_one(n: int) -> int:
        raise AssertionError("not called")

    assert [] == [r async for r in fan_out(iter([]), fetch_one, concurrency=4)]


# -- healing a cut-off window by splitting, over plain coroutines -----------------------------


class CappedSource:
    """Answers a window from ``records`` as a capped server would: at most ``cap`` records,
    in time order, and the full total declared (``extra`` tokens more, for a server whose
    totals never add up)."""

    def __init__(
        self, records: list[UsageRecord], cap: int, *, extra: int = 0, inclusive: bool = False
    ) -> None:
        self.records = sorted(records, key=lambda r: r.timestamp)
        self.cap = cap
        self.extra = extra
        self.inclusive = inclusive
        self.asked: list[Window] = []
        self.in_flight = 0
        self.peak_in_flight = 0

    async def fetch_part(self, window: Window) -> WindowAnswer:
        self.asked.append(window)
        request_id = f"id{len(self.asked)}"
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.001)
        finally:
            self.in_flight -= 1
        covered = [
            r
            for r in self.records
            if window.owns(r.timestamp) or (self.inclusive and r.timestamp == window.end)
        ]
        total = sum(r.tokens for r in covered) + self.extra
        return report_window(window, covered[: self.cap], total, request_id)


def day_of_records(n: int) -> list[UsageRecord]:
    records = [UsageRecord((i * 7919) % 1000, 1 + i % 5, "m") for i in range(n)]
    return [*records, UsageRecord(0, 3, "m"), UsageRecord(0, 3, "m"), UsageRecord(999, 1, "m")]


async def test_a_window_that_adds_up_costs_one_request() -> None:
    source = CappedSource(day_of_records(10), cap=100)

    report = await heal(Window(0, 1000), source.fetch_part, floor=1)

    assert [Window(0, 1000)] == source.asked
    assert (source.records, True, ("id1",)) == (
        report.records,
        report.consistent,
        report.request_ids,
    )


async def test_a_cut_off_window_is_healed_by_halves_into_the_whole_truth() -> None:
    source = CappedSource(day_of_records(200), cap=30)

    report = await heal(Window(0, 1000), source.fetch_part, floor=1)

    assert source.records == report.records  # twins and both boundary seconds included
    assert sum(r.tokens for r in source.records) == report.total_tokens
    assert (0, 1000, True) == (report.start, report.end, report.consistent)
    assert len(source.asked) == len(report.request_ids) == len(set(report.request_ids))
    assert "id1" == report.request_ids[0]  # the cut-off answer's id, then its halves'


async def test_halves_are_fetched_concurrently() -> None:
    source = CappedSource(day_of_records(200), cap=30)

    await heal(Window(0, 1000), source.fetch_part, floor=1)

    assert source.peak_in_flight >= 2


async def test_totals_that_never_add_up_cost_three_requests_and_keep_the_parts_records() -> None:
    source = CappedSource(day_of_records(10), cap=100, extra=5)

    report = await heal(Window(0, 1000), source.fetch_part, floor=1)

    assert [Window(0, 1000), Window(0, 500), Window(500, 1000)] == source.asked
    assert (source.records, False) == (report.records, report.consistent)
    assert ("id1", "id2", "id3") == report.request_ids


async def test_a_window_with_more_than_declared_is_not_split() -> None:
    source = CappedSource(day_of_records(10), cap=100, extra=-1)

    report = await heal(Window(0, 1000), source.fetch_part, floor=1)

    assert [Window(0, 1000)] == source.asked
    assert not report.consistent


async def test_parts_shorter_than_the_floor_are_not_split() -> None:
    source = CappedSource(day_of_records(200), cap=30)

    report = await heal(Window(0, 1000), source.fetch_part, floor=300)

    # 1000 -> 500 + 500 -> 250 each: shorter than 300, kept though still cut off
    assert all(w.end - w.start >= 250 for w in source.asked)
    assert 7 == len(source.asked)
    assert not report.consistent
    assert set(report.records) <= set(source.records)


async def test_a_failing_half_cancels_the_other_and_its_error_is_raised() -> None:
    cancelled = asyncio.Event()

    async def fetch_part(window: Window) -> WindowAnswer:
        if window == Window(0, 1000):
            return report_window(window, [], 5, "whole")
        if window.start == 0:
            raise APITimeoutError("left half failed")
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("not cancelled")

    with pytest.raises(APITimeoutError, match="left half failed"):
        await heal(Window(0, 1000), fetch_part, floor=1)
    assert cancelled.is_set()


async def test_a_cut_off_record_on_an_inclusive_end_is_not_ours_and_the_halves_prove_it() -> None:
    # Four owned records fit under the cap; the fifth, on the window's end, is cut off.
    owned = [UsageRecord(t, 1, "m") for t in (0, 100, 600, 900)]
    source = CappedSource([*owned, UsageRecord(1000, 5, "m")], cap=4, inclusive=True)

    report = await heal(Window(0, 1000), source.fetch_part, floor=1)

    assert [Window(0, 1000), Window(0, 500), Window(500, 1000)] == source.asked
    assert (owned, True) == (report.records, report.consistent)
