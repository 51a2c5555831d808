"""Cancelling a call at any moment (while connecting, while reading a body, while waiting out
a backoff) and running out its ``deadline`` leave no task running, no connection open and no
warning behind."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from _helpers import D0, DAY, eventually, make_client
from hypothesis import given, settings
from hypothesis import strategies as st

from r9s_async import APITimeoutError, AsyncClient, Client, UsageRecord
from r9s_async.testing import TEST_API_KEY, FakeR9sAPI, Fault

pytestmark = pytest.mark.usefixtures("quiet_asyncio")


def only_this_task_left() -> bool:
    # A server in this loop may still be accepting a connection the client already dropped.
    accepting = {
        task
        for task in asyncio.all_tasks()
        if task.get_coro().__qualname__.endswith("_accept_connection2")  # type: ignore[union-attr]
    }
    return {asyncio.current_task()} == asyncio.all_tasks() - accepting


class SilentServer:
    """A TCP server that holds every connection open and says ``preamble`` (after the request
    head, if there is one) then nothing, so a client stays in one phase (the TLS handshake,
    or the body) for as long as we like. It counts the connections open on its side, and
    runs no task of its own: whatever task is left after a call was cancelled is the
    client's."""

    def __init__(self, preamble: bytes) -> None:
        self.preamble = preamble
        self.accepted = 0
        self._transports: set[asyncio.Transport] = set()
        self._all_closed = asyncio.Event()

    @property
    def open(self) -> int:
        return len(self._transports)

    def _connection(self) -> asyncio.Protocol:
        server = self

        class Connection(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                assert isinstance(transport, asyncio.Transport)
                self.transport = transport
                self.head = b""
                server.accepted += 1
                server._transports.add(transport)
                server._all_closed.clear()

            def data_received(self, data: bytes) -> None:
                if server.preamble and b"\r\n\r\n" not in self.head:
                    self.head += data
                    if b"\r\n\r\n" in self.head:
                        self.transport.write(server.preamble)

            def connection_lost(self, exc: Exception | None) -> None:
                server._transports.discard(self.transport)
                if not server._transports:
                    server._all_closed.set()

        return Connection()

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[int]:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(self._connection, "127.0.0.1", 0)
        try:
            async with server:
                yield server.sockets[0].getsockname()[1]
        finally:
            # Whatever is still connected is dropped, so the harness leaks no socket itself.
            for transport in list(self._transports):
                transport.abort()
            if self._transports:
                await self._all_closed.wait()


# A body that promises 1000 bytes and sends 30: the client waits in the middle of reading it.
HALF_A_BODY = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    b'{"meta": {"code": 200, "message'
)


async def cancel_after(
    delay: float, call: Awaitable[Any], *, after: Callable[[], bool] = lambda: True
) -> None:
    """Run ``call`` as a task, cancel it ``delay`` seconds after ``after()`` holds, and check
    it is gone."""
    task = asyncio.ensure_future(call)
    await eventually(after)
    await asyncio.sleep(delay)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert only_this_task_left()


def no_warnings_after_collection() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gc.collect()


PHASES = ["connect", "body", "backoff"]


@pytest.mark.parametrize("phase", PHASES)
@settings(max_examples=8, deadline=None)
@given(delay=st.floats(min_value=0.0, max_value=0.15))
def test_cancelling_at_a_random_moment_leaves_nothing_behind(phase: str, delay: float) -> None:
    asyncio.run(cancel_during(phase, delay))
    no_warnings_after_collection()


async def cancel_during(phase: str, delay: float) -> None:
    if phase == "backoff":
        api = FakeR9sAPI()
        # Answered at once, then the client sleeps a minute before its retry.
        api.add_fault(Fault.error(503, "busy", headers={"Retry-After": "60"}), times=100)
        with api.serve_in_thread() as url:
            async with make_client(url, max_concurrency=4) as client:
                # Every window answered, so every task is waiting out its backoff.
                backing_off = lambda: len(api.requests) == 4 and api.in_flight == 0  # noqa: E731
                await cancel_after(delay, client.usage(D0, D0 + 4 * DAY), after=backing_off)
                assert 4 == api.open_connections  # idle in the pool, as they should be
            await eventually(lambda: api.open_connections == 0)
        return
    # "connect": the server never answers the TLS handshake; "body": it stops mid-body.
    server = SilentServer(b"" if phase == "connect" else HALF_A_BODY)
    async with server.serve() as port:
        scheme = "https" if phase == "connect" else "http"
        url = f"{scheme}://127.0.0.1:{port}/api"
        async with make_client(url, max_concurrency=4, timeout=60) as client:
            await cancel_after(delay, client.usage(D0, D0 + 4 * DAY))
            # A connection cut in the middle of a request is never put back in the pool.
            await eventually(lambda: server.open == 0)


