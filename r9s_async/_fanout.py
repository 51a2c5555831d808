"""asyncio without HTTP: the ordered, bounded fan-out over windows, and each attempt's turn."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterator
from typing import Any, TypeVar

from ._exceptions import APITimeoutError
from ._throttle import Throttle

__all__ = ["fan_out", "take_turn"]

W = TypeVar("W")
R = TypeVar("R")


async def fan_out(
    plan: Iterator[W],
    fetch_one: Callable[[W], Coroutine[Any, Any, R]],
    *,
    concurrency: int,
    deadline: float | None = None,
    name: Callable[[W], str] = str,
) -> AsyncGenerator[R, None]:
    """Run ``fetch_one`` over ``plan`` concurrently; yield the results in plan order.

    At most ``2 * concurrency`` items are started and not yet yielded, so memory does not grow
    with the plan. The first ``fetch_one`` that fails cancels the rest and its error is raised; so
    does the ``deadline`` (seconds from the first step), as :class:`APITimeoutError`.
    Closing the generator cancels what is still running and waits for it to unwind.

    Args:
        plan: The items, consumed lazily.
        fetch_one: The coroutine function run for each item, as its own task.
        concurrency: Sets the look-ahead (twice this); the caller bounds the work in flight.
        deadline: Seconds the whole iteration may take, or ``None``.
        name: Names each task, for debugging.
    """
    loop = asyncio.get_running_loop()
    due = None if deadline is None else loop.time() + deadline
    lookahead = 2 * concurrency
    pending: deque[asyncio.Task[R]] = deque()
    failed: asyncio.Future[asyncio.Task[R]] = loop.create_future()

    def watch(task: asyncio.Task[R]) -> None:
        if not task.cancelled() and task.exception() is not None and not failed.done():
            failed.set_result(task)

    def top_up() -> None:
        for item in itertools.islice(plan, lookahead - len(pending)):
            task = loop.create_task(fetch_one(item), name=name(item))
            task.add_done_callback(watch)
            pending.append(task)

    def out_of_time() -> APITimeoutError:
        return APITimeoutError(
            f"the call's deadline of {deadline:g}s passed with windows still to fetch"
        )

    try:
        top_up()
        while pending:
            head = pending[0]
            if due is not None and loop.time() >= due:
                raise out_of_time()
            if not head.done():
                left = None if due is None else due - loop.time()
                await asyncio.wait(
                    (head, failed), timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
            if failed.done():
                error = failed.result().exception()
                assert error is not None
                raise error
            if not head.done():
                raise out_of_time()
            pending.popleft()
            result = head.result()
            top_up()
            yield result
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
            for task in pending:
                if not task.cancelled():
                    task.exception()  # mark as retrieved: the first failure was raised
        failed.cancel()


async def take_turn(
    throttle: Throttle, slots: asyncio.Semaphore, *, hold_until: float | None = None
) -> None:
    """Wait for an attempt's turn under the client-wide pace (and any server pause), then for
    a free slot. A paced attempt holds no slot; one that got its slot while a pause began gives
    it back and waits again.

    ``hold_until`` (loop time) bounds how long the shared pace and pauses may hold a retry:
    past it, the attempt only waits for a slot. A retry budget is the retrying call's own
    waits, not every other window's.
    """
    loop = asyncio.get_running_loop()

    def held(wait: float) -> float:
        return wait if hold_until is None else min(wait, hold_until - loop.time())

    while True:
        wait = held(throttle.reserve(loop.time()))
        while wait > 0:
            await asyncio.sleep(wait)
            # A 429 elsewhere may have paused everyone meanwhile: queue again behind the
            # pause, at the new pace, rather than all leave together when it ends.
            wait = held(throttle.reserve(loop.time())) if throttle.paused(loop.time()) else 0.0
        await slots.acquire()
        if not throttle.paused(loop.time()) or held(1.0) <= 0:
            return
        slots.release()
