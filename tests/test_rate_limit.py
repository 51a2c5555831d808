"""Client-wide pacing against a rate-limited server: ``max_rate``, the adaptive throttle that
a 429 engages, and ``Retry-After`` as a pause for every window."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest
from _helpers import D0, DAY, expected_records, make_client

from r9s_async import AsyncClient, Client, RateLimitError
from r9s_async._throttle import Throttle
from r9s_async.testing import TEST_API_KEY, FakeR9sAPI, Fault, RateLimit, RecordedRequest

pytestmark = pytest.mark.usefixtures("quiet_asyncio")


def most_in_any_span(requests: list[RecordedRequest], span: float) -> int:
    """The most requests that arrived within any ``span`` seconds."""
    times = sorted(r.received_at for r in requests)
    first = 0
    most = 0
    for last, at in enumerate(times):
        while at - times[first] >= span:
            first += 1
        most = max(most, last - first + 1)
    return most


async def test_a_server_allowing_20_per_second_is_met_at_its_pace_without_max_rate() -> None:
    """The issue's figure: 365 windows, a server allowing 20 requests/s (burst 5) that answers
    at once, ``max_concurrency=16`` and no ``max_rate``: the answer is exact, at most 20% of
    the requests are answered 429, and it takes at most twice the ideal 365 / 20 s."""
    days = 365
    api = FakeR9sAPI(rate_limit=RateLimit(rate=20, burst=5))
    async with api.serve() as url, make_client(url, max_concurrency=16) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        report = await client.usage(D0, D0 + days * DAY)
        elapsed = loop.time() - started

    throttled = sum(r.fault == "rate_limit" for r in api.requests)
    assert expected_records(api, D0, D0 + days * DAY) == report.records
    assert throttled / len(api.requests) <= 0.1
    assert elapsed <= 2 * days / 20


async def test_with_rate_limit_headers_only_the_first_burst_is_answered_429() -> None:
    """The same server announcing its limits on every answer (both header families): the
    client paces just under the announced rate from the first answer on."""
    days = 365
    api = FakeR9sAPI(rate_limit=RateLimit(rate=20, burst=5, headers=True))
    async with api.serve() as url, make_client(url, max_concurrency=16) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        report = await client.usage(D0, D0 + days * DAY)
        elapsed = loop.time() - started
        announced = client._attempts.throttle.announced

    first = api.requests[0].received_at
    late_429s = [r for r in api.requests if r.fault == "rate_limit" and r.received_at > first + 0.5]
    assert expected_records(api, D0, D0 + days * DAY) == report.records
    assert 0.98 * 20 == announced
    assert [] == late_429s
    assert elapsed <= 2 * days / 20


class Storm(FakeR9sAPI):
    """After ``after`` answered requests, every answer is 429 with ``Retry-After: 1``."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after

    def _take_fault(self, path: str, query: Mapping[str, str]) -> Fault | None:
        if len(self.requests) > self.after:
            return Fault.error(429, "storm", headers={"Retry-After": "1"})
        return super()._take_fault(path, query)


@pytest.mark.parametrize(
    ("concurrency", "max_rate", "within"),
    [(16, None, 10), (8, None, 10), (16, 2.0, 15)],
    ids=["16", "8", "paced"],
)
async def test_a_429_storm_fails_within_about_the_sum_of_a_windows_own_waits(
    concurrency: int, max_rate: float | None, within: float
) -> None:
    """Issue 18.8: 40 answers, then 429 with ``Retry-After: 1`` for ever. With
    ``max_retries=3`` a window's own waits add up to 3 s; the call fails with the server's
    ``RateLimitError`` well within 10 s (it took 51-159 s when the throttle's cut compounded
    once a second down to 0.5 requests/s), having sent at most four attempts per window.
    However slow the shared pace (``max_rate=2``: 16 windows' retries would take 32 s in
    turn), the shared throttle holds a retry back at most 2 s past its own wait: 3 retries of
    1 + 2 s (measured: 9 s, against 116 s without that bound)."""
    api = Storm(after=40)
    settings = {"max_retries": 3, "max_concurrency": concurrency, "max_rate": max_rate}
    async with api.serve() as url, make_client(url, **settings) as client:
        loop = asyncio.get_running_loop()
        with pytest.raises(RateLimitError) as caught:
            await client.usage(D0, D0 + 365 * DAY)
        failed_at = loop.time()

    first_429 = min(r.received_at for r in api.requests if r.fault)
    storm_requests = sum(1 for r in api.requests if r.fault)
    assert ("storm", 429) == (caught.value.message, caught.value.status)
    assert failed_at - first_429 <= within
    assert storm_requests <= 4 * 2 * concurrency  # four attempts of the windows started


