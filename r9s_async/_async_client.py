"""``AsyncClient``: the aiohttp shell around the pure core. The only module that speaks HTTP."""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import operator
import platform
import random
import zlib
from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from types import TracebackType
from typing import Self, TypeVar

import aiohttp
from attrs import frozen
from yarl import URL

from ._backfill import (
    DEFAULT_REFRESH_RECENT,
    BackfillResult,
    Duration,
    ProgressCallback,
    StoreLike,
    run_backfill,
)
from ._config import (
    AuthHeaders,
    check_positive,
    check_user_id,
    resolve_api_key,
    resolve_base_url,
)
from ._decode import Redact, UsageAnswer, decode_balance, decode_usage, is_retryable
from ._exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    ClientClosedError,
    MalformedResponseError,
    R9sError,
    RateLimitError,
)
from ._models import Account, Balance, UsageReport
from ._retry import backoff_delay
from ._throttle import Throttle
from ._times import TimeLike, to_range
from ._version import __version__
from ._windows import Window, count_windows, merge_windows, owned_records, plan_windows

__all__ = [
    "DEFAULT_MAX_RESPONSE_SIZE",
    "RETRY_AFTER_CAP",
    "USER_AGENT",
    "AsyncClient",
    "RetryEvent",
]

logger = logging.getLogger("r9s_async")

USER_AGENT = (
    f"r9s_async/{__version__} aiohttp/{aiohttp.__version__} Python/{platform.python_version()}"
)
DEFAULT_MAX_RESPONSE_SIZE = 64 * 1024 * 1024
RETRY_AFTER_CAP = 120.0
"""A ``Retry-After`` longer than this (seconds) is not waited out: the error is raised."""
_READ_CHUNK = 64 * 1024
_MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})

T = TypeVar("T")
Decoder = Callable[[int, Mapping[str, str], bytes, Redact], T]


@frozen
class RetryEvent:
    """One failed attempt that is about to be retried; passed to ``on_retry``.

    Attributes:
        path: ``"/usage"`` or ``"/balance"``.
        window: ``(start_time, end_time)`` the attempt asked for, or ``None`` for balance.
        attempt: The number of the attempt that failed (1 for the first).
        wait: Seconds until the next attempt: the server's ``Retry-After`` or our backoff.
            Client-wide pacing after a 429 may hold it back a little longer.
        status: The HTTP status of the failed attempt, or ``None`` if none arrived.
        request_id: The request id the server gave, if any.
        error: What went wrong.
    """

    path: str
    window: tuple[int, int] | None
    attempt: int
    wait: float
    status: int | None
    request_id: str | None
    error: R9sError


