"""AsyncClient over real loopback HTTP: fan-out, order, look-ahead, retries, cancellation,
session lifecycle, merging, balance and redirects."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import re
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest
from _helpers import D0, DAY, eventually, expected_records, make_client
from yarl import URL

from r9s_async import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    Client,
    ClientClosedError,
    MalformedResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    UsageRecord,
)
from r9s_async.testing import TEST_API_KEY, FakeR9sAPI, Fault

pytestmark = pytest.mark.usefixtures("quiet_asyncio")

RETRY_NOW = {"Retry-After": "0"}


def only_this_task_left() -> bool:
    return {asyncio.current_task()} == asyncio.all_tasks()


def retry_waits(caplog: pytest.LogCaptureFixture) -> list[float]:
    """The waits announced by the client's INFO "retrying ... in N.NNs" records."""
    waits = []
    for record in caplog.records:
        match = re.search(r" in (\d+\.\d+)s ", record.getMessage())
        if record.name == "r9s_async" and record.levelno == logging.INFO and match:
            waits.append(float(match.group(1)))
    return waits


# -- concurrency and order --------------------------------------------------------------------


@pytest.mark.parametrize("max_concurrency", [1, 3])
async def test_max_concurrency_requests_are_in_flight_at_most_and_at_peak(
    max_concurrency: int,
) -> None:
    api = FakeR9sAPI(latency=0.02)
    async with api.serve() as url, make_client(url, max_concurrency=max_concurrency) as client:
        await client.usage(D0, D0 + 12 * DAY)

    assert (max_concurrency, 12) == (api.peak_in_flight, len(api.requests))


async def test_concurrent_calls_on_one_client_share_its_max_concurrency() -> None:
    api = FakeR9sAPI(latency=0.02)
    async with api.serve() as url, make_client(url, max_concurrency=2) as client:
        await asyncio.gather(
            client.usage(D0, D0 + 4 * DAY),
            client.usage(D0 + 10 * DAY, D0 + 14 * DAY),
            client.balance(),
        )

    assert (2, 9) == (api.peak_in_flight, len(api.requests))


async def test_iter_usage_yields_windows_in_time_order_when_a_later_one_finishes_first(
    api: FakeR9sAPI, base_url: str
) -> None:
    api.add_fault(Fault.stall(0.2), start_time=D0)  # the first window answers last
    start, end = D0, D0 + 5 * DAY

    async with make_client(base_url, max_concurrency=5) as client:
        windows = [window async for window in client.iter_usage(start, end)]

    assert [(D0 + k * DAY, D0 + (k + 1) * DAY) for k in range(5)] == [
        (w.start, w.end) for w in windows
    ]
    assert expected_records(api, start, end) == [r for w in windows for r in w.records]
    assert [sum(r.tokens for r in w.records) for w in windows] == [w.total_tokens for w in windows]


@pytest.mark.parametrize("max_concurrency", [1, 4])
async def test_iter_usage_look_ahead_stays_bounded_while_the_consumer_waits(
    api: FakeR9sAPI, threaded_base_url: str, max_concurrency: int
) -> None:
    start, end = D0, D0 + 1000 * DAY
    async with (
        make_client(threaded_base_url, max_concurrency=max_concurrency) as client,
        contextlib.aclosing(client.iter_usage(start, end)) as windows,
    ):
        first = await anext(windows)
        await eventually(only_this_task_left)  # prefetching stopped by itself
        started = len(api.requests)
        second = await anext(windows)

    assert started <= 2 * max_concurrency + 1
    assert [(D0, D0 + DAY), (D0 + DAY, D0 + 2 * DAY)] == [
        (first.start, first.end),
        (second.start, second.end),
    ]


# -- retries ----------------------------------------------------------------------------------

TRANSIENT = [
    (408, APIError),
    (429, RateLimitError),
    (500, ServerError),
    (502, ServerError),
    (503, ServerError),
    (504, ServerError),
]


