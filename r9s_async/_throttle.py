"""Client-wide pacing: a token bucket whose rate adapts to 429 answers. No I/O.

One ``Throttle`` is shared by every request of a client. It knows nothing of HTTP; the
client tells it when a request is about to be sent (:meth:`Throttle.reserve`), when one was
throttled (:meth:`Throttle.on_throttled`) and when one succeeded (:meth:`Throttle.on_success`).

The adaptive rule is additive-increase / multiplicative-decrease, in the spirit of botocore's
"adaptive" retry mode: a 429 cuts the rate to ``DECREASE`` times what we were actually sending,
and pauses every request for the server's ``Retry-After``; each success then grows the rate by
``INCREASE_PER_SECOND`` per second of success, up to ``max_rate`` if one is set. Once
throttled, a client stays paced (its rate keeps growing while the server allows it).

Three rules came from runs against a rate-limited server (tests/test_rate_limit.py):
a pause does not let reservations pile up to leave together when it ends (they would earn
the next 429 at once); a 429 that arrives before anything succeeded has no served rate to
measure, so it pauses without setting a rate; and ``Retry-After: 0`` ("retry now") says the
answer is not about our pace, so it neither pauses nor slows the client.
"""

from __future__ import annotations

import collections
import math

__all__ = ["Throttle"]

DECREASE = 0.7
INCREASE_PER_SECOND = 1.0
MIN_RATE = 0.5
_MEASURE_SPAN = 2.0  # seconds of history used to measure the served rate
_COOLDOWN = 1.0  # 429s within this long after a cut belong to the same episode
_BURST_SECONDS = 0.25  # a bucket holds this many seconds' worth of tokens (at least one)


class Throttle:
    """Decides when the next request may be sent.

    Args:
        max_rate: Requests per second never to exceed, or ``None`` for no fixed limit.
    """

    def __init__(self, max_rate: float | None = None) -> None:
        if max_rate is not None and (not math.isfinite(max_rate) or max_rate <= 0):
            raise ValueError(f"max_rate must be a positive number, got {max_rate!r}")
        self.max_rate = max_rate
        self.rate: float | None = max_rate  # None: unlimited
        self._tokens = self._capacity()
        self._refilled_at: float | None = None
        self._paused_until = 0.0
        self._succeeded: collections.deque[float] = collections.deque()
        self._grown_at: float | None = None
        self._cut_at: float | None = None
        self.throttled = 0

    def _capacity(self) -> float:
        if self.rate is None:
            return math.inf
        return max(1.0, self.rate * _BURST_SECONDS)

    def _refill(self, now: float) -> None:
        # The bucket's clock only moves forward: it may already stand at the end of a pause.
        if self.rate is None:
            self._tokens = math.inf
        elif self._refilled_at is not None and now > self._refilled_at:
            elapsed = now - self._refilled_at
            self._tokens = min(self._capacity(), self._tokens + elapsed * self.rate)
        if self._refilled_at is None or now > self._refilled_at:
            self._refilled_at = now

    def reserve(self, now: float) -> float:
        """Take the next send slot; returns how many seconds to wait before sending (>= 0).

        The slot is taken at once, so concurrent callers queue behind each other fairly.
        During a pause the bucket does not fill: when the pause ends, requests leave at the
        bucket's pace, not all at once (which would only earn another 429).
        """
        start = max(now, self._paused_until)
        self._refill(start)
        if self.rate is not None:
            self._tokens -= 1.0
            if self._tokens < 0:
                assert self._refilled_at is not None
                start = max(start, self._refilled_at + (-self._tokens) / self.rate)
        return start - now

    def pause(self, now: float, seconds: float) -> None:
        """Hold every request back for ``seconds`` from ``now`` (a server's ``Retry-After``)."""
        if seconds > 0:
            self._paused_until = max(self._paused_until, now + seconds)

    def paused(self, now: float) -> float:
        """Seconds until the current pause ends (0 when there is none)."""
        return max(0.0, self._paused_until - now)

    def measured_rate(self, now: float) -> float:
        """Successful requests per second over the last couple of seconds: what the server
        has been willing to serve, which is the best guess of its limit."""
        while self._succeeded and self._succeeded[0] < now - _MEASURE_SPAN:
            self._succeeded.popleft()
        if not self._succeeded:
            return 0.0
        span = max(now - self._succeeded[0], _BURST_SECONDS)
        return len(self._succeeded) / span

    def on_throttled(self, now: float, retry_after: float | None, *, sent_at: float) -> None:
        """A request sent at ``sent_at`` got 429: pause everyone for ``retry_after`` and cut
        the rate, once per episode (answers to requests sent before the last cut were sent
        at the old rate and say nothing new).

        A ``retry_after`` of 0 changes nothing. Without recent successes to measure, and
        no rate set yet, there is nothing to cut from: only the pause applies.
        """
        self.throttled += 1
        if retry_after is not None:
            if retry_after <= 0:
                # "Retry now": the server says this answer is not about our pace (a limiter
                # names the wait until its bucket refills), so neither pause nor slow down.
                return
            self.pause(now, retry_after)
        if self._cut_at is not None and (sent_at < self._cut_at or now - self._cut_at < _COOLDOWN):
            return
        measured = self.measured_rate(now)
        if self.rate is None and measured == 0:
            # Nothing has succeeded lately, so there is no evidence of what the server would
            # serve: the pause alone, until a 429 arrives that can be measured against.
            return
        self._cut_at = now
        current = self.rate if self.rate is not None else math.inf
        base = min(current, measured) if measured > 0 else current
        new_rate = max(MIN_RATE, base * DECREASE)
        if self.max_rate is not None:
            new_rate = min(new_rate, self.max_rate)
        self._refill(now)
        self.rate = new_rate
        self._tokens = min(self._tokens, self._capacity())
        self._grown_at = now

    def on_success(self, now: float) -> None:
        """A request succeeded: grow the rate back, additively in time."""
        self._succeeded.append(now)
        if len(self._succeeded) > 4096:
            self._succeeded.popleft()
        if self.rate is None or self.rate == self.max_rate:
            return
        since = now - self._grown_at if self._grown_at is not None else 0.0
        self._grown_at = now
        if since <= 0:
            return
        self._refill(now)
        grown = self.rate + INCREASE_PER_SECOND * since
        self.rate = grown if self.max_rate is None else min(grown, self.max_rate)
