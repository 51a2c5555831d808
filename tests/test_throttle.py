"""Client-wide pacing: the token bucket and its adaptive rate, driven by an explicit clock."""

from __future__ import annotations

import heapq
import random

import pytest

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
