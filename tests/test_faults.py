"""The fault plan and rate limit of the API double, and what the client makes of every fault:
each transient one is cured by a retry, each one surfaces as its documented error when the
retries are spent, and hostile bodies (oversized, cut short, not HTTP) are errors, never data."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gzip
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest
from _helpers import D0, DAY, expected_records, make_client

from r9s_async import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    MalformedResponseError,
    R9sError,
    RateLimitError,
    RetryEvent,
    ServerError,
    UsageRecord,
)
from r9s_async.testing import TEST_API_KEY, FakeR9sAPI, Fault, FaultKind, FaultPlan, RateLimit
from r9s_async.testing._faults import RateLimiter

pytestmark = pytest.mark.usefixtures("quiet_asyncio")

WINDOW = f"/api/v1/portal/management/usage?start_time={D0}&end_time={D0 + DAY}"


def envelope(data: Any) -> dict[str, Any]:
    return {"meta": {"code": 200, "message": "success", "request_id": "R" * 32}, "data": data}


ONE_RECORD = envelope(
    {"records": [{"timestamp": D0, "tokens": 7, "model": "m"}], "total_tokens": 7}
)


# -- the plan, by itself ----------------------------------------------------------------------


def test_a_plan_hits_the_same_attempts_of_the_same_windows_whatever_the_arrival_order() -> None:
    plan = FaultPlan.transient(0.5, seed=3)
    requests = [
        (f"/usage?start_time={day * DAY}", attempt) for day in range(50) for attempt in (1, 2)
    ]

    forwards = {request: plan.kind_for(*request) for request in requests}
    backwards = {request: plan.kind_for(*request) for request in reversed(requests)}

    assert forwards == backwards
    assert {None} != set(forwards.values())


def test_another_seed_hits_other_requests() -> None:
    windows = [f"/usage?start_time={day * DAY}" for day in range(200)]

    def hits(seed: int) -> list[FaultKind | None]:
        return [FaultPlan.transient(0.5, seed=seed).kind_for(window, 1) for window in windows]

    assert hits(1) == hits(1)
    assert hits(1) != hits(2)


def test_each_kind_is_drawn_at_about_its_rate() -> None:
    rates: dict[FaultKind, float] = {"reset": 0.1, "stall": 0.05, "rate_limited": 0.2}
    plan = FaultPlan(rates, seed=1)
    draws = 20_000

    counts = collections.Counter(plan.kind_for(f"w{i}", 1) for i in range(draws))

    assert {kind: pytest.approx(rate, abs=0.01) for kind, rate in rates.items()} == {
        kind: counts[kind] / draws for kind in rates
    }
    assert pytest.approx(0.65, abs=0.01) == counts[None] / draws


def test_attempts_limits_faults_to_the_first_requests_of_each_window() -> None:
    plan = FaultPlan({"reset": 1.0}, attempts=2)

    assert ["reset", "reset", None, None] == [plan.kind_for("w", n) for n in (1, 2, 3, 4)]


def test_transient_spreads_the_rate_evenly_over_every_transient_kind() -> None:
    plan = FaultPlan.transient(0.22)

    assert dict.fromkeys(FaultPlan.TRANSIENT, pytest.approx(0.02)) == dict(plan.rates)
    assert set(FaultPlan.KINDS) == set(FaultPlan.TRANSIENT) | set(FaultPlan.PERMANENT)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"rates": {"teapot": 0.1}}, "unknown fault kinds"),
        ({"rates": {"reset": 1.5}}, "in \\[0, 1\\]"),
        ({"rates": {"reset": -0.1}}, "in \\[0, 1\\]"),
        ({"rates": {"reset": 0.6, "stall": 0.6}}, "more than 1"),
        ({"rates": {}, "attempts": 0}, "attempts"),
        ({"rates": {}, "retry_after": 1.5}, "whole seconds"),
        ({"rates": {}, "retry_after": -1}, "whole seconds"),
        ({"rates": {}, "stall": -1.0}, "stall"),
    ],
)
def test_a_plan_that_cannot_work_is_refused(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultPlan(**settings)


def test_a_plans_rates_cannot_be_changed_behind_its_back() -> None:
    rates: dict[FaultKind, float] = {"reset": 1.0}
    plan = FaultPlan(rates)

    rates["reset"] = 0.0

    assert "reset" == plan.kind_for("w", 1)


def test_the_http_date_retry_after_counts_from_now_in_whole_seconds() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, 250_000, tzinfo=UTC)

    later = FaultPlan({"rate_limited_date": 1.0}, retry_after=2).fault_for("w", 1, now=now)
    at_once = FaultPlan({"rate_limited_date": 1.0}).fault_for("w", 1, now=now)

    assert later is not None
    assert at_once is not None
    assert (
        format_datetime(now.replace(microsecond=0) + timedelta(seconds=3), usegmt=True)
        == (later.headers["Retry-After"])
    )
    assert (
        format_datetime(now.replace(microsecond=0), usegmt=True) == (at_once.headers["Retry-After"])
    )


# -- the rate limit, by itself ----------------------------------------------------------------


def test_a_rate_limit_lets_a_burst_through_then_one_request_per_token() -> None:
    limiter = RateLimiter(RateLimit(rate=10, burst=3))

    burst = [limiter.take("key", 0.0) for _ in range(4)]
    later = [limiter.take("key", 0.1), limiter.take("key", 0.1)]

    assert [None, None, None, 1] == burst
    assert [None, 1] == later


def test_a_rate_limit_answers_whole_seconds_to_wait() -> None:
    limiter = RateLimiter(RateLimit(rate=0.4, burst=1))

    limiter.take("key", 0.0)

    assert 3 == limiter.take("key", 0.0)  # 2.5 s until the next token, rounded up


def test_a_rate_limit_keeps_one_bucket_per_key() -> None:
    limiter = RateLimiter(RateLimit(rate=1, burst=1))

    assert [None, 1, None] == [
        limiter.take("a", 0.0),
        limiter.take("a", 0.0),
        limiter.take("b", 0.0),
    ]


@pytest.mark.parametrize(
    ("rate", "burst"), [(0, 1), (-1, 1), (float("nan"), 1), (1, 0), (1, 1.5), (1, True)]
)
def test_a_rate_limit_that_cannot_work_is_refused(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match=r"rate|burst"):
        RateLimit(rate, burst)


async def test_the_fake_answers_429_with_retry_after_over_its_rate_limit() -> None:
    api = FakeR9sAPI(rate_limit=RateLimit(rate=0.5, burst=2))
    async with api.serve() as url, aiohttp.ClientSession() as session:
        headers = {"Authorization": "Bearer " + TEST_API_KEY}
        answers = []
        for _ in range(3):
            async with session.get(url + "/balance", headers=headers) as response:
                answers.append((response.status, response.headers.get("Retry-After")))

    assert [(200, None), (200, None), (429, "2")] == answers
    assert [None, None, "rate_limit"] == [r.fault for r in api.requests]


# -- every fault, through the client ----------------------------------------------------------


def only(kind: FaultKind, **settings: Any) -> FakeR9sAPI:
    """A fake whose first request of each window meets ``kind``."""
    return FakeR9sAPI(fault_plan=FaultPlan({kind: 1.0}, attempts=1, **settings))


@pytest.mark.parametrize("kind", FaultPlan.TRANSIENT)
async def test_every_transient_fault_is_cured_by_one_retry(kind: FaultKind) -> None:
    api = only(kind, stall=30)
    async with api.serve() as url, make_client(url, max_retries=1, timeout=0.3) as client:
        report = await client.usage(D0, D0 + 2 * DAY)

    assert expected_records(api, D0, D0 + 2 * DAY) == report.records
    assert {kind: 2, None: 2} == collections.Counter(r.fault for r in api.requests)


SURFACES: dict[FaultKind, type[R9sError]] = {
    "rate_limited": RateLimitError,
    "rate_limited_date": RateLimitError,
    "server_error_json": ServerError,
    "server_error_html": ServerError,
    "server_error_empty": ServerError,
    "reset": APIConnectionError,
    "reset_after_headers": APIConnectionError,
    "stall": APITimeoutError,
    "truncated_body": APIConnectionError,
    "truncated_gzip": APIConnectionError,
    "error_in_envelope": ServerError,
    "malformed_json": MalformedResponseError,
    "wrong_types": MalformedResponseError,
}


def test_the_table_below_covers_every_kind() -> None:
    assert set(FaultPlan.KINDS) == set(SURFACES)


@pytest.mark.parametrize(("kind", "error"), list(SURFACES.items()))
async def test_every_fault_surfaces_as_its_documented_error_once_retries_are_spent(
    kind: FaultKind, error: type[R9sError]
) -> None:
    # Two faulty attempts: aiohttp silently resends a GET whose connection dropped once.
    api = FakeR9sAPI(fault_plan=FaultPlan({kind: 1.0}, attempts=2, stall=30))
    async with api.serve() as url, make_client(url, max_retries=0, timeout=0.3) as client:
        with pytest.raises(R9sError) as caught:
            await client.usage(D0, D0 + DAY)

    assert error is type(caught.value)


@pytest.mark.parametrize("kind", FaultPlan.PERMANENT)
async def test_a_permanent_fault_is_raised_at_once_without_retrying(kind: FaultKind) -> None:
    api = only(kind)
    async with api.serve() as url, make_client(url, max_retries=3) as client:
        with pytest.raises(MalformedResponseError):
            await client.usage(D0, D0 + DAY)

    assert [kind] == [r.fault for r in api.requests]


async def test_a_server_error_fault_varies_its_status_over_the_gateway_statuses() -> None:
    plan = FaultPlan({"server_error_json": 1.0})

    statuses = {plan.fault_for(f"w{i}", 1).status for i in range(100)}  # type: ignore[union-attr]

    assert {500, 502, 503, 504} == statuses


async def test_only_503s_and_429s_carry_retry_after() -> None:
    plan = FaultPlan({"server_error_empty": 0.5, "rate_limited": 0.5}, retry_after=7)

    faults = [plan.fault_for(f"w{i}", 1) for i in range(100)]

    assert all(
        ("Retry-After" in f.headers) == (f.status in (429, 503)) for f in faults if f is not None
    )
    assert {"7"} == {f.headers["Retry-After"] for f in faults if f and "Retry-After" in f.headers}


# -- Retry-After: the cap and nonsense --------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"), [(429, RateLimitError), (503, ServerError)], ids=["429", "503"]
)
async def test_a_retry_after_beyond_the_cap_fails_fast_and_tells_the_wait(
    api: FakeR9sAPI, base_url: str, status: int, error: type[APIError]
) -> None:
    api.add_fault(Fault.error(status, "come back later", headers={"Retry-After": "121"}))

    async with make_client(base_url, max_retries=3) as client:
        with pytest.raises(APIError) as caught:
            await client.usage(D0, D0 + DAY)

    assert (error, 121.0, 1) == (type(caught.value), caught.value.retry_after, len(api.requests))


def far_future() -> str:
    return format_datetime(datetime.now(UTC) + timedelta(days=400), usegmt=True)


@pytest.mark.parametrize("value", ["soon", "-1", "nan", "1e30", "inf", "", "far-future"], ids=repr)
async def test_a_nonsense_retry_after_is_ignored_and_the_backoff_applies(
    api: FakeR9sAPI, base_url: str, value: str
) -> None:
    header = far_future() if value == "far-future" else value
    api.add_fault(Fault.error(429, "slow down", headers={"Retry-After": header}))
    events: list[RetryEvent] = []

    async with make_client(base_url, max_retries=1, on_retry=events.append) as client:
        report = await client.usage(D0, D0 + DAY)

    assert expected_records(api, D0, D0 + DAY) == report.records
    [event] = events
    assert (None, True) == (event.error.retry_after, 0 <= event.wait <= 0.5)  # type: ignore[attr-defined]


# -- the retry hook ---------------------------------------------------------------------------


async def test_the_retry_hook_sees_every_retry_with_its_window_attempt_wait_status_and_id(
    api: FakeR9sAPI, base_url: str
) -> None:
    api.add_fault(Fault.error(503, "busy", headers={"Retry-After": "0"}), start_time=D0)
    api.add_fault(Fault.reset(after_headers=True), start_time=D0)
    events: list[RetryEvent] = []

    async with make_client(base_url, max_retries=2, on_retry=events.append) as client:
        await client.usage(D0, D0 + DAY)

    assert [
        ("/usage", (D0, D0 + DAY), 1, 0.0, 503, "F" * 32, ServerError),
        ("/usage", (D0, D0 + DAY), 2, None, None, None, APIConnectionError),
    ] == [
        (
            e.path,
            e.window,
            e.attempt,
            e.wait if e.status else None,
            e.status,
            e.request_id,
            type(e.error),
        )
        for e in events
    ]
    assert 0 <= events[1].wait <= 1.0


async def test_the_retry_hook_sees_balance_retries_without_a_window(
    api: FakeR9sAPI, base_url: str
) -> None:
    api.add_fault(Fault.error(502, "bad gateway", headers={"Retry-After": "0"}))
    events: list[RetryEvent] = []

    async with make_client(base_url, on_retry=events.append) as client:
        await client.balance()

    assert [("/balance", None, 502)] == [(e.path, e.window, e.status) for e in events]


async def test_an_error_in_the_retry_hook_ends_the_call(api: FakeR9sAPI, base_url: str) -> None:
    api.add_fault(Fault.error(503, "busy", headers={"Retry-After": "0"}))

    def refuse(event: RetryEvent) -> None:
        raise RuntimeError("no retries here")

    async with make_client(base_url, on_retry=refuse) as client:
        with pytest.raises(RuntimeError, match="no retries here"):
            await client.usage(D0, D0 + DAY)

    assert 1 == len(api.requests)


def test_a_retry_hook_that_is_not_callable_is_refused() -> None:
    with pytest.raises(TypeError, match="on_retry"):
        make_client("http://127.0.0.1:1/api", on_retry="print")


# -- bodies: size cap, compression, cut short -------------------------------------------------


def big_envelope(records: int) -> bytes:
    record = {"timestamp": D0, "tokens": 1, "model": "m" * 40}
    return gzip.compress(
        str(envelope({"records": [record] * records, "total_tokens": records}))
        .replace("'", '"')
        .encode(),
        compresslevel=9,
    )


async def test_an_answer_over_max_response_size_is_refused_before_it_is_read(
    api: FakeR9sAPI, base_url: str
) -> None:
    api.add_fault(Fault.respond(200, b"x" * 5000))

    async with make_client(base_url, max_response_size=4096, max_retries=3) as client:
        with pytest.raises(MalformedResponseError, match="max_response_size") as caught:
            await client.usage(D0, D0 + DAY)

    assert (200, 1) == (caught.value.status, len(api.requests))


async def test_a_compressed_answer_is_measured_after_decompression(
    api: FakeR9sAPI, base_url: str
) -> None:
    body = big_envelope(50_000)  # ~3.5 MB of JSON in ~10 kB of gzip: a decompression bomb
    api.add_fault(Fault.respond(200, body, headers={"Content-Encoding": "gzip"}))

    async with make_client(base_url, max_response_size=1024 * 1024) as client:
        with pytest.raises(MalformedResponseError, match="max_response_size"):
            await client.usage(D0, D0 + DAY)

    assert len(body) < 64 * 1024


async def test_an_answer_of_exactly_max_response_size_is_read(
    api: FakeR9sAPI, base_url: str
) -> None:
    body = str(ONE_RECORD).replace("'", '"').encode()
    api.add_fault(Fault.respond(200, body, headers={"Content-Type": "application/json"}))

    async with make_client(base_url, max_response_size=len(body)) as client:
        report = await client.usage(D0, D0 + DAY)

    assert [UsageRecord(D0, 7, "m")] == report.records


@pytest.mark.parametrize("coding", ["gzip", "x-gzip", "deflate", "raw-deflate", "identity"])
async def test_compressed_answers_are_decompressed(
    api: FakeR9sAPI, base_url: str, coding: str
) -> None:
    raw = str(ONE_RECORD).replace("'", '"').encode()
    if coding in ("gzip", "x-gzip"):
        body = gzip.compress(raw)
    elif coding == "deflate":
        body = zlib.compress(raw)
    elif coding == "raw-deflate":
        squeeze = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        body = squeeze.compress(raw) + squeeze.flush()
    else:
        body = raw
    header = "deflate" if coding == "raw-deflate" else coding
    api.add_fault(Fault.respond(200, body, headers={"Content-Encoding": header}))

    async with make_client(base_url) as client:
        report = await client.usage(D0, D0 + DAY)

    assert [UsageRecord(D0, 7, "m")] == report.records


async def test_the_client_asks_only_for_codings_it_decompresses(
    api: FakeR9sAPI, base_url: str
) -> None:
    async with make_client(base_url) as client:
        await client.balance()

    assert "gzip, deflate" == api.requests[0].headers["Accept-Encoding"]


async def test_an_unasked_for_coding_is_a_malformed_answer(api: FakeR9sAPI, base_url: str) -> None:
    api.add_fault(Fault.respond(200, b"\x8b\x00", headers={"Content-Encoding": "br"}))

    async with make_client(base_url) as client:
        with pytest.raises(MalformedResponseError, match="Content-Encoding 'br'"):
            await client.usage(D0, D0 + DAY)


async def test_a_corrupt_compressed_body_is_a_connection_error_and_retried(
    api: FakeR9sAPI, base_url: str
) -> None:
    api.add_fault(
        Fault.respond(200, b"\x1f\x8b\x08\x00garbage", headers={"Content-Encoding": "gzip"})
    )

    async with make_client(base_url, max_retries=1) as client:
        report = await client.usage(D0, D0 + DAY)

    assert expected_records(api, D0, D0 + DAY) == report.records
    assert 2 == len(api.requests)


async def test_a_gzip_stream_cut_short_in_a_complete_http_message_is_never_data() -> None:
    api = only("truncated_gzip")
    async with api.serve() as url:
        # What aiohttp alone makes of it: the first half of the JSON, without complaint.
        async with aiohttp.ClientSession() as session:
            headers = {"Authorization": "Bearer " + TEST_API_KEY}
            async with session.get(url + "/balance", headers=headers) as response:
                partial = await response.read()
        async with make_client(url, max_retries=0) as client:
            with pytest.raises(APIConnectionError, match="gzip body was cut short"):
                await client.usage(D0, D0 + DAY)

    assert (True, False) == (partial.startswith(b'{"meta"'), partial.endswith(b"}"))


async def test_a_chunked_body_cut_short_is_a_connection_error() -> None:
    api = FakeR9sAPI(fault_plan=FaultPlan({"truncated_body": 1.0}))
    async with api.serve() as url, make_client(url, max_retries=0) as client:
        with pytest.raises(APIConnectionError, match="ClientPayloadError"):
            await client.usage(D0, D0 + DAY)


# -- not HTTP at all --------------------------------------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/api"
    finally:
        server.close()
        await server.wait_closed()


def answer_with(raw: bytes) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(raw)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    return handler


@pytest.mark.parametrize(
    "raw",
    [
        b"HELLO WORLD\r\n\r\n",
        b"HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    ],
    ids=["not-http", "bad-status", "bad-length", "bad-chunk"],
)
async def test_malformed_http_is_a_connection_error_never_an_api_error(raw: bytes) -> None:
    async with raw_server(answer_with(raw)) as url, make_client(url, max_retries=1) as client:
        with pytest.raises(R9sError) as caught:
            await client.usage(D0, D0 + DAY)

    assert APIConnectionError is type(caught.value)
    assert "malformed HTTP from the server" in str(caught.value)
    assert "400" not in str(caught.value)
