"""``AsyncClient``: settings, lifecycle, the public methods, and one attempt loop.

The HTTP lives in ``_transport.py``, decisions in the pure modules (decoding, windows, retry).
"""

from __future__ import annotations

import asyncio
import copy
import enum
import functools
import logging
import os
import random
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from functools import partial
from types import TracebackType
from typing import Self, TypeVar

from ._backfill import (
    DEFAULT_REFRESH_RECENT,
    BackfillResult,
    Duration,
    ProgressCallback,
    StoreLike,
    run_backfill,
)
from ._config import (
    RequestOptions,
    check_deadline,
    check_int,
    check_positive,
    check_request_options,
    configure_logging_from_env,
    resolve_api_key,
    resolve_base_url,
    resolve_max_retries,
    resolve_timeout,
)
from ._decode import Redact, UsageAnswer, decode_balance, decode_usage
from ._exceptions import ClientClosedError, R9sError
from ._fanout import fan_out, heal, take_turn
from ._models import Account, Balance, UsageReport
from ._rate_limits import parse_rate_limits
from ._retry import Retry, RetryEvent, RetryHook, backoff_delay, decide_retry
from ._throttle import Throttle
from ._times import TimeLike, to_half_open
from ._transport import DEFAULT_MAX_RESPONSE_SIZE, ClientSession, Transport, check_session
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

logger = logging.getLogger("r9s_async")
RETRY_HOLD = 2.0  # seconds; above a paced queue's usual wait (16 windows at 14/s: about 1.1)

