"""``AsyncClient``: settings, lifecycle, the public methods, and one attempt loop.

The HTTP lives in ``_transport.py``, decisions in the pure modules (decoding, windows, retry).
"""

from __future__ import annotations

import asyncio
import copy
import enum
import os
from collections.abc import AsyncGenerator, Iterator, Mapping
from functools import partial
from types import TracebackType
from typing import Self

from ._attempts import Attempts
from ._backfill import (
    DEFAULT_REFRESH_RECENT,
    BackfillResult,
    Duration,
    ProgressCallback,
    StoreLike,
    run_backfill,
)
from ._config import RequestOptions, check_deadline, check_request_options, resolve_api_key
from ._decode import UsageAnswer, decode_balance, decode_usage
from ._exceptions import ClientClosedError
from ._fanout import fan_out, heal
from ._models import Account, Balance, UsageReport
from ._retry import RetryHook
from ._settings import ClientSettings
from ._throttle import Throttle
from ._times import TimeLike, to_half_open
from ._transport import DEFAULT_MAX_RESPONSE_SIZE, ClientSession, Transport
from ._windows import (
    DEFAULT_SPLIT_FLOOR,
    Window,
    WindowAnswer,
    count_windows,
    merge_windows,
    plan_windows,
    report_window,
)

__all__ = ["AsyncClient"]


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSED = "closed"


