"""The fan-out over plain coroutines, no server: ordered, bounded, first failure cancels."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest

from r9s_async import APITimeoutError
from r9s_async._fanout import fan_out


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
