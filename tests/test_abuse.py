"""Hold under abuse (issue 18): what a misbehaving server may send, and what the client
promises whatever it sends. Real HTTP to the API double on loopback, scripted answers."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _helpers import D0, DAY, expected_records, make_client

from r9s_async import (
    AsyncClient,
    AuthenticationError,
    Client,
    MalformedResponseError,
    RetryEvent,
    ServerError,
    UsageStore,
)
from r9s_async.testing import TEST_API_KEY, FakeR9sAPI, Fault

pytestmark = pytest.mark.usefixtures("quiet_asyncio", "decoder")

ECHOES = ["Bearer " + TEST_API_KEY, TEST_API_KEY]


def envelope(records: list[dict[str, Any]], total: int, request_id: str) -> dict[str, Any]:
    meta = {"code": 200, "message": "success", "request_id": request_id}
    return {"meta": meta, "data": {"records": records, "total_tokens": total}}


def error_envelope(status: int, request_id: str) -> dict[str, Any]:
    return {"meta": {"code": status, "message": "upstream", "request_id": request_id}, "data": None}


def record(tokens: Any, second: int = 0, model: str = "gpt-4o") -> dict[str, Any]:
    return {"timestamp": D0 + second, "tokens": tokens, "model": model}


def cli(*args: str, base_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("R9S_")}
    env.update(R9S_API_KEY=TEST_API_KEY, R9S_BASE_URL=base_url)
    return subprocess.run(
        [sys.executable, "-m", "r9s_async", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


# -- 18.3: a key echoed as the request id -------------------------------------------------------


@pytest.mark.parametrize("echo", ECHOES, ids=["bearer", "bare"])
async def test_a_key_echoed_as_request_id_is_redacted_from_errors_logs_and_retry_events(
    api: FakeR9sAPI, base_url: str, echo: str, caplog: pytest.LogCaptureFixture
) -> None:
    api.add_fault(Fault.respond(503, error_envelope(503, echo)), times=9)
    events: list[RetryEvent] = []
    caplog.set_level(logging.DEBUG, logger="r9s_async")

    async with make_client(base_url, max_retries=1, on_retry=events.append) as client:
        with pytest.raises(ServerError) as caught:
            await client.usage(D0, D0 + DAY)

    shown = [str(caught.value), repr(caught.value), str(caught.value.request_id)]
    shown += [r.getMessage() for r in caplog.records]
    shown += [repr(e) for e in events]
    assert 2 == sum(r.name == "r9s_async" and r.levelno == logging.DEBUG for r in caplog.records)
    assert [] == [text for text in shown if TEST_API_KEY in text]
    assert "[redacted]" in str(caught.value.request_id)


@pytest.mark.parametrize("echo", ECHOES, ids=["bearer", "bare"])
async def test_a_key_echoed_in_a_success_is_redacted_from_the_report_and_balance(
    api: FakeR9sAPI, base_url: str, echo: str, caplog: pytest.LogCaptureFixture
) -> None:
    api.add_fault(Fault.respond(200, envelope([record(5, model=echo)], 5, echo)), path="/usage")
    balance = {
        "meta": {"code": 0, "message": "", "request_id": echo},
        "data": {
            "balance": 1.5,
            "currency_code": echo,
            "coupon_balance": 0,
            "credit_limit": 0,
            "total_coupon_amount": 0,
        },
    }
    api.add_fault(Fault.respond(200, balance), path="/balance")
    caplog.set_level(logging.DEBUG, logger="r9s_async")

    async with make_client(base_url) as client:
        report = await client.usage(D0, D0 + DAY)
        money = await client.balance()

    shown = [repr(report), repr(report.request_ids), repr(money), repr(report.records)]
    shown += [r.getMessage() for r in caplog.records]
    assert [] == [text for text in shown if TEST_API_KEY in text]
    assert (5, 1) == (report.total_tokens, len(report.records))


@pytest.mark.parametrize("echo", ECHOES, ids=["bearer", "bare"])
def test_a_key_echoed_as_request_id_stays_out_of_the_clis_stderr(
    api: FakeR9sAPI, threaded_base_url: str, echo: str
) -> None:
    api.add_fault(Fault.respond(400, error_envelope(400, echo)), times=9)

    done = cli("--debug", "usage", "--start", "2024-10-04", "--end", "2024-10-05",
               base_url=threaded_base_url)  # fmt: skip

    assert 1 == done.returncode
    assert "request id" in done.stderr
    assert TEST_API_KEY not in done.stderr + done.stdout


# -- 18.4: token counts must fit 63 bits -------------------------------------------------------

TOO_BIG = [
    ([record(2**63)], 2**63, "records[0].tokens"),
    ([record(1), record(2**70, 1)], 2**70 + 1, "records[1].tokens"),
    ([record(-1)], 0, "records[0].tokens"),
    ([record(1)], 2**63, "total_tokens"),
    ([record(1)], -5, "total_tokens"),
    ([record(2**62), record(2**62, 1)], 2**63, "records"),
]


@pytest.mark.parametrize(("records", "total", "where"), TOO_BIG)
async def test_token_counts_outside_63_bits_are_a_malformed_answer_with_a_path(
    api: FakeR9sAPI, base_url: str, records: list[dict[str, Any]], total: int, where: str
) -> None:
    api.add_fault(Fault.respond(200, envelope(records, total, "R" * 32)), path="/usage", times=9)

    async with make_client(base_url) as client:
        with pytest.raises(MalformedResponseError) as caught:
            await client.usage(D0, D0 + DAY)
        with pytest.raises(MalformedResponseError) as iterated:
            async for _ in client.iter_usage(D0, D0 + 3 * DAY):
                pass

    assert f"expected 0 <= int < 2**63 @ $.data.{where}" in caught.value.detail
    assert "R" * 32 == caught.value.request_id
    assert caught.value.detail == iterated.value.detail
    # Sent once per call: a malformed answer is not retried.
    assert 2 == sum(r.query["start_time"] == str(D0) for r in api.requests)


async def test_the_largest_63_bit_count_is_accepted(api: FakeR9sAPI, base_url: str) -> None:
    biggest = 2**63 - 1
    api.add_fault(Fault.respond(200, envelope([record(biggest)], biggest, "R" * 32)))

    async with make_client(base_url) as client:
        report = await client.usage(D0, D0 + DAY)

    assert (biggest, True) == (report.total_tokens, report.consistent)


async def test_a_backfill_refuses_such_an_answer_and_stores_nothing_of_that_day(
    api: FakeR9sAPI, base_url: str, tmp_path: Path
) -> None:
    db = tmp_path / "usage.db"
    bad = envelope([record(2**70, 0)], 2**70, "R" * 32)
    api.add_fault(Fault.respond(200, bad), path="/usage", start_time=D0 + DAY, times=9)

    async with make_client(base_url, max_concurrency=1) as client:
        with pytest.raises(MalformedResponseError, match=r"records\[0\]\.tokens"):
            await client.backfill(D0, D0 + 3 * DAY, db=db)

    with UsageStore(db) as store:
        assert [D0] == [w.start for w in store.windows()]


def test_the_cli_says_the_answer_is_malformed_and_that_running_again_cannot_help(
    api: FakeR9sAPI, threaded_base_url: str, tmp_path: Path
) -> None:
    bad = envelope([record(2**70, 0)], 2**70, "R" * 32)
    api.add_fault(Fault.respond(200, bad), path="/usage", times=99)
    db = tmp_path / "usage.db"

    usage = cli("usage", "--start", "2024-10-04", "--end", "2024-10-05",
                base_url=threaded_base_url)  # fmt: skip
    backfill = cli("backfill", "--start", "2024-10-04", "--end", "2024-10-06", "--db", str(db),
                   base_url=threaded_base_url)  # fmt: skip

    for done in (usage, backfill):
        last = done.stderr.splitlines()[-1]
        assert 1 == done.returncode
        assert "expected 0 <= int < 2**63 @ $.data.records[0].tokens" in last
        assert "(request id RRRRRRRRRRRRRRRRRRRRRRRRRRRRRRRR)" in last
        assert "running again would meet the same answer: report it" in last
        assert "resume" not in last
        assert "Traceback" not in done.stderr


def test_the_sync_client_refuses_it_too(api: FakeR9sAPI, threaded_base_url: str) -> None:
    api.add_fault(Fault.respond(200, envelope([record(2**64)], 2**64, "R" * 32)))

    bounded = r"2\*\*63 @ \$\.data\.records\[0\]"
    with (
        Client(TEST_API_KEY, base_url=threaded_base_url) as client,
        pytest.raises(MalformedResponseError, match=bounded),
    ):
        client.usage(D0, D0 + DAY)


# -- 18.7: borrowed sessions cannot change how answers are classified ---------------------------


async def _raise_any(response: aiohttp.ClientResponse) -> None:
    response.raise_for_status()


SESSIONS: dict[str, dict[str, Any]] = {
    "raise_for_status": {"raise_for_status": True},
    "coroutine_raise_for_status": {"raise_for_status": _raise_any},
    "short_timeout": {"timeout": aiohttp.ClientTimeout(total=0.05, sock_read=0.05)},
    "base_url": {"base_url": "http://127.0.0.1:9/elsewhere/"},
    "headers": {"headers": {"Authorization": "Bearer sk_mg_" + "f" * 64, "Accept": "text/html"}},
    "auto_decompress_and_tiny_buffer": {"auto_decompress": True, "read_bufsize": 1},
}


@pytest.fixture(params=list(SESSIONS))
async def borrowed(request: pytest.FixtureRequest) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(**SESSIONS[request.param]) as session:
        yield session


async def test_a_401_through_any_borrowed_session_is_sent_once_with_the_servers_words(
    api: FakeR9sAPI, base_url: str, borrowed: aiohttp.ClientSession
) -> None:
    api.latency = 0.1  # longer than the short session timeout: ours applies, not the session's
    api.add_fault(Fault.error(401, "API key not found"), times=5)

    async with make_client(base_url, session=borrowed) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.usage(D0, D0 + DAY)

    assert 1 == len(api.requests)
    assert ("API key not found", "F" * 32) == (caught.value.message, caught.value.request_id)


@pytest.mark.parametrize("status", [429, 503])
async def test_429_and_503_through_any_borrowed_session_are_retried_with_their_status(
    api: FakeR9sAPI, base_url: str, borrowed: aiohttp.ClientSession, status: int
) -> None:
    api.latency = 0.1
    api.add_fault(Fault.error(status, "busy", headers={"Retry-After": "0"}), times=2)
    events: list[RetryEvent] = []

    async with make_client(base_url, session=borrowed, on_retry=events.append) as client:
        report = await client.usage(D0, D0 + DAY)

    assert [status, status] == [e.status for e in events]
    assert [True] * 3 == [r.authorized for r in api.requests]
    assert ["application/json"] * 3 == [r.headers["Accept"] for r in api.requests]
    assert expected_records(api, D0, D0 + DAY) == report.records


async def test_a_borrowed_session_with_its_own_auth_is_refused_at_construction() -> None:
    with pytest.warns(DeprecationWarning, match="deprecated"):
        session = aiohttp.ClientSession(auth=aiohttp.BasicAuth("user", "password"))
    async with session:
        with pytest.raises(ValueError, match="auth"):
            AsyncClient(TEST_API_KEY, session=session)