class AsyncClient:
    """Asynchronous client for the r9s Manager API.

    Args:
        api_key: Management key; defaults to the ``R9S_API_KEY`` environment variable.
        base_url: API root; defaults to ``R9S_BASE_URL`` or the public endpoint. ``http://`` is
            accepted only for loopback hosts.
        timeout: Seconds allowed for one attempt (connect, send, read the whole body). Time
            spent waiting for a free slot or for client-wide pacing does not count.
            Default: ``R9S_TIMEOUT``, else 30.
        max_retries: Extra attempts for a transient failure (connection error, timeout, 408,
            429, 500, 502, 503, 504). Defaults to ``R9S_MAX_RETRIES``, else 3.
        max_concurrency: Most requests in flight at once.
        session: An :class:`aiohttp.ClientSession` to borrow (for a private CA or a proxy).
            It is never closed by the client.
        max_rate: Requests per second never to exceed, shared by every call on this client
            (``None``: no fixed limit). Whatever it is, a 429 lowers the client's pace, and
            successes raise it back.
        trust_env: Use the proxy ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` name (read at
            construction); on unless ``False``. A borrowed ``session`` keeps its own.
        on_retry: Called with a :class:`RetryEvent` before each retry, in the event loop's
            thread; keep it quick. An exception it raises ends the call.
        max_response_size: Bytes one answer may have once decompressed; a larger one raises
            :class:`MalformedResponseError` without being read further.
        split_floor: A window whose records add up to less than its declared total is fetched
            again as two halves, recursively, until every part adds up or is shorter than this
            many seconds.

    Raises:
        ConfigurationError: No API key, or an unusable one; or a bad ``R9S_TIMEOUT``,
            ``R9S_MAX_RETRIES`` or ``R9S_LOG``.
        ValueError: A bad ``base_url`` or setting, or ``trust_env=True`` with ``session``
            (a borrowed session keeps its own ``trust_env``).
        TypeError: A setting of the wrong type.
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
            key = resolve_api_key(api_key)
        finally:
            del api_key  # not a local of this frame in any traceback error reporters capture
        self._settings = settings = ClientSettings.resolve(
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            max_concurrency=max_concurrency,
            max_rate=max_rate,
            trust_env=trust_env,
            on_retry=on_retry,
            max_response_size=max_response_size,
            split_floor=split_floor,
            session=session,
        )
        self._key = key
        self._transport = Transport(
            settings.base_url,
            key,
            timeout=settings.timeout,
            connections=max_concurrency,
            max_response_size=max_response_size,
            trust_env=trust_env is not False,
            session=session,
        )
        self._attempts = Attempts(self._transport, Throttle(max_rate), key.redact, settings)
        self._slots: asyncio.Semaphore | None = None
        self._pid = os.getpid()
        self._state = _State.UNOPENED
        self._usage_requests = 0  # window and part requests asked: backfill progress reports them
        self._owner = self  # whose connections, pace and slots (itself, unless with_options)

    def __repr__(self) -> str:
        if not hasattr(self, "_state"):  # repr of a half-built client, e.g. in a traceback
            return "AsyncClient(<not constructed>)"
        settings = self._settings
        return (
            f"AsyncClient(base_url={str(settings.base_url)!r}, timeout={settings.timeout}, "
            f"max_retries={settings.max_retries}, max_concurrency={settings.max_concurrency}, "
            f"state={self._state.value!r})"
        )

    @property
    def base_url(self) -> str:
        """The API root this client talks to."""
        return str(self._settings.base_url)

    @property
    def account(self) -> Account:
        """Whose data this client reads (its base URL and the fingerprint of its key)."""
        return Account(self.base_url, self._key.fingerprint(self.base_url))

    async def __aenter__(self) -> Self:
        self._check_usable()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client's own session (not a borrowed one, nor the original's for a client
        made by :meth:`with_options`). Safe to call twice; the client cannot be reused."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        self._attempts.close()
        if self._owner is self:
            await self._transport.close()

    def with_options(
        self, *, timeout: float | None = None, max_retries: int | None = None
    ) -> AsyncClient:
        """A client with another ``timeout`` or ``max_retries`` (``None`` keeps this one's)
        sharing all else: key, limits, ``on_retry``, connections, pace and slots. Closing it
        leaves the connections open: the original client owns them."""
        self._check_usable()
        return _derive(self, timeout, max_retries)

    # -- public API ---------------------------------------------------------------------------

    async def usage(
        self,
        start: TimeLike,
        end: TimeLike | None = None,
        *,
        user_id: str | int | None = None,
        deadline: float | None = None,
        extra_query: Mapping[str, str | int] | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> UsageReport:
        """Usage records in the half-open range ``[start, end)``: ``start <= timestamp < end``,
        whether the server's ``end_time`` is inclusive or not.

        Fetched in UTC-day windows, ``max_concurrency`` at a time, and merged; a cut-off window
        is healed by fetching its halves (see ``split_floor``).

        Args:
            start: First second: Unix seconds, an aware ``datetime`` or a ``date`` (UTC
                midnight); fractions round up, for ``end`` too.
            end: Exclusive end, same types; ``None`` is now (the end of the current second).
            user_id: One member's usage (organisation admin keys only).
            deadline: Seconds the whole call may take, retries and pauses included; when
                they run out, everything in flight is cancelled.
            extra_query: More query parameters for every request (filters not yet documented).
            extra_headers: Extra headers sent with every request of the call.

        Returns:
            The merged report, records in timestamp order, ``start`` and ``end`` in seconds.

        Raises:
            TypeError: A time, ``extra_query`` or ``extra_headers`` of the wrong type.
            ValueError: A naive datetime, a negative time, an empty range (``end <= start``),
                or an extra parameter or header the client sets (see the configuration guide).
            APITimeoutError: The ``deadline`` passed.
            R9sError: The first window that failed for good (the others are cancelled).
        """
        first, last = to_half_open(start, end)
        options = check_request_options(user_id, extra_query, extra_headers)
        check_deadline(deadline)
        self._check_usable()
        fetch = _UsageWindows(self)
        if deadline is None and count_windows(first, last) == 1:
            # One window needs no fan-out: no task, no waiting, two loop turns fewer per call.
            windows = [await fetch.one(Window(first, last), options)]
        else:
            plan = plan_windows(first, last)
            windows = [w async for w in fetch.all(plan, options, deadline=deadline)]
        return merge_windows(first, last, windows)

    def iter_usage(
        self,
        start: TimeLike,
        end: TimeLike | None = None,
        *,
        user_id: str | int | None = None,
        deadline: float | None = None,
        extra_query: Mapping[str, str | int] | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> AsyncGenerator[UsageReport, None]:
        """Yield one :class:`UsageReport` per UTC-day window of ``[start, end)``, in time order:
        each owns ``[window.start, window.end)``. Takes the arguments of :meth:`usage`.

        Windows are fetched concurrently with bounded look-ahead, so memory does not grow with
        the range. Arguments are checked at once, before anything is sent. Leaving the loop
        early cancels the requests in flight; ``aclose()`` it (or use
        :func:`contextlib.aclosing`) to have that done before the next line runs.

        ``deadline`` (seconds) counts from the first step of the iteration, time spent in
        the loop's body included; the first step after it passed raises
        :class:`APITimeoutError` and cancels the requests in flight (extras as in :meth:`usage`).
        """
        first, last = to_half_open(start, end)
        options = check_request_options(user_id, extra_query, extra_headers)
        check_deadline(deadline)
        self._check_usable()
        return _UsageWindows(self).all(plan_windows(first, last), options, deadline=deadline)

    async def balance(self) -> Balance:
        """The account balance, amounts as exact decimals."""
        self._check_usable()
        return await self._attempts.request(self._open(), "/balance", {}, decode_balance, None)

    async def backfill(
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
        """Fetch ``[start, end)`` into a SQLite store, one UTC-day window at a time.

        Each window is committed in one transaction with its records, so the run can be
        stopped at any moment (even killed) and started again: a re-run fetches only what is
        missing. Runs over overlapping ranges share a store without storing a record twice.
        Windows that ended less than ``refresh_recent`` ago (or were stored back then) are
        fetched again and replaced. Records are written as windows arrive, so memory does not
        grow with the range.

        Args:
            start: First second, as in :meth:`usage`.
            end: Exclusive end, as in :meth:`usage` (``None`` is now).
            db: A path to the SQLite file (created if missing; opened and closed by this
                call), or an open :class:`UsageStore` (left open).
            user_id: One member's usage (organisation admin keys only); stored apart from the
                organisation's.
            refresh_recent: How long after its end a window may still change (``timedelta``
                or seconds).
            progress: Called with a :class:`BackfillProgress` once at the start and after each
                stored window, in the event loop's thread; keep it quick.
            account_name: A readable name for this client's :attr:`account` in the store
                (shown in exports instead of the fingerprint); ``None`` keeps the name it has.
                The store keeps each account's days apart, so a backfill skips only days
                stored for the same account and member.

        Returns:
            What this run fetched and skipped.

        Raises:
            TypeError: An argument of the wrong type.
            ValueError: A naive datetime, a negative time, an empty range, a
                negative ``refresh_recent``, or an ``account_name`` that is invalid or used by
                another account of the store (checked before anything is fetched).
            StoreError: ``db`` cannot be used as a usage store; it was not changed.
            R9sError: A window failed for good; the windows stored before it are kept.
        """
        return await run_backfill(
            _UsageWindows(self),
            *(start, end),
            db=db,
            user_id=user_id,
            refresh_recent=refresh_recent,
            progress=progress,
            account_name=account_name,
        )

    # -- lifecycle ------------------------------------------------------------------------------

    def _open(self) -> asyncio.Semaphore:
        self._check_usable()
        if self._owner is not self:
            slots = self._owner._open()
            self._state = _State.OPENED
            return slots
        if self._pid != os.getpid():
            # A forked child: the parent's session, loop and slots are not ours to touch.
            self._transport.forget()
            self._slots, self._pid = None, os.getpid()
        self._transport.open()
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._settings.max_concurrency)
        self._state = _State.OPENED
        return self._slots

    def _check_usable(self) -> None:
        if _State.CLOSED in (self._state, self._owner._state):
            raise ClientClosedError("this client is closed; create a new one")


class _UsageWindows:
    """A client's usage windows: one request each (more for one healed by splitting, see
    :func:`heal`), fanned out in plan order; and the ``WindowSource`` a backfill consumes."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    def all(
        self, plan: Iterator[Window], options: RequestOptions, *, deadline: float | None = None
    ) -> AsyncGenerator[UsageReport, None]:
        """:func:`fan_out` of :meth:`one` over ``plan``, reports in plan order."""
        return fan_out(
            plan,
            lambda window: self.one(window, options),
            concurrency=self._client._settings.max_concurrency,
            deadline=deadline,
            name=_task_name,
        )

    async def one(self, window: Window, options: RequestOptions) -> UsageReport:
        """One window's report, a cut-off answer healed by splitting (:func:`heal`)."""
        fetch_part = partial(self._part, options)
        return await heal(window, fetch_part, floor=self._client._settings.split_floor)

    async def _part(self, options: RequestOptions, part: Window) -> WindowAnswer:
        """One request for a window or a part of one, as :func:`heal` asks for it."""
        client = self._client
        params = options.params(part.start, part.end)
        client._usage_requests += 1
        answer: UsageAnswer = await client._attempts.request(
            client._open(), "/usage", params, decode_usage, (part.start, part.end), options.headers
        )
        records, total = answer.payload.records, answer.payload.total_tokens
        return report_window(part, records, total, answer.request_id)

    # -- the WindowSource protocol of _backfill ----------------------------------------------

    def check_usable(self) -> None:
        self._client._check_usable()

    @property
    def retries(self) -> int:
        return self._client._attempts.retries

    @property
    def requests(self) -> int:
        return self._client._usage_requests

    @property
    def account(self) -> Account:
        return self._client.account

    def fetch_windows(
        self, plan: Iterator[Window], user_id: str | None
    ) -> AsyncGenerator[UsageReport, None]:
        return self.all(plan, RequestOptions(user_id))


def _derive(client: AsyncClient, timeout: float | None, max_retries: int | None) -> AsyncClient:
    settings = client._settings.with_options(timeout, max_retries)
    derived = copy.copy(client)  # shares the owner, transport and slots
    derived._settings = settings
    derived._attempts = client._attempts.derive(settings)  # shares the pace and pauses
    derived._state = _State.UNOPENED
    derived._usage_requests = 0
    return derived


def _task_name(window: Window) -> str:
    return f"r9s_async window {window.label}"