def transient_answer(status: int, body: str) -> Fault:
    if body == "json":
        return Fault.error(status, "try again later", headers=RETRY_NOW)
    if body == "html":
        page = f"<html><head><title>{status}</title></head><body>gateway</body></html>"
        return Fault.respond(status, page, headers={**RETRY_NOW, "Content-Type": "text/html"})
    return Fault.respond(status, b"", headers=RETRY_NOW)


@pytest.mark.parametrize("body", ["json", "html", "empty"])
@pytest.mark.parametrize(("status", "error_type"), TRANSIENT)
async def test_a_transient_answer_is_retried_max_retries_times_then_raised(
    api: FakeR9sAPI, base_url: str, status: int, error_type: type[APIError], body: str
) -> None:
    api.add_fault(transient_answer(status, body), times=10)

    async with make_client(base_url, max_retries=2) as client:
        with pytest.raises(APIError) as caught:
            await client.usage(D0, D0 + DAY)

    assert error_type is type(caught.value)
    assert status == caught.value.status
    assert ("F" * 32 if body == "json" else None) == caught.value.request_id
    assert 3 == len(api.requests)


@pytest.mark.parametrize(("status", "error_type"), TRANSIENT)
async def test_a_transient_answer_that_clears_up_is_invisible(
    api: FakeR9sAPI, base_url: str, status: int, error_type: type[APIError]
) -> None:
    api.add_fault(transient_answer(status, "html"), times=2)

    async with make_client(base_url, max_retries=2) as client:
        report = await client.usage(D0, D0 + DAY)

    assert expected_records(api, D0, D0 + DAY) == report.records
    assert 3 == len(api.requests)


async def test_the_default_is_three_retries(api: FakeR9sAPI, base_url: str) -> None:
    api.add_fault(Fault.error(503, headers=RETRY_NOW), times=10)

    async with make_client(base_url) as client:
        with pytest.raises(ServerError):
            await client.balance()

    assert 4 == len(api.requests)


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (422, BadRequestError),
    ],
)
async def test_a_client_error_is_raised_at_once_without_retrying(
    api: FakeR9sAPI, base_url: str, status: int, error_type: type[APIError]
) -> None:
    api.add_fault(Fault.error(status, "refused", headers=RETRY_NOW), times=10)

    async with make_client(base_url, max_retries=3) as client:
        with pytest.raises(APIError) as caught:
            await client.usage(D0, D0 + DAY)

    assert error_type is type(caught.value)
    assert (status, "refused", "F" * 32) == (
        caught.value.status,
        caught.value.message,
        caught.value.request_id,
    )
    assert 1 == len(api.requests)


def envelope(data: Any, code: int = 200, request_id: str = "R" * 32) -> dict[str, Any]:
    return {"meta": {"code": code, "message": "success", "request_id": request_id}, "data": data}


@pytest.mark.parametrize(
    "body",
    [
        b"<html>maintenance</html>",
        b"",
        b"[1, 2, 3]",
        b'{"data": {"records": [], "total_tokens": 0}}',
        envelope({"records": [{"timestamp": D0, "tokens": "7", "model": "m"}], "total_tokens": 7}),
        envelope({"records": [{"timestamp": D0, "tokens": 1.9, "model": "m"}], "total_tokens": 2}),
        envelope({"records": [], "total_tokens": True}),
        envelope(None),
    ],
    ids=["html", "empty", "array", "no-meta", "str-int", "float-int", "bool-int", "null-data"],
)
async def test_a_malformed_answer_is_raised_at_once_without_retrying(
    api: FakeR9sAPI, base_url: str, body: Any
) -> None:
    api.add_fault(Fault.respond(200, body, headers=RETRY_NOW), times=10)

    async with make_client(base_url, max_retries=3) as client:
        with pytest.raises(MalformedResponseError) as caught:
            await client.usage(D0, D0 + DAY)

    assert 200 == caught.value.status
    assert 1 == len(api.requests)