async def test_the_phases_above_are_reached_before_a_cancel_lands() -> None:
    """The scenarios really hold the client in each phase (else the property proves little)."""
    connect, body = SilentServer(b""), SilentServer(HALF_A_BODY)
    async with connect.serve() as tls_port, body.serve() as http_port:
        async with make_client(
            f"https://127.0.0.1:{tls_port}/api", timeout=0.3, max_retries=0
        ) as client:
            with pytest.raises(APITimeoutError):
                await client.balance()
        async with make_client(
            f"http://127.0.0.1:{http_port}/api", timeout=0.3, max_retries=0
        ) as client:
            with pytest.raises(APITimeoutError):
                await client.balance()

    assert (1, 1) == (connect.accepted, body.accepted)


# -- deadline -----------------------------------------------------------------------------------


async def test_a_call_past_its_deadline_raises_api_timeout_error_and_cancels_everything(
    api: FakeR9sAPI, threaded_base_url: str
) -> None:
    api.add_fault(Fault.stall(30), start_time=D0 + 2 * DAY)

    async with make_client(threaded_base_url, timeout=60, max_concurrency=4) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(APITimeoutError, match=r"deadline of 0\.3s"):
            await client.usage(D0, D0 + 6 * DAY, deadline=0.3)
        assert only_this_task_left()
        assert loop.time() - started < 30
        await eventually(lambda: api.in_flight == 0)


async def test_a_deadline_covers_retries_and_their_waits(
    api: FakeR9sAPI, threaded_base_url: str
) -> None:
    api.add_fault(Fault.error(503, "busy", headers={"Retry-After": "60"}))

    async with make_client(threaded_base_url) as client:
        with pytest.raises(APITimeoutError, match="deadline"):
            await client.usage(D0, D0 + DAY, deadline=0.2)
        assert only_this_task_left()

    assert 1 == len(api.requests)


async def test_a_call_within_its_deadline_answers_as_usual(api: FakeR9sAPI, base_url: str) -> None:
    async with make_client(base_url) as client:
        report = await client.usage(D0, D0 + 3 * DAY, deadline=30)

    assert [UsageRecord(**r) for r in api.records_in(D0, D0 + 3 * DAY)] == report.records


async def test_iter_usage_yields_what_arrived_in_time_then_raises_at_the_deadline(
    api: FakeR9sAPI, threaded_base_url: str
) -> None:
    api.add_fault(Fault.stall(30), start_time=D0 + DAY)

    seen = []
    async with make_client(threaded_base_url, timeout=60, max_concurrency=1) as client:
        windows = client.iter_usage(D0, D0 + 3 * DAY, deadline=0.3)

        async def consume() -> None:
            async for window in windows:
                seen.append(window.start)

        with pytest.raises(APITimeoutError):
            await consume()
        assert only_this_task_left()

    assert [D0] == seen


def test_the_sync_client_keeps_a_deadline_too(api: FakeR9sAPI, threaded_base_url: str) -> None:
    api.add_fault(Fault.stall(30), times=10)

    with Client(TEST_API_KEY, base_url=threaded_base_url, timeout=60) as client:
        with pytest.raises(APITimeoutError, match="deadline"):
            client.usage(D0, D0 + 2 * DAY, deadline=0.2)
        with pytest.raises(APITimeoutError, match="deadline"):
            list(client.iter_usage(D0, D0 + 2 * DAY, deadline=0.2))


@pytest.mark.parametrize(
    ("deadline", "error"),
    [(0, ValueError), (-1, ValueError), (float("nan"), ValueError), ("1", TypeError)],
)
async def test_a_bad_deadline_is_refused_before_any_request(
    api: FakeR9sAPI, client: AsyncClient, deadline: object, error: type[Exception]
) -> None:
    with pytest.raises(error, match="deadline"):
        await client.usage(D0, D0 + DAY, deadline=deadline)  # type: ignore[arg-type]
    with pytest.raises(error, match="deadline"):
        client.iter_usage(D0, D0 + DAY, deadline=deadline)  # type: ignore[arg-type]

    assert [] == api.requests
