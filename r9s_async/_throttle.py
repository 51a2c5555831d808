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

from ._rate_limits import RateLimits

__all__ = ["Throttle"]

DECREASE = 0.7
LATER_DECREASE = 0.85  # later cuts: the rate at the first cut (w_max) says where the limit is
INCREASE_PER_SECOND = 1.0
PROBE_PER_SECOND = 0.1  # growth once back near w_max: probing slowly where the last cut was
PLATEAU = 0.9
HEADER_SHARE = 0.98  # of an announced rate, to stay under it despite clock and network jitter
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
        self._burst: float | None = None  # the server's announced burst
        self._tokens = self._capacity()
        self._refilled_at: float | None = None
        self._paused_until = 0.0
        self._succeeded: collections.deque[float] = collections.deque()
        self._grown_at: float | None = None
        self._cut_at: float | None = None
        self._success_since_cut = True
        self.w_max: float | None = None  # the rate the last cut was made from
        self.announced: float | None = None  # the server's own rate, from its headers
        self.throttled = 0

    def _capacity(self) -> float:
        if self.rate is None:
            return math.inf
        if self._burst is not None:
            return self._burst
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
        if self._cut_at is not None and (
            sent_at < self._cut_at or now - self._cut_at < _COOLDOWN or not self._success_since_cut
        ):
            # One cut per episode: a storm of 429s with nothing served in between says
            # nothing new about our pace, so the cut does not compound once per second.
            return
        measured = self.measured_rate(now)
        if self.rate is None and measured == 0:
            # Nothing has succeeded lately, so there is no evidence of what the server would
            # serve: the pause alone, until a 429 arrives that can be measured against.
            return
        self._cut_at = now
        self._success_since_cut = False
        current = self.rate if self.rate is not None else math.inf
        base = min(current, measured) if measured > 0 else current
        factor = DECREASE if self.w_max is None and self.announced is None else LATER_DECREASE
        self.w_max = base
        new_rate = max(MIN_RATE, base * factor)
        if self.max_rate is not None:
            new_rate = min(new_rate, self.max_rate)
        self._refill(now)
        self.rate = new_rate
        self._tokens = min(self._tokens, self._capacity())
        self._grown_at = now

    def on_success(self, now: float) -> None:
        """A request succeeded: grow the rate back, additively in time: quickly up to near
        the rate of the last cut (``w_max``), then slowly, probing where the limit was."""
        self._succeeded.append(now)
        self._success_since_cut = True
        if len(self._succeeded) > 4096:
            self._succeeded.popleft()
        if self.rate is None or self.rate == self.max_rate:
            return
        since = now - self._grown_at if self._grown_at is not None else 0.0
        self._grown_at = now
        if since <= 0:
            return
        self._refill(now)
        ceiling = self.w_max if self.announced is None else self.announced
        near = ceiling is not None and self.rate >= PLATEAU * ceiling
        grown = self.rate + (PROBE_PER_SECOND if near else INCREASE_PER_SECOND) * since
        if self.announced is not None:
            grown = min(grown, self.announced)  # the server said what it serves
        self.rate = grown if self.max_rate is None else min(grown, self.max_rate)

    def on_limits(self, now: float, limits: RateLimits) -> None:
        """The server announced its limits (rate-limit headers of any answer): pace just
        under its rate, with its burst, and when it says nothing is left, wait for its reset.

        These replace the adaptive guess; a 429 that still arrives cuts from them.
        """
        if limits.rate is not None:
            announced = HEADER_SHARE * limits.rate
            if announced != self.announced:
                self._refill(now)
                self.announced = announced
                self._burst = None if limits.burst is None else max(1.0, float(limits.burst))
                rate = announced if self.max_rate is None else min(announced, self.max_rate)
                self.rate = rate
                self._tokens = min(self._tokens, self._capacity())
                self._grown_at = now
        if limits.remaining is not None and limits.remaining <= 0:
            if self.announced is not None:
                # Nothing left now, but the pace refills it: the next request waits its
                # turn at that pace (a whole-second reset would overstate the wait).
                self._refill(now)
                self._tokens = min(self._tokens, 0.0)
            elif limits.reset:
                self.pause(now, limits.reset)