async def test_a_200_whose_meta_code_is_transient_is_retried(
    api: FakeR9sAPI, base_url: str
) -> None:
    api.add_fault(Fault.error(200, "busy", code=503, headers=RETRY_NOW))

    async with make_client(base_url, max_retries=1) as client:
        balance = await client.balance()

    assert (Decimal("470.010481"), 2) == (balance.balance, len(api.requests))


async def test_a_200_whose_meta_code_is_an_error_raises_that_codes_error(
    api: FakeR9sAPI, base_url: str
) -> None:
    api.add_fault(Fault.error(200, "missing scope balance:read", code=403))

    async with make_client(base_url) as client:
        with pytest.raises(PermissionDeniedError) as caught:
            await client.balance()

    assert (200, 403, 1) == (caught.value.status, caught.value.code, len(api.requests))


async def test_retry_after_zero_retries_at_once(
    api: FakeR9sAPI, base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="r9s_async")
    api.add_fault(Fault.error(429, "slow down", headers=RETRY_NOW), times=3)

    async with make_client(base_url, max_retries=3) as client:
        report = await client.usage(D0, D0 + DAY)

    assert [0.0, 0.0, 0.0] == retry_waits(caplog)
    assert expected_records(api, D0, D0 + DAY) == report.records


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_retry_after_sets_the_wait_before_the_next_attempt(
    api: FakeR9sAPI,
    threaded_base_url: str,
    caplog: pytest.LogCaptureFixture,
    form: str,
) -> None:
    caplog.set_level(logging.INFO, logger="r9s_async")
    soon = datetime.now(UTC) + timedelta(seconds=100)  # under the 120 s cap
    value = "100" if form == "seconds" else format_datetime(soon, usegmt=True)
    api.add_fault(Fault.error(503, "maintenance", headers={"Retry-After": value}))

    async with make_client(threaded_base_url, max_retries=1) as client:
        task = asyncio.create_task(client.usage(D0, D0 + DAY))
        await eventually(lambda: bool(retry_waits(caplog)))
        [wait] = retry_waits(caplog)
        waiting = len(api.requests)
        task.cancel()  # nobody waits that long in a test; cancelling the wait is clean too
        with pytest.raises(asyncio.CancelledError):
            await task
        assert only_this_task_left()

    assert 90 <= wait <= 100
    assert 1 == waiting


async def test_a_dropped_connection_is_retried(api: FakeR9sAPI, base_url: str) -> None:
    api.add_fault(Fault.reset(), times=2)  # aiohttp silently retries a dropped GET once

    async with make_client(base_url, max_retries=1) as client:
        report = await client.usage(D0, D0 + DAY)

    assert expected_records(api, D0, D0 + DAY) == report.records


async def test_a_body_cut_short_is_retried(api: FakeR9sAPI, base_url: str) -> None:
    api.add_fault(Fault.reset(after_headers=True))

    async with make_client(base_url, max_retries=1) as client:
        report = await client.usage(D0, D0 + DAY)

    assert expected_records(api, D0, D0 + DAY) == report.records
    assert 2 == len(api.requests)


@pytest.mark.parametrize("after_headers", [False, True])
async def test_a_connection_dropped_on_every_attempt_raises_api_connection_error(
    api: FakeR9sAPI, base_url: str, after_headers: bool
) -> None:
    api.add_fault(Fault.reset(after_headers=after_headers), times=100)

    async with make_client(base_url, max_retries=1) as client:
        with pytest.raises(APIConnectionError) as caught:
            await client.usage(D0, D0 + DAY)

    assert APIConnectionError is type(caught.value)


async def test_a_stall_longer_than_the_timeout_is_retried(api: FakeR9sAPI, base_url: str) -> None:
    api.add_fault(Fault.stall(30))

    async with make_client(base_url, timeout=0.2, max_retries=1) as client:
        report = await client.usage(D0, D0 + DAY)

    assert expected_records(api, D0, D0 + DAY) == report.records
    assert 2 == len(api.requests)


