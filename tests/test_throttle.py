"""Client-wide pacing: the token bucket and its adaptive rate, driven by an explicit clock."""

from __future__ import annotations

import heapq
import random

import pytest

from r9s_async._rate_limits import RateLimits
from r9s_async._throttle import DECREASE, Throttle


def test_without_a_rate_nothing_waits() -> None:
    throttle = Throttle()

    waits = [throttle.reserve(0.0) for _ in range(100)]

    assert [0.0] * 100 == waits


def test_max_rate_spaces_requests_after_a_small_burst() -> None:
    throttle = Throttle(max_rate=10)

    waits = [throttle.reserve(0.0) for _ in range(5)]

    # A bucket of 10 * 0.25 = 2.5 tokens: the first two go at once, then one every 0.1 s.
    assert [0.0, 0.0, 0.05, 0.15, 0.25] == pytest.approx(waits)


def test_a_429_pauses_every_request_for_the_retry_after() -> None:
    throttle = Throttle()

    throttle.on_throttled(10.0, 2.0, sent_at=10.0)

    assert 2.0 == pytest.approx(throttle.reserve(10.0))
    assert 1.0 <= throttle.reserve(11.0)


def test_a_429_cuts_the_rate_to_a_fraction_of_what_the_server_served() -> None:
    throttle = Throttle()
    for i in range(40):  # 20 successes per second for two seconds
        throttle.on_success(i / 20)

    throttle.on_throttled(2.0, None, sent_at=2.0)

    assert throttle.rate == pytest.approx(20 * DECREASE, rel=0.1)


def test_429s_of_one_episode_cut_the_rate_once() -> None:
    throttle = Throttle()
    for i in range(40):
        throttle.on_success(i / 20)
    throttle.on_throttled(2.0, None, sent_at=2.0)
    after_first = throttle.rate

    throttle.on_throttled(2.01, None, sent_at=1.99)  # sent before the cut
    throttle.on_throttled(2.5, None, sent_at=2.4)  # within the cooldown

    assert after_first == throttle.rate
    assert 3 == throttle.throttled


def test_success_grows_the_rate_back_but_never_above_max_rate() -> None:
    throttle = Throttle(max_rate=8)
    for i in range(16):
        throttle.on_success(i / 8)
    throttle.on_throttled(2.0, None, sent_at=2.0)
    cut = throttle.rate
    assert cut is not None
    assert cut < 8

    for step in range(1, 200):
        throttle.on_success(2.0 + step * 0.1)

    assert 8 == throttle.rate


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf")])
def test_max_rate_must_be_a_positive_finite_number(bad: float) -> None:
    with pytest.raises(ValueError, match="max_rate"):
        Throttle(max_rate=bad)


def test_sixteen_eager_workers_settle_near_a_servers_limit() -> None:
    """A discrete-event model of the rate-limit soak: a server bucket of 20/s (burst 5)."""
    throttle = Throttle()
    server_tokens, server_time = 5.0, 0.0
    events = [(0.0, "ready", worker) for worker in range(16)]
    rng = random.Random(0)
    served = sent = throttled = 0
    now = 0.0
    while served < 365:
        now, kind, worker = heapq.heappop(events)
        if kind == "ready":
            heapq.heappush(events, (now + throttle.reserve(now), "send", worker))
            continue
        sent += 1
        server_tokens = min(5.0, server_tokens + (now - server_time) * 20)
        server_time = now
        if server_tokens >= 1:
            server_tokens -= 1
            served += 1
            throttle.on_success(now)
            heapq.heappush(events, (now, "ready", worker))
        else:
            throttled += 1
            throttle.on_throttled(now, 1.0, sent_at=now)
            heapq.heappush(events, (now + 1.0 + rng.uniform(0, 0.5), "ready", worker))

    assert throttled / sent <= 0.2
    assert now <= 2 * 365 / 20


def test_a_storm_of_429s_with_nothing_served_between_cuts_the_rate_once() -> None:
    throttle = Throttle()
    for i in range(40):
        throttle.on_success(i / 20)
    throttle.on_throttled(2.0, 1.0, sent_at=2.0)
    cut = throttle.rate

    for second in range(3, 60):  # one 429 a second, long past every cooldown
        throttle.on_throttled(float(second), 1.0, sent_at=float(second))

    assert cut == throttle.rate
    assert cut is not None
    assert cut > 10


