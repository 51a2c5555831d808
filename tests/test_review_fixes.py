"""Regressions found in review: closing under a running call, bad redirects, cut-off days."""

from __future__ import annotations

import asyncio
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from _helpers import eventually, eventually_sync

import r9s_async
from r9s_async import (
    APIError,
    AsyncClient,
    Client,
    ClientClosedError,
    ConfigurationError,
    UsageStore,
)
from r9s_async.testing import TEST_API_KEY, FakeR9sAPI, Fault

DAY = 86_400


@pytest.fixture
def slow_api() -> Iterator[tuple[FakeR9sAPI, str]]:
    api = FakeR9sAPI(latency=5.0)
    with api.serve_in_thread() as url:
        yield api, url


def test_closing_a_client_from_another_thread_ends_a_running_call_with_client_closed(
    slow_api: tuple[FakeR9sAPI, str],
) -> None:
    api, url = slow_api
    client = Client(TEST_API_KEY, base_url=url)
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            client.usage(0, 3 * DAY)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=call)
    worker.start()
    eventually_sync(lambda: api.in_flight > 0)  # the call is under way on the server

    client.close()
    worker.join(timeout=10)

    assert not worker.is_alive()
    assert [ClientClosedError] == [type(exc) for exc in outcome]


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


def test_a_bad_key_is_not_a_local_of_any_frame_in_the_traceback() -> None:
    secret = "sk_mg_" + "f" * 63 + "\n"  # a trailing newline: refused at construction

    with pytest.raises(ConfigurationError) as caught:
        AsyncClient(secret, base_url="http://127.0.0.1:1")

    package = Path(r9s_async.__file__).parent
    frames = [
        frame
        for frame, _ in traceback.walk_tb(caught.value.__traceback__)
        if Path(frame.f_code.co_filename).is_relative_to(package)
    ]
    assert frames  # AsyncClient.__init__ and the key check itself
    shown = [repr(value) for frame in frames for value in frame.f_locals.values()]
    assert not [text for text in shown if secret.strip() in text]


async def test_a_day_whose_records_fall_short_of_its_total_is_fetched_again(
    api: FakeR9sAPI, base_url: str, tmp_path: Path
) -> None:
    start = 20_000 * DAY
    cut_off = {
        "meta": {"code": 200, "message": "success", "request_id": "R" * 32},
        "data": {"records": [], "total_tokens": 1234},
    }
    api.add_fault(Fault.respond(200, cut_off), path="/usage", start_time=start, times=2)
    db = tmp_path / "usage.db"

    async with AsyncClient(TEST_API_KEY, base_url=base_url) as client:
        report = await client.usage(start, start + 3600)
        assert report.consistent is False
        first = await client.backfill(start, start + DAY, db=db, refresh_recent=0)
        second = await client.backfill(start, start + DAY, db=db, refresh_recent=0)

    assert (1, 0) == (first.windows_fetched, first.windows_skipped)
    assert (1, 0) == (second.windows_fetched, second.windows_skipped)
    with UsageStore(db) as store:
        assert len(api.records(start, start + DAY - 1)) == store.count_records()