async def test_a_stall_on_every_attempt_ends_in_api_timeout_error_after_every_attempt(
    api: FakeR9sAPI, base_url: str
) -> None:
    api.add_fault(Fault.stall(30), times=100)

    async with make_client(base_url, timeout=0.1, max_retries=1) as client:
        with pytest.raises(APITimeoutError):
            await client.usage(D0, D0 + DAY)

    assert 2 == len(api.requests)


async def test_the_timeout_is_per_attempt_and_waiting_for_a_slot_does_not_count() -> None:
    api = FakeR9sAPI(latency=0.1)
    async with api.serve() as url, make_client(url, timeout=0.25, max_concurrency=1) as client:
        report = await client.usage(D0, D0 + 4 * DAY)  # four 0.1 s requests in a row

    assert (4, expected_records(api, D0, D0 + 4 * DAY)) == (len(api.requests), report.records)


# -- failure and cancellation -----------------------------------------------------------------


async def test_the_first_window_that_fails_cancels_the_others_and_raises_its_own_error(
    api: FakeR9sAPI, threaded_base_url: str
) -> None:
    api.latency_per_day = 30.0  # a full-day window takes 30 s; the first one is 1 s long
    start = D0 - 1
    api.add_fault(Fault.error(401, "API key not found"), start_time=start)

    async with make_client(threaded_base_url, max_concurrency=4) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.usage(start, D0 + 30 * DAY)
        assert only_this_task_left()
        await eventually(lambda: api.in_flight == 0)  # long before the 30 s answers

    assert AuthenticationError is type(caught.value)
    assert "API key not found" == caught.value.message


async def test_iter_usage_yields_the_windows_before_a_failure_then_raises_it(
    api: FakeR9sAPI, base_url: str
) -> None:
    api.add_fault(Fault.error(404, "no such user"), start_time=D0 + 2 * DAY)
    seen = []

    async def collect(client: AsyncClient) -> None:
        async for window in client.iter_usage(D0, D0 + 5 * DAY):
            seen.append(window.start)

    async with make_client(base_url, max_concurrency=1) as client:
        with pytest.raises(NotFoundError):
            await collect(client)

    assert [D0, D0 + DAY] == seen


