"""``AsyncClient``: the aiohttp shell around the pure core. The only module that speaks HTTP."""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import platform
import random
from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from types import TracebackType
from typing import Self, TypeVar

import aiohttp
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
    R9sError,
)
from ._models import Balance, UsageRecord, UsageReport
from ._retry import backoff_delay
from ._times import TimeLike, to_range
from ._version import __version__
from ._windows import Window, owned_records, plan_windows

__all__ = ["USER_AGENT", "AsyncClient"]

logger = logging.getLogger("r9s_async")

USER_AGENT = (
    f"r9s_async/{__version__} aiohttp/{aiohttp.__version__} Python/{platform.python_version()}"
)
_MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})

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
        timeout: Seconds allowed for one attempt (connect, send, read the whole body).
        max_retries: Extra attempts for a transient failure (connection error, timeout, 408,
            429, 500, 502, 503, 504).
        max_concurrency: Most requests in flight at once.
        session: An :class:`aiohttp.ClientSession` to borrow (for a private CA or a proxy).
            It is never closed by the client.

    Raises:
        ConfigurationError: No API key, or an unusable one.
        ValueError: A bad ``base_url`` or setting.
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
    ) -> None:
        key = resolve_api_key(api_key)
        self._base_url: URL = resolve_base_url(base_url)
        check_positive("timeout", timeout)
        _check_int("max_retries", max_retries, minimum=0)
        _check_int("max_concurrency", max_concurrency, minimum=1)
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise TypeError(
                f"session must be an aiohttp.ClientSession, not {type(session).__name__}"
            )
        self._key = key
        self._redact: Redact = key.redact
        self._headers = AuthHeaders(key, {"User-Agent": USER_AGENT, "Accept": "application/json"})
        self._timeout = float(timeout)
        self._max_retries = max_retries
        self._max_concurrency = max_concurrency
        self._session = session
        self._owns_session = session is None
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state = _State.UNOPENED
        self._rng = random.Random()
        self._retry_count = 0  # requests retried so far; backfill progress reports it

    def __repr__(self) -> str:
        return (
            f"AsyncClient(base_url={str(self._base_url)!r}, timeout={self._timeout}, "
            f"max_retries={self._max_retries}, max_concurrency={self._max_concurrency}, "
            f"state={self._state.value!r})"
        )

    @property
    def base_url(self) -> str:
        """The API root this client talks to."""
        return str(self._base_url)

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

    def _mark_closed(self) -> None:
        """Close a client that never opened a session, without an event loop."""
        if self._session is None or not self._owns_session:
            self._state = _State.CLOSED
            self._session = None

    # -- public API ---------------------------------------------------------------------------

    async def usage(
        self, start: TimeLike, end: TimeLike, *, user_id: str | int | None = None
    ) -> UsageReport:
        """Usage records in ``[start, end]`` exactly as one unsplit call would answer.

        The range is fetched in UTC-day windows, ``max_concurrency`` at a time, and merged.

        Args:
            start: Unix seconds, an aware ``datetime`` or a ``date`` (UTC midnight).
            end: Same types; sent as ``end_time``.
            user_id: One member's usage (organisation admin keys only).

        Returns:
            The merged report, records in timestamp order.

        Raises:
            TypeError: A time of the wrong type.
            ValueError: A naive datetime, a negative time or ``end`` before ``start``.
            R9sError: The first window that failed for good (the others are cancelled).
        """
        first, last = to_range(start, end)
        uid = check_user_id(user_id)
        self._check_usable()
        records: list[UsageRecord] = []
        request_ids: list[str] = []
        total = 0
        async for window in self._fetch_windows(plan_windows(first, last), uid):
            if not records:
                records = window.records
            else:
                records.extend(window.records)
            total += window.total_tokens
            request_ids.extend(window.request_ids)
        return UsageReport(records, total, first, last, request_ids=tuple(request_ids))

    def iter_usage(
        self, start: TimeLike, end: TimeLike, *, user_id: str | int | None = None
    ) -> AsyncGenerator[UsageReport, None]:
        """Yield one :class:`UsageReport` per UTC-day window, in time order.

        Windows are fetched concurrently with bounded look-ahead, so memory does not grow with
        the length of the range. Arguments are checked at once, before anything is sent.
        Leaving the loop early cancels the requests still in flight; ``aclose()`` it (or use
        :func:`contextlib.aclosing`) to have that done before the next line runs.
        """
        first, last = to_range(start, end)
        uid = check_user_id(user_id)
        self._check_usable()
        return self._fetch_windows(plan_windows(first, last), uid)

    async def balance(self) -> Balance:
        """The account balance, amounts as exact decimals."""
        self._check_usable()
        return await self._request("/balance", {}, decode_balance, "-")

    # -- the fan-out ----------------------------------------------------------------------------

    async def _fetch_windows(
        self, plan: Iterator[Window], user_id: str | None
    ) -> AsyncGenerator[UsageReport, None]:
        """Fetch planned windows concurrently; yield their reports in plan order.

        At most ``max_concurrency`` requests are in flight and at most twice that many windows
        are held, so memory does not grow with the plan. The first window that fails for good
        cancels the rest and its error is raised.
        """
        loop = asyncio.get_running_loop()
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

        try:
            top_up()
            while pending:
                head = pending[0]
                if not head.done():
                    await asyncio.wait((head, failed), return_when=asyncio.FIRST_COMPLETED)
                if failed.done():
                    error = failed.result().exception()
                    assert error is not None
                    raise error
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
        answer: UsageAnswer = await self._request("/usage", params, decode_usage, label)
        returned = answer.payload.records
        returned_tokens = sum(r.tokens for r in returned)
        if returned_tokens != answer.payload.total_tokens:
            logger.warning(
                "window %s: records add up to %d tokens but the answer declares total_tokens=%d "
                "(request id %s); the answer may be cut off or inconsistent",
                label,
                returned_tokens,
                answer.payload.total_tokens,
                answer.request_id,
            )
        owned = owned_records(window, returned)
        stray = sum(1 for r in returned if not window.start <= r.timestamp <= window.end)
        if stray:
            logger.warning(
                "window %s: dropped %d records outside the asked range (request id %s)",
                label,
                stray,
                answer.request_id,
            )
        tokens = returned_tokens if owned is returned else sum(r.tokens for r in owned)
        return UsageReport(
            owned, tokens, window.start, window.end, request_ids=(answer.request_id,)
        )

    # -- one request, with retries ----------------------------------------------------------------

    async def _request(
        self, path: str, params: dict[str, str], decode: Decoder[T], label: str
    ) -> T:
        session, slots = self._open()
        loop = asyncio.get_running_loop()
        retry = 0
        while True:
            status: int | None = None
            failure: R9sError | None = None
            answer: tuple[int, Mapping[str, str], bytes] | None = None
            async with slots:
                started = loop.time()  # waiting for a slot is not part of the attempt
                try:
                    async with asyncio.timeout(self._timeout):
                        answer = await self._send(session, path, params)
                except TimeoutError:
                    failure = APITimeoutError(f"no complete answer within {self._timeout:g}s")
                except aiohttp.ClientError as exc:
                    failure = APIConnectionError(self._describe(exc))
                except APIError as exc:
                    failure = exc
                elapsed = loop.time() - started
            if answer is not None:
                status = answer[0]
                try:
                    result = decode(*answer, self._redact)
                except R9sError as exc:
                    failure = exc
                else:
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
            _log_attempt(path, label, status, elapsed, retry, getattr(failure, "request_id", None))
            transient = isinstance(failure, APIConnectionError) or (
                isinstance(failure, APIError) and is_retryable(failure)
            )
            if not transient or retry >= self._max_retries:
                raise failure
            if isinstance(failure, APIError) and failure.retry_after is not None:
                wait = failure.retry_after  # the server said when; that replaces our guess
            else:
                wait = backoff_delay(retry, self._rng)
            logger.info(
                "retrying %s %s in %.2fs (attempt %d of %d): %s",
                path,
                label,
                wait,
                retry + 2,
                self._max_retries + 1,
                failure,
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
            async with session.get(url, headers=self._headers, allow_redirects=False) as response:
                location = response.headers.get("Location")
                if response.status in _REDIRECTS and location:
                    target = url.join(URL(location))
                    if target.origin() != origin:
                        raise APIError(
                            f"redirected to another origin ({target.origin()}); not followed, "
                            "so the key is not sent there",
                            status=response.status,
                        )
                    url = target
                    continue
                body = await response.read()
                return response.status, response.headers, body
        raise APIError("too many redirects", status=response.status)

    def _describe(self, exc: BaseException) -> str:
        # aiohttp's ClientResponseError carries the request headers; keep only type and text.
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
                trust_env=False,
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

        Returns:
            What this run fetched and skipped.

        Raises:
            TypeError: An argument of the wrong type.
            ValueError: A naive datetime, a negative time, ``end`` before ``start`` or a
                negative ``refresh_recent``.
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
        )


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
