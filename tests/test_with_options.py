"""with_options: clients with other settings that share one connection pool, pace and loop."""

from __future__ import annotations

import threading

import pytest
from _helpers import D0, DAY, expected_records

from r9s_async import APITimeoutError, AsyncClient, Client, ClientClosedError, ServerError
from r9s_async.testing import TEST_API_KEY, FakeR9sAPI, Fault

pytestmark = pytest.mark.usefixtures("quiet_asyncio")


def loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("r9s_async.Client")]


async def test_a_derived_async_client_shares_the_connection(
    api: FakeR9sAPI, client: AsyncClient
) -> None:
    derived = client.with_options(timeout=5, max_retries=1)

    await client.balance()
    report = await derived.usage(D0, D0 + DAY)
    await client.balance()

    assert expected_records(api, D0, D0 + DAY) == report.records
    assert (3, 1) == (len(api.requests), api.connections)


async def test_a_derived_client_has_its_own_settings_and_keeps_the_others(
    api: FakeR9sAPI, client: AsyncClient
) -> None:
    api.add_fault(Fault.error(503, "down"), path="/balance")
    with pytest.raises(ServerError):
        await client.with_options(max_retries=0).balance()  # not retried
    api.add_fault(Fault.stall(5), path="/balance")
    with pytest.raises(APITimeoutError, match=r"0\.2s"):
        await client.with_options(timeout=0.2, max_retries=0).balance()

    assert "timeout=30.0, max_retries=3" in repr(client)
    assert "timeout=0.2, max_retries=3" in repr(client.with_options(timeout=0.2))
    assert 2 == len(api.requests)


async def test_closing_a_derived_client_leaves_the_original_open(
    api: FakeR9sAPI, client: AsyncClient
) -> None:
    derived = client.with_options(max_retries=0)
    await derived.balance()
    await derived.aclose()

    with pytest.raises(ClientClosedError):
        await derived.balance()
    await client.balance()  # same connection, still open
    assert 1 == api.connections


async def test_closing_the_original_closes_the_derived_clients(base_url: str) -> None:
    original = AsyncClient(TEST_API_KEY, base_url=base_url)
    derived = original.with_options(timeout=5)
    await derived.balance()
    await original.aclose()

    with pytest.raises(ClientClosedError):
        await derived.balance()
    with pytest.raises(ClientClosedError):
        original.with_options(timeout=5)


def test_a_derived_sync_client_shares_the_loop_thread_and_the_connection(
    api: FakeR9sAPI, threaded_base_url: str
) -> None:
    before = loop_threads()
    with Client(TEST_API_KEY, base_url=threaded_base_url) as client:
        derived = client.with_options(timeout=5, max_retries=0)
        client.balance()
        derived.balance()
        threads = loop_threads()
        derived.close()
        client.balance()  # the original is still open after the derived one closed
    after = loop_threads()

    assert (1, 3) == (api.connections, len(api.requests))
    assert (len(before) + 1, before) == (len(threads), after)
    with pytest.raises(ClientClosedError):
        derived.balance()


def test_closing_the_original_sync_client_closes_the_derived_ones(
    threaded_base_url: str,
) -> None:
    client = Client(TEST_API_KEY, base_url=threaded_base_url)
    derived = client.with_options(max_retries=1)
    derived.balance()
    client.close()

    with pytest.raises(ClientClosedError):
        derived.balance()
    with pytest.raises(ClientClosedError):
        client.with_options(max_retries=1)


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"timeout": 0}, ValueError),
        ({"max_retries": -1}, ValueError),
        ({"timeout": "5"}, TypeError),
    ],
)
def test_bad_options_are_refused(settings: dict[str, object], error: type[Exception]) -> None:
    client = Client(TEST_API_KEY, base_url="http://127.0.0.1:1/api")
    with pytest.raises(error):
        client.with_options(**settings)  # type: ignore[arg-type]
    with pytest.raises(error):
        client._async.with_options(**settings)  # type: ignore[arg-type]
