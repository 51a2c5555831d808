"""``Attempts``: one client's request loop: pace, take a slot, get, decode, ask the retry
policy, sleep; and the retry pauses that closing the client cuts short."""

from __future__ import annotations

import asyncio
import copy
import logging
import random
from collections.abc import Callable, Mapping
from functools import partial
from typing import TypeVar

from ._decode import Redact
from ._exceptions import ClientClosedError, R9sError
from ._fanout import take_turn
from ._rate_limits import parse_rate_limits
from ._retry import Retry, RetryEvent, backoff_delay, decide_retry
from ._settings import ClientSettings
from ._throttle import Throttle
from ._transport import Transport

__all__ = ["RETRY_HOLD", "Attempts", "Decoder"]

logger = logging.getLogger("r9s_async")
RETRY_HOLD = 2.0  # seconds; above a paced queue's usual wait (16 windows at 14/s: about 1.1)

T = TypeVar("T")
Decoder = Callable[[int, Mapping[str, str], bytes, Redact], T]
"""Turns ``(status, headers, body)`` into data or raises a typed error (see ``_decode.py``)."""


class Attempts:
    """How one client sends its requests and retries them.

    A client made by ``with_options`` has its own (:meth:`derive`): its settings, retry count
    and closed state, sharing the transport, the client-wide ``throttle`` and the pauses.

    Args:
        transport: Gets one answer.
        throttle: The client-wide pace, told of every answer, 429 and ``Retry-After``.
        redact: Scrubs the key from what the decoder quotes of an answer.
        settings: Whose ``timeout``, ``max_retries`` and ``on_retry`` apply.
    """

    def __init__(
        self, transport: Transport, throttle: Throttle, redact: Redact, settings: ClientSettings
    ) -> None:
        self.throttle = throttle
        self.retries = 0  # requests retried: backfill progress reports them
        self._transport = transport
        self._redact = redact
        self._settings = settings
        self._pauses = _Pauses()
        self._closed = False
        self._original = self  # closing the original ends the derived ones' calls too
        self._backoff = partial(backoff_delay, rng=random.Random())

    def derive(self, settings: ClientSettings) -> Attempts:
        """Attempts under other ``settings``, sharing the transport, pace and pauses."""
        derived = copy.copy(self)
        derived._settings, derived._closed, derived.retries = settings, False, 0
        derived._backoff = partial(backoff_delay, rng=random.Random())
        return derived

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called, here or on the original."""
        return self._closed or self._original._closed

    def close(self) -> None:
        """End the calls waiting to retry (of the derived ones too, for the original): they
        raise :class:`ClientClosedError`, as do attempts under way that then fail."""
        self._closed = True
        self._pauses.wake(None if self._original is self else self)

    async def request(
        self,
        slots: asyncio.Semaphore,
        path: str,
        params: dict[str, str],
        decode: Decoder[T],
        window: tuple[int, int] | None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> T:
        """One request: pace, take one of ``slots``, get, decode, ask the retry policy, sleep.

        Returns:
            What ``decode`` made of the first answer it accepted.

        Raises:
            R9sError: The failure the policy gave up on, with no traceback below this frame
                (the decoder's locals hold the raw body) and nothing chained.
            ClientClosedError: The client was closed during the call.
        """
        loop = asyncio.get_running_loop()
        throttle, settings = self.throttle, self._settings
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
                    answer = await self._transport.get(
                        path, params, headers, seconds=settings.timeout
                    )
                except R9sError as exc:
                    failure = exc
                elapsed = loop.time() - started
            finally:
                slots.release()
            if failure is not None and self.closed:
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
                failure, retry, max_retries=settings.max_retries, backoff=self._backoff
            )
            if decision is None:
                raise failure
            _tell_throttle(throttle, decision, loop.time(), started)
            event = RetryEvent(path, window, retry + 1, decision.wait, status, request_id, failure)
            _log_retry(event, label, settings.max_retries)
            if settings.on_retry is not None:
                settings.on_retry(event)
            self.retries += 1
            hold_until = _hold_until(loop.time(), decision.wait)
            await self._pauses.sleep(decision.wait, self)
            if self.closed:
                raise ClientClosedError("the client was closed during the call")
            retry += 1


class _Pauses:
    """The retry pauses under way, each with the attempts it belongs to."""

    def __init__(self) -> None:
        self._waiting: dict[asyncio.Future[None], Attempts] = {}

    async def sleep(self, seconds: float, attempts: Attempts) -> None:
        """Sleep ``seconds``, or until :meth:`wake` ends the pause."""
        loop = asyncio.get_running_loop()
        pause: asyncio.Future[None] = loop.create_future()
        self._waiting[pause] = attempts
        timer = loop.call_later(seconds, _wake, pause)
        try:
            await pause
        finally:
            timer.cancel()
            del self._waiting[pause]

    def wake(self, attempts: Attempts | None) -> None:
        """End the pauses of ``attempts``, or every pause for ``None``."""
        for pause, waiting in list(self._waiting.items()):
            if attempts in (None, waiting) and not pause.done():
                pause.set_result(None)


def _wake(pause: asyncio.Future[None]) -> None:
    if not pause.done():
        pause.set_result(None)


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


def _request_id_of(result: object) -> str | None:
    return getattr(result, "request_id", None)


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