T = TypeVar("T")
Decoder = Callable[[int, Mapping[str, str], bytes, Redact], T]


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
        self._base_url = resolve_base_url(base_url)
        timeout = resolve_timeout(timeout)
        max_retries = resolve_max_retries(max_retries)
        configure_logging_from_env()
        check_int("max_concurrency", max_concurrency, minimum=1)
        check_int("max_response_size", max_response_size, minimum=1)
        check_int("split_floor", split_floor, minimum=1)
        if max_rate is not None:
            check_positive("max_rate", max_rate)
        check_session(session, trust_env)
        if on_retry is not None and not callable(on_retry):
            raise TypeError("on_retry must be callable")
        self._key = key
        self._redact: Redact = key.redact
        self._transport = Transport(
            self._base_url,
            key,
            timeout=timeout,
            connections=max_concurrency,
            max_response_size=max_response_size,
            trust_env=trust_env is not False,
            session=session,
        )
        self._timeout = timeout
        self._max_retries = max_retries
        self._max_concurrency = max_concurrency
        self._on_retry = on_retry
        self._throttle = Throttle(max_rate)
        self._slots: asyncio.Semaphore | None = None
        self._pid = os.getpid()
        self._state = _State.UNOPENED
        self._rng = random.Random()
        self._split_floor = split_floor
        # Requests retried, and window and part requests asked: backfill progress reports them.
        self._retry_count = self._usage_requests = 0
        self._owner = self  # whose connections, pace and slots (itself, unless with_options)
        self._pauses = _Pauses()
        self._rng_backoff = functools.partial(backoff_delay, rng=self._rng)

    def __repr__(self) -> str:
        if not hasattr(self, "_state"):  # repr of a half-built client, e.g. in a traceback
            return "AsyncClient(<not constructed>)"
        return (
            f"AsyncClient(base_url={str(self._base_url)!r}, timeout={self._timeout}, "
            f"max_retries={self._max_retries}, max_concurrency={self._max_concurrency}, "
            f"state={self._state.value!r})"
        )

    @property
    def base_url(self) -> str:
        """The API root this client talks to."""
        return str(self._base_url)

    @property
    def account(self) -> Account:
        """Whose data this client reads (its base URL and the fingerprint of its key)."""
        return Account(str(self._base_url), self._key.fingerprint(str(self._base_url)))

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
        self._pauses.wake(None if self._owner is self else self)
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
        if deadline is None and count_windows(first, last) == 1:
            # One window needs no fan-out: no task, no waiting, two loop turns fewer per call.
            windows = [await self._fetch_window(Window(first, last), options)]
        else:
            plan = plan_windows(first, last)
            windows = [w async for w in self._fetch_windows(plan, options, deadline=deadline)]
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
        return self._fetch_windows(plan_windows(first, last), options, deadline=deadline)

    async def balance(self) -> Balance:
        """The account balance, amounts as exact decimals."""
        self._check_usable()
        return await self._request("/balance", {}, decode_balance, None)

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
            _WindowSource(self),
            *(start, end),
            db=db,
            user_id=user_id,
            refresh_recent=refresh_recent,
            progress=progress,
            account_name=account_name,
        )

    # -- windows and attempts -------------------------------------------------------------------

    def _fetch_windows(
        self, plan: Iterator[Window], options: RequestOptions, *, deadline: float | None = None
    ) -> AsyncGenerator[UsageReport, None]:
        """:func:`fan_out` of :meth:`_fetch_window` over ``plan``, reports in plan order."""
        return fan_out(
            plan,
            lambda window: self._fetch_window(window, options),
            concurrency=self._max_concurrency,
            deadline=deadline,
            name=_task_name,
        )

    async def _fetch_window(self, window: Window, options: RequestOptions) -> UsageReport:
        """One window's report, a cut-off answer healed by splitting (:func:`heal`)."""
        return await heal(window, partial(_fetch_part, self, options), floor=self._split_floor)

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
            self._slots = asyncio.Semaphore(self._max_concurrency)
        self._state = _State.OPENED
        return self._slots

    def _check_usable(self) -> None:
        if _State.CLOSED in (self._state, self._owner._state):
            raise ClientClosedError("this client is closed; create a new one")

    async def _request(
        self,
        path: str,
        params: dict[str, str],
        decode: Decoder[T],
        window: tuple[int, int] | None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> T:
        """One request: pace, take a slot, get, decode, ask the retry policy, sleep."""
        slots = self._open()
        loop = asyncio.get_running_loop()
        throttle = self._throttle
        label = "-" if window is None else f"[{window[0]}, {window[1]})"
        retry = 0
        hold_until: float | None = None  # a retry's budget: see take_turn
        while True:
            failure: R9sError | None = None
            answer: tuple[int, Mapping[str, str], bytes] | None = None
            await take_turn(throttle, slots, hold_until=hold_until)
            try:
                started = loop.time()  # waiting for a slot is not part of the attempt
                try:
                    answer = await self._transport.get(path, params, headers, seconds=self._timeout)
                except R9sError as exc:
                    failure = exc
                elapsed = loop.time() - started
            finally:
                slots.release()
            if failure is not None and _State.CLOSED in (self._state, self._owner._state):
                # aclose() closed the connector under this attempt; that is not a network error.
                failure = ClientClosedError("the client was closed during the call")
            status = None
            if answer is not None:
                status = answer[0]
                _note_limits(throttle, answer[1], loop.time())
                try:
                    result = decode(*answer, self._redact)
                except R9sError as exc:
                    failure = exc
                else:
                    throttle.on_success(loop.time())
                    _log_attempt(path, label, status, elapsed, retry, _request_id_of(result))
                    return result
                finally:
                    # The raw body may echo the key: keep it out of this frame's locals, which
                    # error reporters capture from a traceback.
                    answer = None
            assert failure is not None
            _detach(failure)
            status = getattr(failure, "status", status)
            request_id = getattr(failure, "request_id", None)
            _log_attempt(path, label, status, elapsed, retry, request_id)
            decision = decide_retry(
                failure, retry, max_retries=self._max_retries, backoff=self._rng_backoff
            )
            if decision is None:
                raise failure
            _tell_throttle(throttle, decision, loop.time(), started)
            event = RetryEvent(path, window, retry + 1, decision.wait, status, request_id, failure)
            _log_retry(event, label, self._max_retries)
            if self._on_retry is not None:
                self._on_retry(event)
            self._retry_count += 1
            hold_until = _hold_until(loop.time(), decision.wait)
            if await self._pauses.sleep(decision.wait, self):
                raise ClientClosedError("the client was closed during the call")
            retry += 1


class _WindowSource:
    """What a backfill needs of its client (the ``WindowSource`` protocol of ``_backfill``)."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    def check_usable(self) -> None:
        self._client._check_usable()

    @property
    def retries(self) -> int:
        return self._client._retry_count

    @property
    def requests(self) -> int:
        return self._client._usage_requests

    @property
    def account(self) -> Account:
        return self._client.account

    def fetch_windows(
        self, plan: Iterator[Window], user_id: str | None
    ) -> AsyncGenerator[UsageReport, None]:
        return self._client._fetch_windows(plan, RequestOptions(user_id))


def _note_limits(throttle: Throttle, headers: Mapping[str, str], now: float) -> None:
    limits = parse_rate_limits(headers)
    if not limits.empty:
        throttle.on_limits(now, limits)


def _detach(failure: R9sError) -> None:
    # Raised from the attempt loop, without the frames below (the decoder's locals hold the
    # raw body) and without a chained exception that could carry it.
    failure.__traceback__ = None
    failure.__context__ = None


def _tell_throttle(throttle: Throttle, decision: Retry, now: float, sent_at: float) -> None:
    if decision.rate_limited:
        throttle.on_throttled(now, decision.retry_after, sent_at=sent_at)
    elif decision.retry_after is not None:
        throttle.pause(now, decision.retry_after)


def _hold_until(now: float, wait: float) -> float:
    """When the shared pace and others' pauses stop holding back a retry due in ``wait``:
    as long again as its own wait (or ``RETRY_HOLD``) later, so a call whose windows keep
    failing fails within about the sum of its own waits, however many share the client."""
    return now + wait + max(wait, RETRY_HOLD)


async def _fetch_part(client: AsyncClient, options: RequestOptions, part: Window) -> WindowAnswer:
    """One request for a window or a part of one, as :func:`heal` asks for it."""
    params = options.params(part.start, part.end)
    client._usage_requests += 1
    answer: UsageAnswer = await client._request(
        "/usage", params, decode_usage, (part.start, part.end), options.headers
    )
    records, total = answer.payload.records, answer.payload.total_tokens
    return report_window(part, records, total, answer.request_id)


def _derive(client: AsyncClient, timeout: float | None, max_retries: int | None) -> AsyncClient:
    if timeout is not None:
        check_positive("timeout", timeout)
    if max_retries is not None:
        check_int("max_retries", max_retries, minimum=0)
    derived = copy.copy(client)  # shares the owner, transport, throttle and pauses
    derived._timeout = client._timeout if timeout is None else float(timeout)
    derived._max_retries = client._max_retries if max_retries is None else max_retries
    derived._state = _State.UNOPENED
    derived._rng = random.Random()
    derived._retry_count = derived._usage_requests = 0
    return derived


class _Pauses:
    """The retry pauses under way, each with its client; closing a client wakes its own."""

    def __init__(self) -> None:
        self._waiting: dict[asyncio.Future[None], AsyncClient] = {}

    async def sleep(self, seconds: float, client: AsyncClient) -> bool:
        """Sleep ``seconds``; ``True`` when cut short because ``client`` (or its owner)
        was closed."""
        loop = asyncio.get_running_loop()
        pause: asyncio.Future[None] = loop.create_future()
        self._waiting[pause] = client
        timer = loop.call_later(seconds, _wake, pause)
        try:
            await pause
        finally:
            timer.cancel()
            del self._waiting[pause]
        return _State.CLOSED in (client._state, client._owner._state)

    def wake(self, client: AsyncClient | None) -> None:
        """End the pauses of ``client``'s calls, or of every call for ``None``."""
        for pause, waiting in list(self._waiting.items()):
            if client in (None, waiting) and not pause.done():
                pause.set_result(None)


def _wake(pause: asyncio.Future[None]) -> None:
    if not pause.done():
        pause.set_result(None)


def _request_id_of(result: object) -> str | None:
    return getattr(result, "request_id", None)


def _task_name(window: Window) -> str:
    return f"r9s_async window {window.label}"


def _log_retry(event: RetryEvent, label: str, max_retries: int) -> None:
    logger.info(
        "retrying %s %s in %.2fs (attempt %d of %d): %s",
        *(event.path, label, event.wait, event.attempt + 1, max_retries + 1, event.error),
    )


def _log_attempt(
    path: str, label: str, status: int | None, elapsed: float, retry: int, request_id: str | None
) -> None:
    logger.debug(
        "GET %s window=%s status=%s elapsed=%.3fs attempt=%d request_id=%s",
        path,
        label,
        status if status is not None else "-",
        elapsed,
        retry + 1,
        request_id or "-",
    )