async def test_max_rate_holds_requests_to_that_pace_after_a_small_burst() -> None:
    api = FakeR9sAPI()
    async with api.serve() as url, make_client(url, max_rate=40, max_concurrency=8) as client:
        report = await client.usage(D0, D0 + 30 * DAY)

    assert expected_records(api, D0, D0 + 30 * DAY) == report.records
    # 40/s with a bucket of 10: never more than 10 + 40 * 0.25 requests in any quarter second.
    assert most_in_any_span(api.requests, 0.25) <= 20
    assert most_in_any_span(api.requests, 0.01) <= 10


async def test_without_max_rate_nothing_holds_requests_back() -> None:
    api = FakeR9sAPI(latency=0.05)
    async with api.serve() as url, make_client(url, max_concurrency=8) as client:
        await client.usage(D0, D0 + 8 * DAY)

    assert 8 == api.peak_in_flight


def test_the_sync_client_paces_the_same_way(api: FakeR9sAPI, threaded_base_url: str) -> None:
    with Client(TEST_API_KEY, base_url=threaded_base_url, max_rate=40) as client:
        report = client.usage(D0, D0 + 30 * DAY)

    assert expected_records(api, D0, D0 + 30 * DAY) == report.records
    assert most_in_any_span(api.requests, 0.01) <= 10


@pytest.mark.parametrize(
    ("value", "error"),
    [(0, ValueError), (-5, ValueError), (float("nan"), ValueError), ("10", TypeError)],
)
def test_max_rate_must_be_a_positive_number(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="max_rate"):
        AsyncClient(TEST_API_KEY, max_rate=value)  # type: ignore[arg-type]


async def test_a_retry_after_pauses_every_window_not_just_the_one_that_got_it(
    api: FakeR9sAPI, base_url: str
) -> None:
    # Window 1 is told to wait a second while window 2 is still being answered; window 3,
    # next in line, must not be sent before that second is over.
    api.add_fault(Fault.error(429, "slow down", headers={"Retry-After": "1"}), start_time=D0)
    api.add_fault(Fault.stall(0.2), start_time=D0 + DAY)

    async with make_client(base_url, max_concurrency=2) as client:
        report = await client.usage(D0, D0 + 3 * DAY)

    told = api.requests[0].received_at if api.requests[0].fault else api.requests[1].received_at
    third = next(r for r in api.requests if r.query["start_time"] == str(D0 + 2 * DAY))
    assert expected_records(api, D0, D0 + 3 * DAY) == report.records
    assert third.received_at - told >= 0.99


async def test_a_503_retry_after_pauses_every_window_too(api: FakeR9sAPI, base_url: str) -> None:
    api.add_fault(Fault.error(503, "maintenance", headers={"Retry-After": "1"}), start_time=D0)
    api.add_fault(Fault.stall(0.2), start_time=D0 + DAY)

    async with make_client(base_url, max_concurrency=2) as client:
        await client.usage(D0, D0 + 3 * DAY)

    told = min(r.received_at for r in api.requests)
    third = next(r for r in api.requests if r.query["start_time"] == str(D0 + 2 * DAY))
    assert third.received_at - told >= 0.99


async def test_a_429_saying_retry_after_0_neither_pauses_nor_slows_the_client(
    api: FakeR9sAPI, base_url: str
) -> None:
    api.add_fault(Fault.error(429, "again", headers={"Retry-After": "0"}), times=3)

    async with make_client(base_url) as client:
        await client.usage(D0, D0 + 4 * DAY)

        assert (None, 0.0) == (
            client._attempts.throttle.rate,
            client._attempts.throttle.paused(0.0),
        )


# -- the throttle by itself: the rules the runs above showed a need for -----------------------


def test_when_a_pause_ends_requests_leave_at_the_buckets_pace_not_all_at_once() -> None:
    throttle = Throttle(max_rate=10)  # a bucket of 2.5
    for _ in range(3):
        throttle.reserve(0.0)

    throttle.pause(0.0, 5.0)
    waits = [throttle.reserve(0.1) for _ in range(4)]

    # The bucket was 0.5 in debt; five seconds later it is full: two at once, then every 0.1 s.
    assert [4.9, 4.9, 4.95, 5.05] == pytest.approx(waits)


def test_a_429_without_recent_successes_pauses_but_sets_no_rate() -> None:
    throttle = Throttle()

    throttle.on_throttled(0.0, 1.0, sent_at=0.0)

    assert (None, 1.0) == (throttle.rate, throttle.paused(0.0))


def test_the_first_429_that_can_be_measured_against_sets_the_rate() -> None:
    throttle = Throttle()
    throttle.on_throttled(0.0, 1.0, sent_at=0.0)  # nothing to measure yet
    for i in range(5):
        throttle.on_success(0.001 * i)

    throttle.on_throttled(0.01, 1.0, sent_at=0.0)

    assert 5 / 0.25 * 0.7 == pytest.approx(throttle.rate)


def test_a_429_saying_retry_now_changes_nothing() -> None:
    throttle = Throttle()
    for i in range(40):
        throttle.on_success(i / 20)

    throttle.on_throttled(2.0, 0.0, sent_at=2.0)

    assert (None, 0.0, 1) == (throttle.rate, throttle.paused(2.0), throttle.throttled)