@pytest.mark.parametrize("method", ["usage", "iter_usage"])
async def test_cancelling_the_callers_task_cancels_every_request_in_flight(
    api: FakeR9sAPI, threaded_base_url: str, method: str
) -> None:
    api.latency = 30.0

    async with make_client(threaded_base_url, max_concurrency=3) as client:

        async def fetch() -> None:
            if method == "usage":
                await client.usage(D0, D0 + 10 * DAY)
            else:
                async for _ in client.iter_usage(D0, D0 + 10 * DAY):
                    pass

        task = asyncio.create_task(fetch())
        await eventually(lambda: api.in_flight == 3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert only_this_task_left()
        await eventually(lambda: api.in_flight == 0)

    assert 3 == len(api.requests)


async def test_leaving_iter_usage_early_cancels_the_requests_in_flight(
    api: FakeR9sAPI, threaded_base_url: str
) -> None:
    api.latency_per_day = 30.0  # only the first, one-second window answers at once
    start = D0 - 1

    async with make_client(threaded_base_url, max_concurrency=3) as client:
        async with contextlib.aclosing(client.iter_usage(start, D0 + 10 * DAY)) as windows:
            async for window in windows:
                assert start == window.start
                break
        assert only_this_task_left()
        await eventually(lambda: api.in_flight == 0)


async def test_breaking_out_of_iter_usage_cancels_the_requests_once_the_loop_is_left(
    api: FakeR9sAPI, threaded_base_url: str
) -> None:
    api.latency_per_day = 30.0
    start = D0 - 1

    async with make_client(threaded_base_url, max_concurrency=3) as client:
        async for window in client.iter_usage(start, D0 + 10 * DAY):
            assert start == window.start
            break
        await eventually(only_this_task_left)  # the loop's async-generator hook closed it
        await eventually(lambda: api.in_flight == 0)


# -- session lifecycle ------------------------------------------------------------------------


def test_a_client_made_outside_an_event_loop_works_in_the_loop_that_uses_it(
    api: FakeR9sAPI, threaded_base_url: str
) -> None:
    client = make_client(threaded_base_url)

    async def use() -> list[UsageRecord]:
        async with client:
            return (await client.usage(D0, D0 + DAY)).records

    assert expected_records(api, D0, D0 + DAY) == asyncio.run(use())


async def test_closing_the_client_closes_the_session_it_made(base_url: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client = make_client(base_url)
        await client.balance()
        await client.aclose()
        del client
        gc.collect()

    assert [] == [str(w.message) for w in caught]


async def test_leaving_async_with_closes_the_client(api: FakeR9sAPI, base_url: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with make_client(base_url) as client:
            await client.balance()
        with pytest.raises(ClientClosedError):
            await client.balance()
        del client
        gc.collect()

    assert [] == [str(w.message) for w in caught]
    assert 1 == len(api.requests)


async def test_a_borrowed_session_is_used_and_never_closed(api: FakeR9sAPI, base_url: str) -> None:
    async with aiohttp.ClientSession(headers={"X-Borrowed": "yes"}) as session:
        async with AsyncClient(TEST_API_KEY, base_url=base_url, session=session) as client:
            await client.usage(D0, D0 + DAY)
            await client.balance()

        assert not session.closed
        async with session.get(base_url + "/balance") as response:
            assert 401 == response.status  # still usable by its owner (who sent no key)

    assert ["yes", "yes", "yes"] == [r.headers.get("X-Borrowed") for r in api.requests]
    assert [True, True, False] == [r.authorized for r in api.requests]


async def test_closing_twice_is_fine(base_url: str) -> None:
    used, unused = make_client(base_url), make_client(base_url)
    await used.balance()

    for client in (used, unused, used, unused):
        await client.aclose()


@pytest.mark.parametrize("use", ["usage", "iter_usage", "balance", "async with"])
async def test_a_closed_client_raises_client_closed_error_and_sends_nothing(
    api: FakeR9sAPI, base_url: str, use: str
) -> None:
    client = make_client(base_url)
    await client.balance()
    await client.aclose()

    async def call() -> None:
        if use == "usage":
            await client.usage(D0, D0 + DAY)
        elif use == "iter_usage":
            client.iter_usage(D0, D0 + DAY)  # refused at the call, before any iteration
        elif use == "balance":
            await client.balance()
        else:
            async with client:
                pass

    with pytest.raises(ClientClosedError, match="closed"):
        await call()

    assert 1 == len(api.requests)


def test_one_client_in_two_event_loops_raises_a_clear_runtime_error(
    api: FakeR9sAPI, threaded_base_url: str
) -> None:
    client = make_client(threaded_base_url)
    first = asyncio.new_event_loop()
    try:
        first.run_until_complete(client.balance())
        with pytest.raises(RuntimeError, match="another event loop"):
            asyncio.run(client.balance())
        first.run_until_complete(client.aclose())
    finally:
        first.close()

    assert 1 == len(api.requests)


# -- merging ----------------------------------------------------------------------------------


@pytest.mark.parametrize("end_inclusive", [True, False], ids=["inclusive", "exclusive"])
async def test_usage_equals_one_unsplit_call_with_one_request_id_per_window(
    end_inclusive: bool,
) -> None:
    api = FakeR9sAPI(mode="events", end_inclusive=end_inclusive)
    start, end = D0 + 3600, D0 + 4 * DAY  # five windows; end on a midnight with a record on it
    async with api.serve() as url, make_client(url) as client:
        report = await client.usage(start, end)

    expected = expected_records(api, start, end)
    assert expected == report.records
    assert sum(r.tokens for r in expected) == report.total_tokens
    assert (start, end) == (report.start, report.end)
    assert [r.timestamp for r in report.records] == sorted(r.timestamp for r in report.records)
    assert 4 == len(report.request_ids) == len(set(report.request_ids))
    assert all(re.fullmatch(r"[A-Za-z0-9]{32}", rid) for rid in report.request_ids)


async def test_records_sent_out_of_order_come_back_in_timestamp_order_ties_kept(
    api: FakeR9sAPI, base_url: str
) -> None:
    sent = [
        {"timestamp": D0 + 50, "tokens": 1, "model": "b"},
        {"timestamp": D0 + 10, "tokens": 2, "model": "a"},
        {"timestamp": D0 + 50, "tokens": 3, "model": "a"},
        {"timestamp": D0 + 50, "tokens": 1, "model": "b"},
    ]
    api.add_fault(Fault.respond(200, envelope({"records": sent, "total_tokens": 7})))

    async with make_client(base_url) as client:
        report = await client.usage(D0, D0 + 100)

    assert [
        UsageRecord(D0 + 10, 2, "a"),
        UsageRecord(D0 + 50, 1, "b"),
        UsageRecord(D0 + 50, 3, "a"),
        UsageRecord(D0 + 50, 1, "b"),
    ] == report.records
    assert (7, ("R" * 32,)) == (report.total_tokens, report.request_ids)


async def test_user_id_is_sent_with_every_window(api: FakeR9sAPI, base_url: str) -> None:
    async with make_client(base_url) as client:
        await client.usage(D0, D0 + 3 * DAY, user_id=42)

    assert ["42", "42", "42"] == [r.query.get("user_id") for r in api.requests]


async def test_bad_arguments_are_refused_before_any_request(api: FakeR9sAPI, base_url: str) -> None:
    async with make_client(base_url) as client:
        with pytest.raises(ValueError, match="before"):
            await client.usage(D0 + 1, D0)
        with pytest.raises(TypeError):
            client.iter_usage("2024-01-01", D0)  # type: ignore[arg-type]

    assert [] == api.requests


# -- balance ----------------------------------------------------------------------------------


async def test_balance_is_exact_and_carries_its_request_id(client: AsyncClient) -> None:
    balance = await client.balance()

    assert (Decimal("470.010481"), "USD") == (balance.balance, balance.currency_code)
    assert (Decimal(0), Decimal(0), Decimal(0)) == (
        balance.coupon_balance,
        balance.credit_limit,
        balance.total_coupon_amount,
    )
    assert balance.request_id is not None
    assert re.fullmatch(r"[A-Za-z0-9]{32}", balance.request_id)


@pytest.mark.parametrize(
    ("fault", "error_type"),
    [
        (Fault.error(401, "API key not found"), AuthenticationError),
        (Fault.error(403, "missing scope balance:read"), PermissionDeniedError),
        (Fault.error(503, "down"), ServerError),
        (Fault.respond(200, "<html>hello</html>"), MalformedResponseError),
        (Fault.respond(200, envelope({"balance": "lots"}, code=0)), MalformedResponseError),
        (Fault.stall(30), APITimeoutError),
    ],
    ids=["401", "403", "503", "html", "schema", "stall"],
)
async def test_balance_errors_are_typed(
    api: FakeR9sAPI, base_url: str, fault: Fault, error_type: type[Exception]
) -> None:
    api.add_fault(fault)

    async with make_client(base_url, max_retries=0, timeout=0.1) as client:
        with pytest.raises(error_type):
            await client.balance()


async def test_an_unknown_key_raises_authentication_error_with_the_servers_message(
    base_url: str,
) -> None:
    async with AsyncClient("sk_mg_" + "e" * 64, base_url=base_url) as client:
        with pytest.raises(AuthenticationError, match="API key not found") as caught:
            await client.balance()

    assert (401, 401) == (caught.value.status, caught.value.code)
    assert caught.value.request_id is not None


# -- redirects --------------------------------------------------------------------------------


async def test_a_redirect_within_the_origin_is_followed_with_the_key(
    api: FakeR9sAPI, base_url: str
) -> None:
    moved = URL(base_url).path + "/balance"
    api.add_fault(Fault.respond(307, headers={"Location": moved}), path="/balance")

    async with make_client(base_url) as client:
        balance = await client.balance()

    assert Decimal("470.010481") == balance.balance
    assert [True, True] == [r.authorized for r in api.requests]


async def test_a_redirect_to_another_origin_is_not_followed(api: FakeR9sAPI, base_url: str) -> None:
    other = FakeR9sAPI()
    async with other.serve() as other_url:
        api.add_fault(Fault.respond(302, headers={"Location": other_url + "/balance"}))
        async with make_client(base_url) as client:
            with pytest.raises(APIError, match="another origin") as caught:
                await client.balance()

    assert 302 == caught.value.status
    assert ([], 1) == (other.requests, len(api.requests))


@pytest.mark.parametrize(
    "origin",
    [lambda url: url.with_host("localhost"), lambda url: url.with_scheme("https")],
    ids=["other-host-name", "other-scheme"],
)
async def test_a_redirect_to_the_same_server_under_another_origin_is_not_followed(
    api: FakeR9sAPI, base_url: str, origin: Callable[[URL], URL]
) -> None:
    target = origin(URL(base_url)) / "balance"
    api.add_fault(Fault.respond(308, headers={"Location": str(target)}))

    async with make_client(base_url) as client:
        with pytest.raises(APIError, match="another origin"):
            await client.balance()

    assert 1 == len(api.requests)


async def test_a_redirect_loop_ends_in_an_error(api: FakeR9sAPI, base_url: str) -> None:
    moved = URL(base_url).path + "/balance"
    api.add_fault(Fault.respond(302, headers={"Location": moved}), times=100)

    async with make_client(base_url) as client:
        with pytest.raises(APIError, match="too many redirects"):
            await client.balance()

    assert len(api.requests) < 10


def test_a_client_names_its_account_by_base_url_and_key_fingerprint() -> None:
    client = AsyncClient(TEST_API_KEY, base_url="http://127.0.0.1:1/api")
    other = AsyncClient("sk_mg_" + "f" * 64, base_url="http://127.0.0.1:1/api")
    assert "http://127.0.0.1:1/api" == client.account.base_url
    assert client.account == AsyncClient(TEST_API_KEY, base_url="http://127.0.0.1:1/api").account
    assert client.account.fingerprint != other.account.fingerprint
    assert client.account.fingerprint == client.account.label
    assert TEST_API_KEY not in repr(client.account)


async def test_closing_an_async_client_during_a_call_raises_client_closed() -> None:
    api = FakeR9sAPI(latency=5.0)
    async with api.serve() as url:
        client = AsyncClient(TEST_API_KEY, base_url=url, max_retries=0)
        call = asyncio.create_task(client.usage(0, 3600))
        await eventually(lambda: api.in_flight > 0)

        await client.aclose()

        with pytest.raises(ClientClosedError):
            await call


@pytest.mark.parametrize("location", ["http://[::1", "http://127.0.0.1:99999/x"])
async def test_a_redirect_to_an_invalid_location_is_an_api_error(
    api: FakeR9sAPI, client: AsyncClient, location: str
) -> None:
    api.add_fault(Fault.respond(302, headers={"Location": location}))

    with pytest.raises(APIError, match="invalid Location"):
        await client.balance()


# -- cut-off answers healed by splitting ------------------------------------------------------


@pytest.mark.parametrize("inclusive", [True, False], ids=["inclusive", "exclusive"])
async def test_a_busy_day_behind_a_record_cap_comes_back_whole_and_consistent(
    inclusive: bool, caplog: pytest.LogCaptureFixture
) -> None:
    api = FakeR9sAPI(mode="events", events_per_day=5_000, record_cap=1_000, end_inclusive=inclusive)
    expected = expected_records(api, D0, D0 + DAY)
    assert len(expected) > 5_000  # five thousand events, and their identical twins

    async with api.serve() as url, AsyncClient(TEST_API_KEY, base_url=url) as client:
        report = await client.usage(D0, D0 + DAY)

    assert expected == report.records  # twins and both boundary seconds kept, in order
    assert (sum(r.tokens for r in expected), True) == (report.total_tokens, report.consistent)
    assert {D0, D0 + DAY - 1} <= {r.timestamp for r in report.records}
    answered = [r for r in api.requests if r.path == "/usage"]
    assert len(answered) == len(report.request_ids) == len(set(report.request_ids))
    assert 3 <= len(answered) <= 31
    assert [] == [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_server_whose_totals_never_add_up_costs_three_requests_per_window(
    api: FakeR9sAPI, client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    records = [{"timestamp": D0 + 7, "tokens": 5, "model": "m"}]
    wrong = {
        "meta": {"code": 200, "message": "success", "request_id": "W" * 32},
        "data": {"records": records, "total_tokens": 6},
    }
    api.add_fault(Fault.respond(200, wrong), path="/usage", times=100)

    report = await client.usage(D0, D0 + 2 * DAY)

    assert 6 == len(api.requests)
    assert ([UsageRecord(D0 + 7, 5, "m")], False) == (report.records, report.consistent)
    assert 6 == len(report.request_ids)
    warnings = [r.getMessage() for r in caplog.records if "declares total_tokens" in r.message]
    assert 2 == len(warnings)
    assert f"[{D0}, {D0 + DAY})" in warnings[0]
    assert "W" * 32 in warnings[0]
    assert f"[{D0 + DAY}, {D0 + 2 * DAY})" in warnings[1]


async def test_an_answer_with_more_than_its_declared_total_is_not_split(
    api: FakeR9sAPI, client: AsyncClient
) -> None:
    records = [{"timestamp": D0 + 7, "tokens": 5, "model": "m"}]
    over = {
        "meta": {"code": 200, "message": "success", "request_id": "O" * 32},
        "data": {"records": records, "total_tokens": 4},
    }
    api.add_fault(Fault.respond(200, over), path="/usage")

    report = await client.usage(D0, D0 + DAY)

    assert 1 == len(api.requests)
    assert not report.consistent


async def test_sub_requests_of_a_healed_window_are_retried_like_any_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = FakeR9sAPI(mode="events", events_per_day=300, record_cap=200)
    api.add_fault(Fault.error(503, "busy"), path="/usage", start_time=D0 + DAY // 2)
    caplog.set_level(logging.INFO, logger="r9s_async")
    async with api.serve() as url, AsyncClient(TEST_API_KEY, base_url=url) as client:
        report = await client.usage(D0, D0 + DAY)

    assert expected_records(api, D0, D0 + DAY) == report.records
    assert report.consistent
    assert 1 == sum(r.fault is not None for r in api.requests)
    assert any("retrying /usage" in r.getMessage() for r in caplog.records)


async def test_the_split_floor_stops_healing_and_leaves_the_part_flagged() -> None:
    api = FakeR9sAPI(mode="events", events_per_day=300, record_cap=200)
    async with (
        api.serve() as url,
        AsyncClient(TEST_API_KEY, base_url=url, split_floor=DAY + 1) as client,
    ):
        report = await client.usage(D0, D0 + DAY)

    assert (1, False, 200) == (len(api.requests), report.consistent, len(report.records))


@pytest.mark.parametrize(
    ("value", "error"), [(0, ValueError), (-5, ValueError), (1.5, TypeError), (True, TypeError)]
)
def test_a_bad_split_floor_is_refused(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="split_floor"):
        AsyncClient(TEST_API_KEY, split_floor=value)  # type: ignore[arg-type]
    with pytest.raises(error, match="split_floor"):
        Client(TEST_API_KEY, split_floor=value)  # type: ignore[arg-type]
