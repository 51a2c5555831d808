"""Resumable backfills: which UTC-day windows to fetch (pure), and the loop that stores them.

A backfill covers the half-open range ``[start, end)``. Each UTC day is one window that owns
``[max(start, a), min(end, a + 1 day))``. It is fetched by asking ``start_time=a,
end_time=b`` and keeping ``a <= t < b``, which is exact whether the server's ``end_time`` is
inclusive or not, so runs over overlapping ranges can share one store. A day stored only in
part is fetched again over the union of both spans and replaced whole, so no record is ever
stored twice and partial days get completed. A day whose answer was cut off is healed by the
client (it fetches the day's halves) and stored, whole, as one window.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, ParamSpec, Protocol, TypeAlias, TypeVar

import attrs
from asgiref.sync import sync_to_async
from attrs import frozen

from ._config import check_user_id
from ._models import Account, UsageReport
from ._store import Status, StoredWindow, UsageStore, check_account_name
from ._times import DAY, TimeLike, day_start, to_half_open
from ._windows import Window

__all__ = [
    "DEFAULT_REFRESH_RECENT",
    "BackfillProgress",
    "BackfillResult",
    "Duration",
    "ProgressCallback",
    "StoreLike",
    "WindowSource",
    "plan_backfill",
    "run_backfill",
]

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_REFRESH_RECENT = timedelta(days=1)


@frozen
class BackfillProgress:
    """How far a running backfill has come; passed to the ``progress`` callback.

    Attributes:
        windows_done: Windows finished, counting those already stored and skipped.
        windows_total: Windows (UTC days) in the range.
        windows_skipped: Windows already stored and complete, so not fetched this run.
        records: Records fetched and stored so far in this run.
        tokens: Their tokens.
        retries: Requests retried so far in this run.
        requests: Usage requests made so far in this run: one per window, more for a window
            whose answer was cut off and healed by splitting. Each counts once however often
            it was retried (those are ``retries``).
    """

    windows_done: int
    windows_total: int
    windows_skipped: int
    records: int
    tokens: int
    retries: int
    requests: int


@frozen
class BackfillResult:
    """What one backfill run did.

    Attributes:
        start: First second of the range (Unix seconds).
        end: Exclusive end of the range.
        user_id: The member asked for, or ``None`` for the organisation.
        windows_total: Windows (UTC days) in the range.
        windows_fetched: Windows fetched and stored in this run.
        windows_skipped: Windows already stored and complete.
        records: Records fetched and stored in this run.
        tokens: Their tokens.
        retries: Requests retried in this run.
        requests: Usage requests made in this run, as in :class:`BackfillProgress`.
    """

    start: int
    end: int
    user_id: str | None
    windows_total: int
    windows_fetched: int
    windows_skipped: int
    records: int
    tokens: int
    retries: int
    requests: int


StoreLike: TypeAlias = "str | os.PathLike[str] | UsageStore"
"""Where a backfill stores: a path to a SQLite file, or an open :class:`UsageStore`."""

Duration: TypeAlias = "timedelta | float"
"""A ``timedelta``, or seconds as a number."""

ProgressCallback: TypeAlias = "Callable[[BackfillProgress], None]"
"""Called after each stored window (and once at the start) with a :class:`BackfillProgress`."""


class WindowSource(Protocol):
    """What a backfill needs of a client: planned windows fetched, counts of requests and
    retries."""

    @property
    def retries(self) -> int:
        """Requests retried so far, by every call of the client."""

    @property
    def requests(self) -> int:
        """Usage requests (windows and parts of healed windows) made so far, by every call of
        the client, each counted once however often it was retried."""

    @property
    def account(self) -> Account:
        """Whose data the client reads: the store files what it fetches under this account."""

    def check_usable(self) -> None:
        """Raise :class:`ClientClosedError` if the client is closed."""

    def fetch_windows(
        self, plan: Iterator[Window], user_id: str | None
    ) -> AsyncGenerator[UsageReport, None]:
        """The reports of ``plan``'s windows in plan order, each owning ``[start, end)``,
        cut-off answers healed."""


def plan_backfill(
    start: int,
    end: int,
    stored: Mapping[int, StoredWindow],
    *,
    now: float,
    refresh_recent: float,
) -> tuple[list[Window], int]:
    """The windows a backfill of ``[start, end)`` must fetch, and how many days it may skip.

    A day is skipped when its stored window already covers what the range needs, is
    ``"complete"``, and ended at least ``refresh_recent`` seconds before ``now``. Otherwise
    it is fetched over the union of the stored span and the needed one, so it never shrinks.

    Args:
        start: First second.
        end: Exclusive end.
        stored: The stored windows by day (UTC midnight), as :meth:`UsageStore.coverage` gives.
        now: The current time, Unix seconds.
        refresh_recent: Seconds after its end during which a window may still change.

    Returns:
        ``(windows, skipped)``: windows in time order, each within one UTC day and owning
        ``[window.start, window.end)``.
    """
    windows: list[Window] = []
    skipped = 0
    for day in range(day_start(start), end, DAY):
        a, b = max(start, day), min(end, day + DAY)
        if a >= b:
            continue
        old = stored.get(day)
        if old is not None:
            covered = old.start <= a and b <= old.end
            settled = old.status == "complete" and old.end + refresh_recent <= now
            if covered and settled:
                skipped += 1
                continue
            a, b = min(a, old.start), max(b, old.end)
        windows.append(Window(a, b))
    return windows, skipped


def _status(end: int, *, started: float, refresh_recent: float) -> Status:
    # Judged by when the run started, before any request: the data can be no older than that.
    return "complete" if started >= end + refresh_recent else "recent"


def _seconds(refresh_recent: object) -> float:
    if isinstance(refresh_recent, timedelta):
        seconds = refresh_recent.total_seconds()
    elif isinstance(refresh_recent, int | float) and not isinstance(refresh_recent, bool):
        seconds = float(refresh_recent)
    else:
        raise TypeError(
            "refresh_recent must be a timedelta or seconds as a number, "
            f"not {type(refresh_recent).__name__}"
        )
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"refresh_recent must be >= 0, got {refresh_recent!r}")
    return seconds


async def run_backfill(
    client: WindowSource,
    start: TimeLike,
    end: TimeLike | None,
    *,
    db: StoreLike,
    user_id: str | int | None,
    refresh_recent: Duration,
    progress: ProgressCallback | None,
    account_name: str | None = None,
) -> BackfillResult:
    """The body of :meth:`AsyncClient.backfill`."""
    first, last = to_half_open(start, end)
    uid = check_user_id(user_id)
    recent = _seconds(refresh_recent)
    if not isinstance(db, UsageStore | str | os.PathLike):
        raise TypeError(f"db must be a path or a UsageStore, not {type(db).__name__}")
    if progress is not None and not callable(progress):
        raise TypeError("progress must be callable")
    account = attrs.evolve(client.account, name=check_account_name(account_name))
    client.check_usable()
    scope = uid or ""
    started = time.time()
    retries_before = client.retries
    requests_before = client.requests

    # The store is plain sqlite3, whose calls block. asgiref's sync_to_async runs each one on
    # this backfill's own single thread, so the backfill uses the connection from that thread
    # only and its calls keep their order (a cancelled run's close waits for the write in
    # progress), and it carries the caller's contextvars into the thread.
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="r9s_async store")

    def on_store_thread(fn: Callable[P, R]) -> Callable[P, Coroutine[Any, Any, R]]:
        return sync_to_async(fn, thread_sensitive=False, executor=executor)

    opened: list[UsageStore] = []  # filled on the store thread: even a cancelled open is closed

    def open_store(path: str | os.PathLike[str]) -> UsageStore:
        store = UsageStore(path)
        opened.append(store)
        return store

    def close_opened() -> None:
        for store in opened:
            store.close()

    try:
        store = db if isinstance(db, UsageStore) else await on_store_thread(open_store)(db)
        await on_store_thread(store.register_account)(account)  # a taken name fails here
        stored = await on_store_thread(store.coverage)(account, scope, first, last)
        plan, skipped = plan_backfill(first, last, stored, now=started, refresh_recent=recent)
        total = skipped + len(plan)
        done = skipped
        records = tokens = 0

        def report() -> None:
            if progress is not None:
                retries = client.retries - retries_before
                requests = client.requests - requests_before
                progress(BackfillProgress(done, total, skipped, records, tokens, retries, requests))

        report()
        replace_window = on_store_thread(store.replace_window)
        windows: Iterator[Window] = iter(plan)
        # Closed on the way out, so a failing write or progress callback stops the fetches.
        async with contextlib.aclosing(client.fetch_windows(windows, uid)) as answers:
            async for answer in answers:
                await replace_window(
                    account,
                    scope,
                    answer.start,
                    answer.end,
                    answer.records,
                    # A day whose records fell short of its declared total may have been cut
                    # off: keep it, but as "recent", so the next run fetches it again.
                    status=_status(answer.end, started=started, refresh_recent=recent)
                    if answer.consistent
                    else "recent",
                    fetched_at=int(time.time()),
                    request_id=answer.request_ids[0] if answer.request_ids else None,
                    # Refused if another backfill rewrote this day meanwhile (no lost rows).
                    previous=stored.get(day_start(answer.start)),
                )
                done += 1
                records += len(answer.records)
                tokens += answer.total_tokens
                report()
        await on_store_thread(close_opened)()
    finally:
        # Queued behind any store call still running; nothing to await, so a cancelled or
        # failing run leaves no task behind. Closing twice is harmless.
        executor.submit(close_opened)
        executor.shutdown(wait=False)
    return BackfillResult(
        first,
        last,
        uid,
        total,
        len(plan),
        skipped,
        records,
        tokens,
        client.retries - retries_before,
        client.requests - requests_before,
    )
