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
from ._windows import DEFAULT_SPLIT_FLOOR

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

    @property
    def alive(self) -> bool:
        """Whether the loop can still run what is submitted to it."""
        return self._thread.is_alive() and not self.loop.is_closed()

    def in_loop_thread(self) -> bool:
        """Whether the caller runs on this loop (a hook such as ``on_retry``)."""
        return threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            if not self.in_loop_thread():
                self._thread.join()


# The calls running on a loop thread, each with the Client that made it, so that close()
# can end them. Touched on the loop thread only.
_Calls = dict["asyncio.Task[Any]", "Client"]


class Client:
    """Blocking client with the same constructor, methods, results and errors as
    :class:`AsyncClient`.

    It runs its own event loop in its own thread, so it works from any thread: plain scripts,
    worker threads, ``asgiref.sync.sync_to_async``, and threads whose own event loop is
    running, such as a Jupyter notebook's (the call blocks that thread as any blocking call
    does, and cannot deadlock the client). The one place it cannot be called is its own loop
    thread, where ``on_retry`` and ``progress`` run: that raises :class:`RuntimeError`, since
    the call would wait for itself. :meth:`close` works from anywhere, those hooks included.
    ``session`` must be ``None``: an aiohttp session belongs to the loop that made it, and
    this client runs its own loop.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        max_concurrency: int = 8,
        session: ClientSession | None = None,
        max_rate: float | None = None,
        trust_env: bool | None = None,
        on_retry: RetryHook | None = None,
        max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE,
        split_floor: int = DEFAULT_SPLIT_FLOOR,
    ) -> None:
        try:
            if session is not None:
                raise TypeError(
                    "Client runs its own event loop and cannot borrow an aiohttp session "
                    "(a session belongs to the loop that made it); use AsyncClient(session=...)"
                )
            client = AsyncClient(
                api_key,
                base_url=base_url,
                timeout=timeout,
                max_retries=max_retries,
                max_concurrency=max_concurrency,
                max_rate=max_rate,
                trust_env=trust_env,
                on_retry=on_retry,
                max_response_size=max_response_size,
                split_floor=split_floor,
            )
        finally:
            del api_key  # not a local of this frame in any traceback error reporters capture
        self._async = client
        self._owner = self  # the Client whose loop thread this one uses
        self._lock = threading.Lock()
        self._closed = False
        self._calls: _Calls = {}
        self._runner: _LoopThread | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._pid = os.getpid()

    def __repr__(self) -> str:
        client = vars(self).get("_async")
        if client is None:  # repr of a half-built client, e.g. in a traceback's locals
            return "Client(<not constructed>)"
        return "Client" + repr(client).removeprefix("AsyncClient")

    def with_options(
        self, *, timeout: float | None = None, max_retries: int | None = None
    ) -> Client:
        """Blocking :meth:`AsyncClient.with_options`: a client with other settings that
        shares this one's loop thread, connections, pace and slots.

        Closing it ends only its own calls; closing the original closes everything they
        share.
        """
        if self._is_closed():
            raise ClientClosedError("this client is closed; create a new one")
        owner = self._owner
        derived = object.__new__(Client)
        derived._async = self._async.with_options(timeout=timeout, max_retries=max_retries)
        derived._owner = owner
        derived._lock = owner._lock
        derived._closed = False
        derived._calls = owner._calls
        return derived

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
        """Close the connections and stop the client's loop thread. Safe to call twice.

        Calls in flight, in any thread, end with :class:`ClientClosedError`. It may be called
        from any thread, ``on_retry`` and ``progress`` callbacks included; from those it
        returns at once, and the loop finishes closing once the callback returns.
        A client made by :meth:`with_options` ends only its own calls and keeps the
        connections open.
        """
        owner = self._owner
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if owner is self:
                finalizer, self._finalizer, self._runner = self._finalizer, None, None
            else:
                runner = owner._runner
                if runner is not None and runner.alive and runner.pid == os.getpid():
                    closing = _end_calls_of(self, self._async, owner._calls)
                    if runner.in_loop_thread():
                        runner.loop.create_task(closing)
                        return
                    ended = runner.submit(closing)
                else:
                    ended = None
        if owner is not self:
            if ended is None:
                _close_unopened(self._async)
            else:
                ended.result(timeout=10)
            return
        if finalizer is None:
            _close_unopened(self._async)
        else:
            finalizer()  # _shutdown, once: a later garbage collection does nothing

    def usage(
        self,
        start: TimeLike,
        end: TimeLike | None = None,
        *,
        user_id: str | int | None = None,
        deadline: float | None = None,
        extra_query: Mapping[str, str | int] | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> UsageReport:
        """Blocking :meth:`AsyncClient.usage`: the records of the half-open ``[start, end)``."""
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
        end: TimeLike | None = None,
        *,
        user_id: str | int | None = None,
        deadline: float | None = None,
        extra_query: Mapping[str, str | int] | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> Generator[UsageReport, None, None]:
        """Blocking :meth:`AsyncClient.iter_usage`: an iterator of per-window reports of the
        half-open ``[start, end)``.

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
            if not finished and not self._is_closed():
                aclose = getattr(windows, "aclose", None)
                if aclose is not None:
                    self._call(aclose())

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        # The hop costs one wake-up of the loop and one of this thread: the wrapper stores
        # the outcome and releases a lock this thread sleeps on (no Future, no Event, no
        # done-callback turn before the caller wakes).
        woken = threading.Lock()
        woken.acquire()
        outcome: list[Any] = []  # [result] or [None, error]
        tasks: list[asyncio.Task[None]] = []
        calls = self._calls

        async def run() -> None:
            try:
                outcome.append(await coro)
            except asyncio.CancelledError:
                outcome[:] = [None, ClientClosedError("the client was closed during the call")]
            except BaseException as error:  # re-raised in the calling thread
                outcome[:] = [None, error]
            finally:
                calls.pop(tasks[0], None)
                woken.release()

        def start() -> None:
            task = asyncio.get_running_loop().create_task(run())
            tasks.append(task)
            calls[task] = self  # so that close() from another thread can cancel it
            task.add_done_callback(never_started)

        def never_started(task: asyncio.Task[None]) -> None:
            # run() absorbs every cancellation once running; a cancelled task was cancelled
            # before its first step, so its body never ran: settle here.
            if task.cancelled():
                coro.close()
                calls.pop(task, None)
                outcome[:] = [None, ClientClosedError("the client was closed during the call")]
                woken.release()

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
            woken.acquire()
        except BaseException:
            # KeyboardInterrupt in this thread: cancel the work on the loop and wait until it
            # has unwound (connections released), so nothing keeps running.
            runner.loop.call_soon_threadsafe(cancel)
            woken.acquire(timeout=10)
            raise
        if len(outcome) == 2:
            error: BaseException = outcome[1]
            try:
                raise error
            finally:
                del error  # no reference cycle through the traceback
                outcome.clear()
        result: T = outcome[0]
        return result

    def _is_closed(self) -> bool:
        return self._closed or self._owner._closed

    def _check_thread(self) -> None:
        runner = self._owner._runner
        if runner is not None and runner.in_loop_thread():
            raise RuntimeError(
                "r9s_async.Client was called from its own event loop's thread (from on_retry "
                "or a progress callback); the call would wait for itself. Call it from another "
                "thread (close() is fine from here)."
            )

    def _ensure_runner(self, start: Callable[[], None]) -> _LoopThread:
        # Scheduling ``start`` under the lock orders it before any close(): a call either
        # starts before the close, and is cancelled by it, or fails as closed.
        owner = self._owner
        with self._lock:
            if self._is_closed():
                raise ClientClosedError("this client is closed; create a new one")
            if owner._pid != os.getpid():
                # A forked child has no loop thread and must not touch the parent's sockets
                # (the AsyncClient notices the fork itself and leaves its session alone).
                owner._runner = None
                owner._pid = os.getpid()
            if owner._runner is None:
                owner._runner = _LoopThread(f"r9s_async.Client-{id(owner):x}")
                # A forgotten close() still closes the connections, at GC or at exit.
                owner._finalizer = weakref.finalize(
                    owner, _shutdown, owner._runner, owner._async, owner._calls
                )
            owner._runner.loop.call_soon_threadsafe(start)
            return owner._runner

    def backfill(
        self,
        start: TimeLike,
        end: TimeLike | None = None,
        *,
        db: StoreLike,
        user_id: str | int | None = None,
        refresh_recent: Duration = DEFAULT_REFRESH_RECENT,
        progress: ProgressCallback | None = None,
        account_name: str | None = None,
    ) -> BackfillResult:
        """Blocking :meth:`AsyncClient.backfill` of the half-open ``[start, end)``.

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


def _shutdown(runner: _LoopThread, client: AsyncClient, calls: _Calls) -> None:
    if runner.pid != os.getpid():
        return  # a forked child: the loop thread and its sockets are the parent's
    if runner.in_loop_thread():
        # Called from a hook on the loop (on_retry, progress): waiting here would wait for
        # the loop on itself. The loop ends the calls, closes, then stops, after the hook.
        if runner.alive:
            closing = runner.loop.create_task(_cancel_and_close(client, calls))
            closing.add_done_callback(lambda _: runner.loop.stop())
        return
    try:
        if runner.alive:
            runner.submit(_cancel_and_close(client, calls)).result(timeout=10)
    finally:
        runner.stop()


async def _cancel_and_close(client: AsyncClient, calls: _Calls) -> None:
    # Calls still running in other threads end with ClientClosedError instead of hanging on
    # a loop that stops under them.
    pending = list(calls)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    await client.aclose()


async def _end_calls_of(owner: Client, client: AsyncClient, calls: _Calls) -> None:
    # Closing a client made by with_options: its own calls end, the shared loop stays.
    pending = [task for task, made_by in calls.items() if made_by is owner]
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
