"""``Client``: the blocking facade. One private event loop thread per client runs an
``AsyncClient``, so connections are pooled across calls and threads."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

from ._async_client import AsyncClient
from ._backfill import (
    DEFAULT_REFRESH_RECENT,
    BackfillResult,
    Duration,
    ProgressCallback,
    StoreLike,
)
from ._exceptions import ClientClosedError
from ._models import Account, Balance, UsageReport
from ._retry import RetryHook
from ._times import TimeLike
from ._transport import DEFAULT_MAX_RESPONSE_SIZE, ClientSession

__all__ = ["Client"]

T = TypeVar("T")


class _LoopThread:
    """An event loop running forever in a daemon thread, until :meth:`stop`."""

    def __init__(self, name: str) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            if threading.current_thread() is not self._thread:
                self._thread.join()


class Client:
    """Blocking client with the same constructor, methods, results and errors as
    :class:`AsyncClient`.

    Safe to share between threads, and usable from inside ``asgiref.sync.sync_to_async``.
    Calling it from a thread whose event loop is running raises :class:`RuntimeError`: use
    :class:`AsyncClient` and ``await`` there. ``session`` must be ``None``: an aiohttp
    session belongs to the loop that made it, and this client runs its own loop. ``on_retry``
    is called in that loop's thread.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        max_concurrency: int = 8,
        session: ClientSession | None = None,
        max_rate: float | None = None,
        trust_env: bool = False,
        on_retry: RetryHook | None = None,
        max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE,
    ) -> None:
        if session is not None:
            raise TypeError(
                "Client runs its own event loop and cannot borrow an aiohttp session "
                "(a session belongs to the loop that made it); use AsyncClient(session=...)"
            )
        self._async = AsyncClient(
            api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            max_concurrency=max_concurrency,
            max_rate=max_rate,
            trust_env=trust_env,
            on_retry=on_retry,
            max_response_size=max_response_size,
        )
        self._lock = threading.Lock()
        self._runner: _LoopThread | None = None
        self._closed = False
        self._calls: set[asyncio.Task[Any]] = set()  # touched on the loop thread only
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return "Client" + repr(self._async).removeprefix("AsyncClient")

    @property
    def base_url(self) -> str:
        """The API root this client talks to."""
        return self._async.base_url

    @property
    def account(self) -> Account:
        """Whose data this client reads (its base URL and the fingerprint of its key)."""
        return self._async.account

    def __enter__(self) -> Self:
        if self._closed:
            raise ClientClosedError("this client is closed; create a new one")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections and stop the client's loop thread. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            runner, self._runner = self._runner, None
        if runner is None:
            _close_unopened(self._async)
            return
        _shutdown(runner, self._async, self._calls)

    def usage(
        self,
        start: TimeLike,
        end: TimeLike,
        *,
        user_id: str | int | None = None,
        deadline: float | None = None,
        extra_query: Mapping[str, str | int] | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> UsageReport:
        """Blocking :meth:`AsyncClient.usage`."""
        call = self._async.usage(
            start,
            end,
            user_id=user_id,
            deadline=deadline,
            extra_query=extra_query,
            extra_headers=extra_headers,
        )
        return self._call(call)

    def iter_usage(
        self,
        start: TimeLike,
        end: TimeLike,
        *,
        user_id: str | int | None = None,
        deadline: float | None = None,
        extra_query: Mapping[str, str | int] | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> Generator[UsageReport, None, None]:
        """Blocking :meth:`AsyncClient.iter_usage`: an iterator of per-window reports.

        Arguments are checked at once. Close the iterator (or finish it) to stop the fetches
        still in flight; garbage collection does it too.
        """
        self._check_thread()
        windows = self._async.iter_usage(
            start,
            end,
            user_id=user_id,
            deadline=deadline,
            extra_query=extra_query,
            extra_headers=extra_headers,
        )
        return self._iterate(windows)

    def balance(self) -> Balance:
        """Blocking :meth:`AsyncClient.balance`."""
        return self._call(self._async.balance())

    # -- plumbing ---------------------------------------------------------------------------------

    def _iterate(self, windows: AsyncIterator[UsageReport]) -> Generator[UsageReport, None, None]:
        finished = False
        try:
            while True:
                try:
                    window = self._call(_next(windows))
                except StopAsyncIteration:
                    finished = True
                    return
                yield window
        finally:
            if not finished and not self._closed:
                aclose = getattr(windows, "aclose", None)
                if aclose is not None:
                    self._call(aclose())

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        outcome: concurrent.futures.Future[T] = concurrent.futures.Future()
        finished = threading.Event()
        tasks: list[asyncio.Task[T]] = []
        calls = self._calls

        def start() -> None:
            task = asyncio.get_running_loop().create_task(coro)
            tasks.append(task)
            calls.add(task)  # so that close() from another thread can cancel it
            task.add_done_callback(settle)

        def settle(task: asyncio.Task[T]) -> None:
            calls.discard(task)
            if task.cancelled():
                outcome.set_exception(ClientClosedError("the client was closed during the call"))
            elif (error := task.exception()) is not None:
                outcome.set_exception(error)
            else:
                outcome.set_result(task.result())
            finished.set()

        def cancel() -> None:
            for task in tasks:
                task.cancel()

        try:
            self._check_thread()
            runner = self._ensure_runner(start)
        except BaseException:
            coro.close()
            raise
        try:
            return outcome.result()
        except BaseException:
            if not finished.is_set():
                # KeyboardInterrupt in this thread: cancel the work on the loop and wait until
                # it has unwound (connections released), so nothing keeps running.
                runner.loop.call_soon_threadsafe(cancel)
                finished.wait(timeout=10)
            raise

    def _check_thread(self) -> None:
        if not _no_running_loop():
            raise RuntimeError(
                "r9s_async.Client was called from a thread whose event loop is running; "
                "blocking here would freeze that loop. Use r9s_async.AsyncClient with await."
            )

    def _ensure_runner(self, start: Callable[[], None]) -> _LoopThread:
        # Scheduling ``start`` under the lock orders it before any close(): a call either
        # starts before the close, and is cancelled by it, or fails as closed.
        with self._lock:
            if self._closed:
                raise ClientClosedError("this client is closed; create a new one")
            if self._pid != os.getpid():
                # A forked child has no loop thread and must not touch the parent's sockets
                # (the AsyncClient notices the fork itself and leaves its session alone).
                self._runner = None
                self._pid = os.getpid()
            if self._runner is None:
                self._runner = _LoopThread(f"r9s_async.Client-{id(self):x}")
                # A forgotten close() still closes the connections, at GC or at exit.
                weakref.finalize(self, _shutdown, self._runner, self._async, self._calls)
            self._runner.loop.call_soon_threadsafe(start)
            return self._runner

    def backfill(
        self,
        start: TimeLike,
        end: TimeLike,
        *,
        db: StoreLike,
        user_id: str | int | None = None,
        refresh_recent: Duration = DEFAULT_REFRESH_RECENT,
        progress: ProgressCallback | None = None,
        account_name: str | None = None,
    ) -> BackfillResult:
        """Blocking :meth:`AsyncClient.backfill`.

        ``progress`` is called in the client's event-loop thread. Interrupting the call (for
        example with Ctrl-C) stops the backfill; the windows stored so far are kept.
        """
        return self._call(
            self._async.backfill(
                start,
                end,
                db=db,
                user_id=user_id,
                refresh_recent=refresh_recent,
                progress=progress,
                account_name=account_name,
            )
        )


async def _next(windows: AsyncIterator[UsageReport]) -> UsageReport:
    return await anext(windows)


def _shutdown(runner: _LoopThread, client: AsyncClient, calls: set[asyncio.Task[Any]]) -> None:
    if runner.pid != os.getpid():
        return  # a forked child: the loop thread and its sockets are the parent's
    try:
        if runner.loop.is_running():
            runner.submit(_cancel_and_close(client, calls)).result(timeout=10)
    finally:
        runner.stop()


async def _cancel_and_close(client: AsyncClient, calls: set[asyncio.Task[Any]]) -> None:
    # Calls still running in other threads end with ClientClosedError instead of hanging on
    # a loop that stops under them.
    pending = list(calls)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    await client.aclose()


def _close_unopened(client: AsyncClient) -> None:
    # A client that never ran a call has no session, so its aclose() finishes without ever
    # suspending: it needs no event loop, and close() may run where none can be started.
    closing = client.aclose()
    try:
        closing.send(None)
    except StopIteration:
        return
    closing.close()
    raise RuntimeError("aclose() of a client without a session suspended")


def _no_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return True
    return False