def test_after_a_cut_the_rate_grows_fast_to_near_the_old_one_then_probes_slowly() -> None:
    throttle = Throttle()
    for i in range(40):
        throttle.on_success(i / 20)
    throttle.on_throttled(2.0, None, sent_at=2.0)
    assert throttle.w_max == pytest.approx(20, rel=0.1)
    w_max = throttle.w_max
    assert w_max is not None

    rates = []
    for step in range(1, 201):  # 20 s of successes
        throttle.on_success(2.0 + step * 0.1)
        rates.append(throttle.rate)

    # +1/s up to 0.9 w_max (reached within about 5 s), then +0.1/s: about w_max after 20 s.
    assert rates[60] == pytest.approx(0.9 * w_max + 0.1, abs=0.2)
    assert rates[-1] == pytest.approx(0.9 * w_max + 1.6, abs=0.3)


def test_a_later_cut_is_gentler_than_the_first() -> None:
    throttle = Throttle()
    for i in range(40):
        throttle.on_success(i / 20)
    throttle.on_throttled(2.0, None, sent_at=2.0)
    for step in range(1, 50):
        throttle.on_success(2.0 + step * 0.1)
    before = throttle.rate
    assert before is not None

    throttle.on_throttled(7.0, None, sent_at=7.0)

    assert throttle.rate == pytest.approx(0.85 * min(before, throttle.measured_rate(7.0)))


def test_announced_limits_set_the_pace_and_burst_before_any_429() -> None:
    throttle = Throttle()

    throttle.on_limits(0.0, RateLimits(rate=20.0, burst=5, remaining=4, reset=0.0))
    waits = [throttle.reserve(0.0) for _ in range(7)]

    assert 0.98 * 20 == pytest.approx(throttle.rate)
    assert pytest.approx([0.0] * 5 + [1 / 19.6, 2 / 19.6]) == waits


def test_announced_limits_never_exceed_max_rate() -> None:
    throttle = Throttle(max_rate=5)

    throttle.on_limits(0.0, RateLimits(rate=20.0))

    assert 5 == throttle.rate


def test_nothing_left_empties_the_bucket_at_a_known_pace_and_pauses_without_one() -> None:
    paced = Throttle()
    paced.on_limits(0.0, RateLimits(rate=10.0, burst=5))
    paced.on_limits(0.0, RateLimits(remaining=0, reset=1.0))
    unpaced = Throttle()
    unpaced.on_limits(0.0, RateLimits(remaining=0, reset=3.0))

    assert 1 / 9.8 == pytest.approx(paced.reserve(0.0))
    assert (0.0, 3.0) == (paced.paused(0.0), unpaced.paused(0.0))


def _simulate(throttle: Throttle, *, announce: bool) -> tuple[float, int, int]:
    """Sixteen eager workers against a server bucket of 20/s (burst 5), 365 windows;
    with ``announce`` the server's answers carry its policy and what is left."""
    server_tokens, server_time = 5.0, 0.0
    events = [(0.0, "ready", worker) for worker in range(16)]
    served = sent = throttled = 0
    now = 0.0
    while served < 365:
        now, kind, worker = heapq.heappop(events)
        if kind == "ready":
            heapq.heappush(events, (now + throttle.reserve(now), "send", worker))
            continue
        sent += 1
        server_tokens = min(5.0, server_tokens + (now - server_time) * 20)
        server_time = now
        ok = server_tokens >= 1
        if ok:
            server_tokens -= 1
        if announce:
            throttle.on_limits(now, RateLimits(20.0, None, int(server_tokens), 0.0 if ok else 1.0))
        if ok:
            served += 1
            throttle.on_success(now)
            heapq.heappush(events, (now + 0.01, "ready", worker))
        else:
            throttled += 1
            throttle.on_throttled(now, 1.0, sent_at=now)
            heapq.heappush(events, (now + 1.0, "ready", worker))
    return now, sent, throttled


def test_the_model_meets_the_issues_goals_without_headers() -> None:
    elapsed, sent, throttled = _simulate(Throttle(), announce=False)

    ideal = (365 - 5) / 20
    assert throttled / sent <= 0.05
    assert elapsed <= 1.15 * ideal


def test_the_model_with_announced_limits_meets_them_with_429s_only_in_the_first_burst() -> None:
    elapsed, _, throttled = _simulate(Throttle(), announce=True)

    ideal = (365 - 5) / 20
    assert throttled <= 16 - 5  # the first sixteen leave before any answer says anything
    assert elapsed <= 1.15 * ideal
