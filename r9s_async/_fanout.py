"""asyncio without HTTP: the ordered, bounded fan-out over windows, healing a cut-off window
by splitting it, and each attempt's turn."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterator
from typing import Any, TypeVar

from ._exceptions import APITimeoutError
from ._models import UsageReport
from ._throttle import Throttle
from ._windows import Window, WindowAnswer, halves_add_records, merge_parts

__all__ = ["fan_out", "heal", "take_turn"]

W = TypeVar("W")
R = TypeVar("R")
P = TypeVar("P", Window, WindowAnswer)


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


FetchPart = Callable[[Window], Coroutine[Any, Any, WindowAnswer]]
"""Fetches one window or part of one: a request, its retries, :func:`report_window`."""


async def heal(window: Window, fetch_part: FetchPart, *, floor: int) -> UsageReport:
    """Fetch ``window``, healing a cut-off answer by splitting; its report.

    A part whose records add up to less than its declared total is fetched again as its two
    halves (:meth:`Window.halves`), concurrently, and each half likewise, until every part adds
    up or is shorter than ``floor`` seconds. A part whose halves together return no record it
    did not return itself is not split further: when both halves add up, nothing it owns was
    missing (an inclusive server's record on its end was cut off) and the halves are kept;
    otherwise its totals disagree for another reason and it is kept as it is, flagged, so a
    server whose totals never add up costs at most three requests per window. A part with more
    than declared is never split. The parts that stay flagged are logged by :func:`merge_parts`.

    Args:
        window: The window to fetch.
        fetch_part: Fetches one window or part; the first failure ends the heal (the other
            half is cancelled) and is raised.
        floor: Parts shorter than this many seconds are not split.

    Returns:
        The window's report: ``consistent`` unless a part could not be healed; request ids
        of every answer fetched, superseded ones included, parents before their halves.
    """
    parts, request_ids = await _heal(await fetch_part(window), fetch_part, floor)
    return merge_parts(window, parts, request_ids)


async def _heal(
    answer: WindowAnswer, fetch_part: FetchPart, floor: int
) -> tuple[list[WindowAnswer], list[str]]:
    """The parts kept for ``answer``'s window, in time order, and every request id used."""
    request_ids = list(answer.report.request_ids)
    if not answer.cut_off or not answer.window.can_split(floor):
        return [answer], request_ids
    left, right = await _both(fetch_part, answer.window.halves())
    request_ids += (*left.report.request_ids, *right.report.request_ids)
    if not halves_add_records(answer.report, left.report, right.report):
        if left.report.consistent and right.report.consistent:
            # Nothing of ours was missing: what was cut off lay on the end, which an
            # inclusive server sends but this part does not own. The halves prove it whole.
            return [left, right], request_ids
        return [answer], request_ids

    async def heal_half(half: WindowAnswer) -> tuple[list[WindowAnswer], list[str]]:
        return await _heal(half, fetch_part, floor)

    (left_parts, left_ids), (right_parts, right_ids) = await _both(heal_half, (left, right))
    return left_parts + right_parts, [*answer.report.request_ids, *left_ids, *right_ids]


async def _both(fetch: Callable[[P], Coroutine[Any, Any, R]], items: tuple[P, P]) -> list[R]:
    """``fetch`` over two items at once, by :func:`fan_out`: the first failure cancels the
    other and is raised."""
    return [r async for r in fan_out(iter(items), fetch, concurrency=1, name=_part_name)]


def _part_name(item: Window | WindowAnswer) -> str:
    window = item.window if isinstance(item, WindowAnswer) else item
    return f"r9s_async part {window.label}"


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