RetryHook = Callable[[RetryEvent], None]


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
        max_retries: Extra attempts for a transient failure (connection error, timeout, 408,
            429, 500, 502, 503, 504).
        max_concurrency: Most requests in flight at once.
        session: An :class:`aiohttp.ClientSession` to borrow (for a private CA or a proxy).
            It is never closed by the client.
        max_rate: Requests per second never to exceed, shared by every call on this client
            (``None``: no fixed limit). Whatever it is, a 429 lowers the client's pace, and
            successes raise it back.
        trust_env: Let the session the client creates use proxies from the environment
            (``HTTPS_PROXY``, ``NO_PROXY``) and credentials from ``~/.netrc``. Off by default.
        on_retry: Called with a :class:`RetryEvent` before each retry, in the event loop's
            thread; keep it quick. An exception it raises ends the call.
        max_response_size: Bytes one answer may have once decompressed; a larger one raises
            :class:`MalformedResponseError` without being read further.

    Raises:
        ConfigurationError: No API key, or an unusable one.
        ValueError: A bad ``base_url`` or setting, or ``trust_env=True`` with ``session``
            (a borrowed session keeps its own ``trust_env``).
        TypeError: A setting of the wrong type.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        max_concurrency: int = 8,
        session: aiohttp.ClientSession | None = None,
        max_rate: float | None = None,
        trust_env: bool = False,
        on_retry: RetryHook | None = None,
        max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE,
    ) -> None:
        try:
            key = resolve_api_key(api_key)
        finally:
            del api_key  # not a local of this frame in any traceback error reporters capture
        self._base_url: URL = resolve_base_url(base_url)
        check_positive("timeout", timeout)
        _check_int("max_retries", max_retries, minimum=0)
        _check_int("max_concurrency", max_concurrency, minimum=1)
        _check_int("max_response_size", max_response_size, minimum=1)
        if max_rate is not None:
            check_positive("max_rate", max_rate)
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise TypeError(
                f"session must be an aiohttp.ClientSession, not {type(session).__name__}"
            )
        if not isinstance(trust_env, bool):
            raise TypeError(f"trust_env must be a bool, not {type(trust_env).__name__}")
        if trust_env and session is not None:
            raise ValueError(
                "trust_env=True cannot apply to a borrowed session: the injected session's own "
                "trust_env setting applies (create it with aiohttp.ClientSession(trust_env=True))"
            )
        if on_retry is not None and not callable(on_retry):
            raise TypeError("on_retry must be callable")
        self._key = key
        self._redact: Redact = key.redact
        self._headers = AuthHeaders(
            key,
            {
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
                # Only what we decompress ourselves: see _read_body.
                "Accept-Encoding": "gzip, deflate",
            },
        )
        self._timeout = float(timeout)
        self._max_retries = max_retries
        self._max_concurrency = max_concurrency
        self._max_response_size = max_response_size
        self._trust_env = trust_env
        self._on_retry = on_retry
        self._throttle = Throttle(max_rate)
        self._session = session
        self._owns_session = session is None
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state = _State.UNOPENED
        self._rng = random.Random()
        self._retry_count = 0  # requests retried so far; backfill progress reports it

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
        """Whose data this client reads: its base URL and the fingerprint of its key."""
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
        """Close the client's own session. Safe to call twice; the client cannot be reused."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()

    def _forget_session(self) -> None:
        """After ``fork()``: drop the parent's session and loop without touching them."""
        if self._state is not _State.CLOSED:
            self._state = _State.UNOPENED
        if self._owns_session:
            self._session = None
        self._slots = None
        self._loop = None

    def _mark_closed(self) -> None:
        """Close a client that never opened a session, without an event loop."""
        if self._session is None or not self._owns_session:
            self._state = _State.CLOSED
            self._session = None

    # -- public API ---------------------------------------------------------------------------

    async def usage(
        self,
        start: TimeLike,
        end: TimeLike,
        *,
        user_id: str | int | None = None,
        deadline: float | None = None,
    ) -> UsageReport:
        """Usage records in ``[start, end]`` exactly as one unsplit call would answer.

        The range is fetched in UTC-day windows, ``max_concurrency`` at a time, and merged.

        Args:
            start: Unix seconds, an aware ``datetime`` or a ``date`` (UTC midnight).
            end: Same types; sent as ``end_time``.
            user_id: One member's usage (organisation admin keys only).
            deadline: Seconds the whole call may take, retries and pauses included; when
                they run out, everything in flight is cancelled.

        Returns:
            The merged report, records in timestamp order.

        Raises:
            TypeError: A time of the wrong type.
            ValueError: A naive datetime, a negative time or ``end`` before ``start``.
            APITimeoutError: The ``deadline`` passed.
            R9sError: The first window that failed for good (the others are cancelled).
        """
        first, last = to_range(start, end)
        uid = check_user_id(user_id)
        _check_deadline(deadline)
        self._check_usable()
        if deadline is None and count_windows(first, last) == 1:
            # One window needs no fan-out: no task, no waiting, two loop turns fewer per call.
            windows = [await self._fetch_window(Window(first, last, last=True), uid)]
        else:
            plan = plan_windows(first, last)
            windows = [w async for w in self._fetch_windows(plan, uid, deadline=deadline)]
        return merge_windows(first, last, windows)

    def iter_usage(
        self,
        start: TimeLike,
        end: TimeLike,
        *,
        user_id: str | int | None = None,
        deadline: float | None = None,
    ) -> AsyncGenerator[UsageReport, None]:
        """Yield one :class:`UsageReport` per UTC-day window, in time order.

        Windows are fetched concurrently with bounded look-ahead, so memory does not grow with
        the length of the range. Arguments are checked at once, before anything is sent.
        Leaving the loop early cancels the requests still in flight; ``aclose()`` it (or use
        :func:`contextlib.aclosing`) to have that done before the next line runs.

        ``deadline`` (seconds) counts from the first step of the iteration, time spent in
        the loop's body included; the first step after it passed raises
        :class:`APITimeoutError` and cancels the requests in flight.
        """
        first, last = to_range(start, end)
        uid = check_user_id(user_id)
        _check_deadline(deadline)
        self._check_usable()
        return self._fetch_windows(plan_windows(first, last), uid, deadline=deadline)

    async def balance(self) -> Balance:
        """The account balance, amounts as exact decimals."""
        self._check_usable()
        return await self._request("/balance", {}, decode_balance, None)

    # -- the fan-out ----------------------------------------------------------------------------

    async def _fetch_windows(
        self, plan: Iterator[Window], user_id: str | None, *, deadline: float | None = None
    ) -> AsyncGenerator[UsageReport, None]:
        """Fetch planned windows concurrently; yield their reports in plan order.

        At most ``max_concurrency`` requests are in flight and at most twice that many windows
        are held, so memory does not grow with the plan. The first window that fails for good
        cancels the rest and its error is raised; so does the ``deadline`` (seconds from the
        first step), as :class:`APITimeoutError`.
        """
        loop = asyncio.get_running_loop()
        due = None if deadline is None else loop.time() + deadline
        lookahead = 2 * self._max_concurrency
        pending: deque[asyncio.Task[UsageReport]] = deque()
        failed: asyncio.Future[asyncio.Task[UsageReport]] = loop.create_future()

        def watch(task: asyncio.Task[UsageReport]) -> None:
            if not task.cancelled() and task.exception() is not None and not failed.done():
                failed.set_result(task)

        def top_up() -> None:
            for window in itertools.islice(plan, lookahead - len(pending)):
                task = loop.create_task(
                    self._fetch_window(window, user_id),
                    name=f"r9s_async window [{window.start}, {window.end}]",
                )
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
                report = head.result()
                top_up()
                yield report
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
                for task in pending:
                    if not task.cancelled():
                        task.exception()  # mark as retrieved: the first failure was raised
            failed.cancel()

    async def _fetch_window(self, window: Window, user_id: str | None) -> UsageReport:
        params = {"start_time": str(window.start), "end_time": str(window.end)}
        if user_id is not None:
            params["user_id"] = user_id
        label = f"[{window.start}, {window.end}]"
        answer: UsageAnswer = await self._request(
            "/usage", params, decode_usage, (window.start, window.end)
        )
        returned = answer.payload.records
        returned_tokens = sum(map(_tokens_of, returned))
        consistent = returned_tokens == answer.payload.total_tokens
        if not consistent:
            logger.warning(
                "window %s: records add up to %d tokens but the answer declares total_tokens=%d "
                "(request id %s); the answer may be cut off or inconsistent",
                label,
                returned_tokens,
                answer.payload.total_tokens,
                answer.request_id,
            )
        owned = owned_records(window, returned)
        stray = (
            0
            if owned is returned
            else sum(1 for r in returned if not window.start <= r.timestamp <= window.end)
        )
        if stray:
            logger.warning(
                "window %s: dropped %d records outside the asked range (request id %s)",
                label,
                stray,
                answer.request_id,
            )
        tokens = returned_tokens if owned is returned else sum(map(_tokens_of, owned))
        return UsageReport(
            owned,
            tokens,
            window.start,
            window.end,
            request_ids=(answer.request_id,),
            consistent=consistent,
        )

    # -- one request, with retries ----------------------------------------------------------------

    async def _pace(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait for this attempt's turn under the client-wide pace and any server pause."""
        throttle = self._throttle
        wait = throttle.reserve(loop.time())
        while wait > 0:
            await asyncio.sleep(wait)
            # A 429 elsewhere may have paused everyone meanwhile: queue again behind the
            # pause, at the new pace, rather than all leave together when it ends.
            wait = throttle.reserve(loop.time()) if throttle.paused(loop.time()) else 0.0

    async def _take_slot(self, slots: asyncio.Semaphore, loop: asyncio.AbstractEventLoop) -> None:
        """Wait for this attempt's turn under the pace, then for a free slot. A paced request
        holds no slot; one that got its slot while a pause began gives it back and waits."""
        while True:
            await self._pace(loop)
            await slots.acquire()
            if not self._throttle.paused(loop.time()):
                return
            slots.release()

    async def _request(
        self,
        path: str,
        params: dict[str, str],
        decode: Decoder[T],
        window: tuple[int, int] | None,
    ) -> T:
        session, slots = self._open()
        loop = asyncio.get_running_loop()
        throttle = self._throttle
        label = "-" if window is None else f"[{window[0]}, {window[1]}]"
        retry = 0
        while True:
            status: int | None = None
            failure: R9sError | None = None
            answer: tuple[int, Mapping[str, str], bytes] | None = None
            await self._take_slot(slots, loop)
            try:
                started = loop.time()  # waiting for a slot is not part of the attempt
                try:
                    async with asyncio.timeout(self._timeout):
                        answer = await self._send(session, path, params)
                except TimeoutError:
                    failure = APITimeoutError(f"no complete answer within {self._timeout:g}s")
                except aiohttp.ClientError as exc:
                    failure = APIConnectionError(self._describe(exc))
                except R9sError as exc:
                    failure = exc
                except RuntimeError:
                    if not session.closed:
                        raise
                    # aclose() ran while this call was under way.
                    failure = ClientClosedError("the client was closed during the call")
                elapsed = loop.time() - started
            finally:
                slots.release()
            if failure is not None and self._state is _State.CLOSED:
                # aclose() closed the connector under this attempt; that is not a network error.
                failure = ClientClosedError("the client was closed during the call")
            if answer is not None:
                status = answer[0]
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
            # Raised from here, without the frames below (the decoder's locals hold the raw
            # body) and without a chained exception that could carry it.
            failure.__traceback__ = None
            failure.__context__ = None
            request_id = getattr(failure, "request_id", None)
            _log_attempt(
                path, label, getattr(failure, "status", status), elapsed, retry, request_id
            )
            transient = isinstance(failure, APIConnectionError) or (
                isinstance(failure, APIError) and is_retryable(failure)
            )
            retry_after = failure.retry_after if isinstance(failure, APIError) else None
            if not transient or retry >= self._max_retries:
                raise failure
            if retry_after is not None and retry_after > RETRY_AFTER_CAP:
                # Waiting minutes inside a call helps nobody: say so, with the server's figure.
                raise failure
            now = loop.time()
            if isinstance(failure, RateLimitError):
                throttle.on_throttled(now, retry_after, sent_at=started)
            elif retry_after is not None:
                throttle.pause(now, retry_after)
            # The server said when; that replaces our guess.
            wait = retry_after if retry_after is not None else backoff_delay(retry, self._rng)
            logger.info(
                "retrying %s %s in %.2fs (attempt %d of %d): %s",
                path,
                label,
                wait,
                retry + 2,
                self._max_retries + 1,
                failure,
            )
            if self._on_retry is not None:
                self._on_retry(
                    RetryEvent(
                        path,
                        window,
                        retry + 1,
                        wait,
                        getattr(failure, "status", None),
                        request_id,
                        failure,
                    )
                )
            self._retry_count += 1
            await asyncio.sleep(wait)
            retry += 1

    async def _send(
        self, session: aiohttp.ClientSession, path: str, params: dict[str, str]
    ) -> tuple[int, Mapping[str, str], bytes]:
        url = URL(str(self._base_url) + path).with_query(params)
        origin = self._base_url.origin()
        for _ in range(_MAX_REDIRECTS + 1):
            async with session.get(
                url, headers=self._headers, allow_redirects=False, auto_decompress=False
            ) as response:
                location = response.headers.get("Location")
                if response.status in _REDIRECTS and location:
                    try:
                        target = url.join(URL(location))
                        target_origin = target.origin()
                    except ValueError:
                        raise APIError(
                            "redirect with an invalid Location; not followed",
                            status=response.status,
                        ) from None
                    if target_origin != origin:
                        raise APIError(
                            f"redirected to another origin ({target_origin}); not followed, "
                            "so the key is not sent there",
                            status=response.status,
                        )
                    url = target
                    continue
                body = await self._read_body(response)
                return response.status, response.headers, body
        raise APIError("too many redirects", status=response.status)

    async def _read_body(self, response: aiohttp.ClientResponse) -> bytes:
        """The whole body, decompressed by us, within ``max_response_size``.

        aiohttp's own decompression hands back what it has when a gzip stream stops short
        (the HTTP framing was complete), so a cut-off answer would pass as a short one;
        here that is an error. Reading in chunks keeps an oversized body out of memory.
        """
        limit = self._max_response_size
        status = response.status
        too_large = MalformedResponseError(
            f"the answer is larger than max_response_size ({limit} bytes); not read further",
            status=status,
        )
        if response.content_length is not None and response.content_length > limit:
            raise too_large
        try:
            inflater = _Inflater(response.headers.get("Content-Encoding", ""), limit)
        except ValueError as exc:
            raise MalformedResponseError(str(exc), status=status) from None
        if inflater.encoding == "identity" and response.content_length is not None:
            # Size already checked; aiohttp's read() fails (ClientPayloadError) on a body shorter
            # than its Content-Length. One read instead of a loop over chunks.
            return await response.read()
        try:
            async for chunk in response.content.iter_chunked(_READ_CHUNK):
                inflater.feed(chunk)
            return inflater.finish()
        except _TooLarge:
            raise too_large from None
        except zlib.error:
            raise APIConnectionError(
                f"the {inflater.encoding} body is corrupt (HTTP {status})"
            ) from None
        except _CutShort:
            raise APIConnectionError(
                f"the {inflater.encoding} body was cut short (HTTP {status})"
            ) from None

    def _describe(self, exc: BaseException) -> str:
        # aiohttp's ClientResponseError carries the request headers; keep only type and text.
        # Raised by aiohttp itself (we never call raise_for_status), it means the server's
        # bytes were not valid HTTP: aiohttp gives it status 400, which is not the API's.
        if type(exc) is aiohttp.ClientResponseError:  # not a proxy's refusal, a subclass
            return self._redact(f"malformed HTTP from the server: {exc.message}")
        return self._redact(f"{type(exc).__name__}: {exc}".rstrip(": "))

    def _open(self) -> tuple[aiohttp.ClientSession, asyncio.Semaphore]:
        self._check_usable()
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError(
                "this AsyncClient was first used in another event loop; an aiohttp session "
                "belongs to one loop, so create one client per loop (or use r9s_async.Client)"
            )
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max_concurrency)
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_concurrency),
                timeout=aiohttp.ClientTimeout(total=None),
                trust_env=self._trust_env,
            )
        self._state = _State.OPENED
        return self._session, self._slots

    def _check_usable(self) -> None:
        if self._state is _State.CLOSED:
            raise ClientClosedError("this client is closed; create a new one")

    async def backfill(
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
        """Fetch ``[start, end)`` into a SQLite store, one UTC-day window at a time.

        Each window is committed in one transaction with its records, so the run can be
        stopped at any moment (even killed) and started again: a re-run fetches only what is
        missing. Runs over overlapping ranges share a store without storing a record twice.
        Windows that ended less than ``refresh_recent`` ago (or were stored back then) are
        fetched again and replaced. Records are written as windows arrive, so memory does not
        grow with the range.

        Args:
            start: First second: Unix seconds, an aware ``datetime`` or a ``date``.
            end: Exclusive end, same types.
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
            ValueError: A naive datetime, a negative time, ``end`` before ``start``, a
                negative ``refresh_recent``, or an ``account_name`` that is invalid or used by
                another account of the store (checked before anything is fetched).
            StoreError: ``db`` cannot be used as a usage store; it was not changed.
            R9sError: A window failed for good; the windows stored before it are kept.
        """
        return await run_backfill(
            self,
            start,
            end,
            db=db,
            user_id=user_id,
            refresh_recent=refresh_recent,
            progress=progress,
            account_name=account_name,
        )


class _TooLarge(Exception):
    pass


class _CutShort(Exception):
    pass


class _Inflater:
    """Collects a body, decompressing ``gzip``/``deflate``, and refuses more than ``limit``
    bytes of output. No I/O.

    Raises:
        ValueError: At construction, for a content coding we did not ask for.
    """

    def __init__(self, content_encoding: str, limit: int) -> None:
        encoding = content_encoding.strip().lower()
        if encoding in ("", "identity"):
            self.encoding = "identity"
        elif encoding in ("gzip", "x-gzip", "deflate"):
            self.encoding = "gzip" if encoding == "x-gzip" else encoding
        else:
            raise ValueError(f"unsupported Content-Encoding {content_encoding[:40]!r}")
        self._limit = limit
        self._size = 0
        self._parts: list[bytes] = []
        self._decompressor: zlib._Decompress | None = None
        self._fed = False

    def _new_decompressor(self, first: bytes) -> zlib._Decompress:
        if self.encoding == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        # "deflate" should be zlib-wrapped (RFC 9110); some servers send it raw.
        raw = first[0] & 0x0F != 8
        return zlib.decompressobj(-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)

    def _keep(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self._limit:
            raise _TooLarge
        if data:
            self._parts.append(data)

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk of the body as it arrived."""
        if self.encoding == "identity":
            self._keep(chunk)
            return
        while chunk:
            if self._decompressor is None or self._decompressor.eof:
                # A gzip body may hold several members back to back.
                self._decompressor = self._new_decompressor(chunk)
                self._fed = True
            decompressor = self._decompressor
            self._keep(decompressor.decompress(chunk, self._limit - self._size + 1))
            chunk = decompressor.unused_data if decompressor.eof else b""

    def finish(self) -> bytes:
        """The whole decompressed body.

        Raises:
            _CutShort: The compressed stream stopped before its end.
        """
        if self._decompressor is not None:
            self._keep(self._decompressor.flush())
            if not self._decompressor.eof:
                raise _CutShort
        return b"".join(self._parts)


_tokens_of = operator.attrgetter("tokens")


def _request_id_of(result: object) -> str | None:
    return getattr(result, "request_id", None)


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


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_deadline(deadline: object) -> None:
    if deadline is not None:
        check_positive("deadline", deadline)
