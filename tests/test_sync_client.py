"""Client, the blocking facade: the same results and errors as AsyncClient, safe across threads
and inside asgiref, pooled connections, and a clear error where blocking would hurt.

These tests are plain functions: the fake API runs in its own thread, and the test's thread has
no event loop, exactly like the blocking code Client is for.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
import pytest
from _helpers import D0, DAY, eventually_sync, expected_records
from asgiref.sync import sync_to_async

from r9s_async import (
    APITimeoutError,
    AsyncClient,
    AuthenticationError,
    Client,
    ClientClosedError,
    MalformedResponseError,
    R9sError,
    ServerError,
    UsageRecord,
    UsageReport,
)
from r9s_async.testing import TEST_API_KEY, FakeR9sAPI, Fault

pytestmark = pytest.mark.usefixtures("quiet_asyncio")


def make_client(base_url: str, **settings: Any) -> Client:
    return Client(TEST_API_KEY, base_url=base_url, **settings)


def loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("r9s_async.Client")]


def shape(report: UsageReport) -> tuple[Any, ...]:
    """A report without its request ids (every answer has a fresh one)."""
    return report.records, report.total_tokens, report.start, report.end, len(report.request_ids)


@pytest.fixture
def events_api() -> FakeR9sAPI:
    return FakeR9sAPI(mode="events", end_inclusive=False)


@pytest.fixture
def events_url(events_api: FakeR9sAPI) -> Iterator[str]:
    with events_api.serve_in_thread() as url:
        yield url


# -- same results, same errors ----------------------------------------------------------------


def test_usage_gives_the_same_report_as_the_async_client(
    events_api: FakeR9sAPI, events_url: str
) -> None:
    start, end = D0 + 3600, D0 + 6 * DAY

    async def fetch() -> UsageReport:
        async with AsyncClient(TEST_API_KEY, base_url=events_url) as client:
            return await client.usage(start, end)

    with make_client(events_url) as client:
        report = client.usage(start, end)

    assert shape(asyncio.run(fetch())) == shape(report)
    assert expected_records(events_api, start, end) == report.records


def test_iter_usage_is_an_iterator_of_the_same_windows_as_the_async_client(
    events_url: str,
) -> None:
    start, end = D0 + 3600, D0 + 4 * DAY + 60

    async def fetch() -> list[UsageReport]:
        async with AsyncClient(TEST_API_KEY, base_url=events_url) as client:
            return [window async for window in client.iter_usage(start, end)]

    with make_client(events_url) as client:
        windows = client.iter_usage(start, end)
        assert isinstance(windows, Iterator)
        sync_windows = list(windows)

    assert [shape(w) for w in asyncio.run(fetch())] == [shape(w) for w in sync_windows]
    assert 5 == len(sync_windows)


def test_balance_gives_the_same_answer_as_the_async_client(threaded_base_url: str) -> None:
    async def fetch() -> Any:
        async with AsyncClient(TEST_API_KEY, base_url=threaded_base_url) as client:
            return await client.balance()

    with make_client(threaded_base_url) as client:
        balance = client.balance()

    expected = asyncio.run(fetch())
    assert (expected.balance, expected.currency_code) == (balance.balance, balance.currency_code)
    assert balance.request_id is not None


@pytest.mark.parametrize(
    ("fault", "error_type"),
    [
        (Fault.error(401, "API key not found"), AuthenticationError),
        (Fault.error(503, "down"), ServerError),
        (Fault.respond(200, "<html>hello</html>"), MalformedResponseError),
        (Fault.stall(30), APITimeoutError),
    ],
    ids=["401", "503", "html", "stall"],
)
def test_errors_are_the_same_types_as_the_async_clients(
    api: FakeR9sAPI, threaded_base_url: str, fault: Fault, error_type: type[R9sError]
) -> None:
    settings: dict[str, Any] = {"max_retries": 0, "timeout": 0.1}

    async def fetch() -> None:
        async with AsyncClient(TEST_API_KEY, base_url=threaded_base_url, **settings) as client:
            await client.usage(D0, D0 + DAY)

    api.add_fault(fault)
    with pytest.raises(R9sError) as from_async:
        asyncio.run(fetch())
    api.add_fault(fault)
    with make_client(threaded_base_url, **settings) as client, pytest.raises(R9sError) as caught:
        client.usage(D0, D0 + DAY)

    assert (error_type, error_type) == (type(from_async.value), type(caught.value))
    assert str(from_async.value) == str(caught.value)


def test_bad_arguments_raise_the_same_errors_before_any_request(
    api: FakeR9sAPI, threaded_base_url: str
) -> None:
    with make_client(threaded_base_url) as client:
        with pytest.raises(ValueError, match="before"):
            client.usage(D0 + 1, D0)
        with pytest.raises(TypeError):
            client.iter_usage(1.5, D0)  # type: ignore[arg-type]

    assert [] == api.requests


# -- leaving early ----------------------------------------------------------------------------


def test_closing_an_unfinished_iterator_cancels_the_requests_in_flight(
    api: FakeR9sAPI, threaded_base_url: str
) -> None:
    api.latency_per_day = 30.0  # only the first, one-second window answers at once
    start = D0 - 1

    with make_client(threaded_base_url, max_concurrency=3) as client:
        windows = client.iter_usage(start, D0 + 10 * DAY)
        for window in windows:
            assert start == window.start
            break
        windows.close()
        eventually_sync(lambda: api.in_flight == 0)  # long before the 30 s answers


def test_dropping_an_unfinished_iterator_cancels_the_requests_in_flight(
    api: FakeR9sAPI, threaded_base_url: str
) -> None:
    api.latency_per_day = 30.0
    start = D0 - 1

    with make_client(threaded_base_url, max_concurrency=3) as client:
        windows = client.iter_usage(start, D0 + 10 * DAY)
        assert start == next(windows).start
        del windows
        gc.collect()
        eventually_sync(lambda: api.in_flight == 0)


# -- connections and threads ------------------------------------------------------------------


def test_twenty_sequential_calls_share_at_most_two_connections(
    api: FakeR9sAPI, threaded_base_url: str
) -> None:
    with make_client(threaded_base_url) as client:
        for day in range(10):
            client.usage(D0 + day * DAY, D0 + day * DAY + 3600)
            client.balance()

    assert 20 == len(api.requests)
    assert api.connections <= 2


def test_one_client_serves_eight_threads_at_once(api: FakeR9sAPI, threaded_base_url: str) -> None:
    ranges = [(D0 + k * 3 * DAY, D0 + (k + 1) * 3 * DAY) for k in range(8)]
    together = threading.Barrier(8)

    with make_client(threaded_base_url, max_concurrency=4) as client:

        def fetch(span: tuple[int, int]) -> list[UsageRecord]:
            together.wait()
            return client.usage(*span).records

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(fetch, ranges))

    assert [expected_records(api, *span) for span in ranges] == results
    assert api.peak_in_flight <= 4


@pytest.mark.parametrize("thread_sensitive", [True, False])
def test_works_inside_asgiref_sync_to_async(
    api: FakeR9sAPI, threaded_base_url: str, thread_sensitive: bool
) -> None:
    with make_client(threaded_base_url) as client:

        def work() -> tuple[list[UsageRecord], int]:
            windows = list(client.iter_usage(D0, D0 + 2 * DAY))
            return client.usage(D0, D0 + 2 * DAY).records, len(windows)

        async def view() -> tuple[list[UsageRecord], int]:
            return await sync_to_async(work, thread_sensitive=thread_sensitive)()

        records, windows = asyncio.run(view())

    assert (expected_records(api, D0, D0 + 2 * DAY), 2) == (records, windows)


def test_works_in_a_thread_whose_event_loop_is_running_as_in_a_notebook(
    api: FakeR9sAPI, threaded_base_url: str
) -> None:
    with make_client(threaded_base_url) as client:

        async def cell() -> tuple[UsageReport, list[UsageReport], Any]:
            # A notebook cell: plain blocking calls, made while this thread's loop runs.
            return (
                client.usage(D0, D0 + 2 * DAY),
                list(client.iter_usage(D0, D0 + 2 * DAY)),
                client.balance(),
            )

        report, windows, balance = asyncio.run(cell())

    assert expected_records(api, D0, D0 + 2 * DAY) == report.records
    assert report.records == [r for w in windows for r in w.records]
    assert "USD" == balance.currency_code
    assert 5 == len(api.requests)


def test_a_call_from_the_clients_own_loop_thread_is_refused_and_leaves_it_usable(
    api: FakeR9sAPI, threaded_base_url: str
) -> None:
    # on_retry runs on the client's loop thread: a blocking call there would wait for itself.
    api.add_fault(Fault.error(503, "down"), path="/balance")
    refusals: list[str] = []

    def on_retry(event: object) -> None:
        for call in (
            lambda: client.balance(),
            lambda: client.usage(D0, D0 + DAY),
            lambda: client.iter_usage(D0, D0 + DAY),
        ):
            try:
                call()
            except RuntimeError as exc:
                refusals.append(str(exc))

    with make_client(threaded_base_url, on_retry=on_retry) as client:
        client.balance()  # retried once, the hook's calls refused
        after = client.usage(D0, D0 + DAY)

    assert 3 == len(refusals)
    assert all("own event loop's thread" in message for message in refusals)
    assert expected_records(api, D0, D0 + DAY) == after.records


# -- lifecycle --------------------------------------------------------------------------------


def test_with_returns_the_client_and_closing_stops_its_loop_thread(
    threaded_base_url: str,
) -> None:
    before = loop_threads()

    with make_client(threaded_base_url) as client:
        client.balance()
        running = loop_threads()

    assert (len(before) + 1, before) == (len(running), loop_threads())


def test_a_client_that_was_never_used_starts_no_thread(threaded_base_url: str) -> None:
    before = loop_threads()

    with make_client(threaded_base_url):
        during = loop_threads()

    assert before == during == loop_threads()


def test_a_forgotten_client_stops_its_thread_when_collected(threaded_base_url: str) -> None:
    before = loop_threads()
    client = make_client(threaded_base_url)
    client.balance()

    del client
    gc.collect()

    assert before == loop_threads()


def test_closing_the_client_with_an_unfinished_iterator_leaves_nothing_running(
    api: FakeR9sAPI, threaded_base_url: str
) -> None:
    api.latency_per_day = 30.0
    before = loop_threads()
    client = make_client(threaded_base_url, max_concurrency=3)
    windows = client.iter_usage(D0 - 1, D0 + 10 * DAY)
    next(windows)

    client.close()

    eventually_sync(lambda: api.in_flight == 0)
    assert before == loop_threads()
    with pytest.raises(ClientClosedError):
        next(windows)


def test_closing_twice_is_fine(threaded_base_url: str) -> None:
    used, unused = make_client(threaded_base_url), make_client(threaded_base_url)
    used.balance()

    for client in (used, unused, used, unused):
        client.close()


@pytest.mark.parametrize("use", ["usage", "iter_usage", "balance", "with"])
@pytest.mark.parametrize("was_used", [True, False], ids=["used", "unused"])
def test_a_closed_client_raises_client_closed_error_and_sends_nothing(
    api: FakeR9sAPI, threaded_base_url: str, use: str, was_used: bool
) -> None:
    client = make_client(threaded_base_url)
    if was_used:
        client.balance()
    client.close()

    def call() -> None:
        if use == "usage":
            client.usage(D0, D0 + DAY)
        elif use == "iter_usage":
            client.iter_usage(D0, D0 + DAY)  # refused at the call, before any iteration
        elif use == "balance":
            client.balance()
        else:
            with client:
                pass

    with pytest.raises(ClientClosedError, match="closed"):
        call()

    assert int(was_used) == len(api.requests)


def test_a_session_cannot_be_borrowed() -> None:
    async def attempt() -> None:
        async with aiohttp.ClientSession() as session:
            Client(TEST_API_KEY, base_url="http://127.0.0.1:1/api", session=session)

    with pytest.raises(TypeError, match="AsyncClient"):
        asyncio.run(attempt())


@pytest.mark.parametrize("name", ["__init__", "usage", "iter_usage", "balance"])
def test_signatures_mirror_the_async_client(name: str) -> None:
    def parameters(function: Any) -> list[tuple[Any, ...]]:
        return [
            (p.name, p.kind, p.default, p.annotation)
            for p in inspect.signature(function).parameters.values()
        ]

    assert parameters(getattr(AsyncClient, name)) == parameters(getattr(Client, name))


def test_every_public_method_has_a_twin() -> None:
    def public(cls: type) -> set[str]:
        return {n for n in vars(cls) if not n.startswith("_")} | {
            n for n in ("__enter__", "__exit__", "__aenter__", "__aexit__") if n in vars(cls)
        }

    twins = {"aclose": "close", "__aenter__": "__enter__", "__aexit__": "__exit__"}
    assert {twins.get(n, n) for n in public(AsyncClient)} == public(Client)
