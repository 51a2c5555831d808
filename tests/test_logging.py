"""What the client tells the ``r9s_async`` logger: one DEBUG line per attempt, INFO for a
retry, WARNING for an answer that does not add up. Nothing is printed."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from _helpers import D0, DAY

from r9s_async import AsyncClient, ServerError, UsageRecord
from r9s_async.testing import TEST_API_KEY, FakeR9sAPI, Fault

pytestmark = pytest.mark.usefixtures("quiet_asyncio")

ATTEMPT = re.compile(
    r"GET (?P<path>/\w+) window=(?P<window>\[\d+, \d+\)|-) status=(?P<status>\d+|-) "
    r"elapsed=\d+\.\d{3}s attempt=(?P<attempt>\d+) request_id=(?P<request_id>\S+)"
)


def attempts(caplog: pytest.LogCaptureFixture) -> list[dict[str, str]]:
    """The fields of every DEBUG attempt line, in order."""
    lines = [r for r in caplog.records if r.name == "r9s_async" and r.levelno == logging.DEBUG]
    fields = []
    for record in lines:
        match = ATTEMPT.fullmatch(record.getMessage())
        assert match, f"not an attempt line: {record.getMessage()!r}"
        fields.append(match.groupdict())
    return fields


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "r9s_async" and r.levelno == level]


def envelope(records: list[dict[str, Any]], total: int, request_id: str) -> dict[str, Any]:
    meta = {"code": 200, "message": "success", "request_id": request_id}
    return {"meta": meta, "data": {"records": records, "total_tokens": total}}


@pytest.fixture(autouse=True)
def _debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="r9s_async")


async def test_each_attempt_logs_one_debug_line_with_everything_about_it(
    client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    report = await client.usage(D0, D0 + 3 * DAY)

    lines = sorted(attempts(caplog), key=lambda line: line["window"])
    assert [
        {"path": "/usage", "window": f"[{a}, {a + DAY})", "status": "200", "attempt": "1"}
        for a in (D0, D0 + DAY, D0 + 2 * DAY)
    ] == [{k: line[k] for k in ("path", "window", "status", "attempt")} for line in lines]
    assert sorted(report.request_ids) == sorted(line["request_id"] for line in lines)


async def test_every_attempt_of_a_retried_window_is_logged(
    api: FakeR9sAPI, client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    api.add_fault(Fault.error(503, "busy", headers={"Retry-After": "0"}))

    report = await client.usage(D0, D0 + DAY)

    assert [("503", "1", "F" * 32), ("200", "2", report.request_ids[0])] == [
        (line["status"], line["attempt"], line["request_id"]) for line in attempts(caplog)
    ]


async def test_an_attempt_without_an_answer_logs_no_status_and_no_request_id(
    api: FakeR9sAPI, base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    api.add_fault(Fault.stall(30))

    async with AsyncClient(TEST_API_KEY, base_url=base_url, timeout=0.1, max_retries=1) as client:
        await client.usage(D0, D0 + DAY)

    timed_out, answered = attempts(caplog)
    assert ("-", "1", "-") == (timed_out["status"], timed_out["attempt"], timed_out["request_id"])
    assert ("200", "2") == (answered["status"], answered["attempt"])


async def test_a_balance_attempt_is_logged_with_its_path(
    client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    balance = await client.balance()

    assert [{"path": "/balance", "window": "-", "status": "200", "attempt": "1"}] == [
        {k: line[k] for k in ("path", "window", "status", "attempt")} for line in attempts(caplog)
    ]
    assert [balance.request_id] == [line["request_id"] for line in attempts(caplog)]


async def test_a_final_failure_is_logged_as_an_attempt_too(
    api: FakeR9sAPI, base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    api.add_fault(Fault.error(500, "boom"))

    async with AsyncClient(TEST_API_KEY, base_url=base_url, max_retries=0) as client:
        with pytest.raises(ServerError):
            await client.balance()

    assert [("500", "1", "F" * 32)] == [
        (line["status"], line["attempt"], line["request_id"]) for line in attempts(caplog)
    ]


async def test_a_retry_is_announced_at_info_with_its_wait_and_attempt_number(
    api: FakeR9sAPI, client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    api.add_fault(Fault.error(429, "slow down", headers={"Retry-After": "0"}))

    await client.usage(D0, D0 + DAY)

    assert [
        f"retrying /usage [{D0}, {D0 + DAY}) in 0.00s (attempt 2 of 4): "
        f"HTTP 429: slow down (request id {'F' * 32})"
    ] == messages(caplog, logging.INFO)


async def test_a_declared_total_that_disagrees_with_the_records_is_a_warning_with_the_request_id(
    api: FakeR9sAPI, client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    records = [
        {"timestamp": D0 + 5, "tokens": 1, "model": "m"},
        {"timestamp": D0 + 9, "tokens": 2, "model": "m"},
    ]
    api.add_fault(Fault.respond(200, envelope(records, 999, "M" * 32)))

    report = await client.usage(D0, D0 + 10)

    [warning] = messages(caplog, logging.WARNING)
    assert "M" * 32 in warning
    assert "999" in warning
    assert 3 == report.total_tokens  # the records are the data; the total is their sum


async def test_answers_that_add_up_log_no_warning(
    client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    await client.usage(D0, D0 + 5 * DAY)

    assert [] == messages(caplog, logging.WARNING)


async def test_records_outside_the_asked_range_are_dropped_with_a_warning(
    api: FakeR9sAPI, client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    records = [
        {"timestamp": D0 - 5, "tokens": 4, "model": "m"},
        {"timestamp": D0 + 5, "tokens": 1, "model": "m"},
    ]
    api.add_fault(Fault.respond(200, envelope(records, 5, "S" * 32)))

    report = await client.usage(D0, D0 + 10)

    [warning] = messages(caplog, logging.WARNING)
    assert "S" * 32 in warning
    assert ([UsageRecord(D0 + 5, 1, "m")], 1) == (report.records, report.total_tokens)


async def test_nothing_is_printed(
    api: FakeR9sAPI, client: AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    api.add_fault(Fault.error(503, "busy", headers={"Retry-After": "0"}))

    await client.usage(D0, D0 + 2 * DAY)
    await client.balance()

    assert ("", "") == capsys.readouterr()


# -- R9S_LOG: logging to stderr without configuring logging ---------------------------------------


@pytest.fixture
def r9s_logger() -> Any:
    """The ``r9s_async`` logger, its handlers and level put back after the test."""
    logger = logging.getLogger("r9s_async")
    handlers, level = list(logger.handlers), logger.level
    yield logger
    logger.handlers[:] = handlers
    logger.setLevel(level)


async def test_r9s_log_debug_prints_each_attempt_to_stderr_without_the_key(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    r9s_logger: logging.Logger,
    api: FakeR9sAPI,
    base_url: str,
) -> None:
    monkeypatch.setenv("R9S_LOG", "debug")
    api.add_fault(Fault.error(503, f"down, key {TEST_API_KEY}"), path="/balance")
    for _ in range(3):  # one handler however many clients are made
        AsyncClient(TEST_API_KEY, base_url=base_url)
    async with AsyncClient(TEST_API_KEY, base_url=base_url) as client:
        await client.balance()

    lines = capsys.readouterr().err.splitlines()
    assert 3 == len(lines)  # the 503, the retry (INFO), the 200
    assert re.fullmatch(r"\S+ \S+ DEBUG r9s_async: GET /balance .* status=503 .*", lines[0])
    assert " INFO r9s_async: retrying /balance" in lines[1]
    assert "status=200" in lines[2]
    assert not [line for line in lines if TEST_API_KEY in line]


async def test_r9s_log_info_prints_retries_only(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    r9s_logger: logging.Logger,
    api: FakeR9sAPI,
    base_url: str,
) -> None:
    monkeypatch.setenv("R9S_LOG", "INFO")
    api.add_fault(Fault.error(503, "down"), path="/balance")
    async with AsyncClient(TEST_API_KEY, base_url=base_url) as client:
        await client.balance()

    [line] = capsys.readouterr().err.splitlines()
    assert " INFO r9s_async: retrying /balance" in line


async def test_without_r9s_log_nothing_is_printed(
    capsys: pytest.CaptureFixture[str], r9s_logger: logging.Logger, client: AsyncClient
) -> None:
    await client.balance()

    assert ("", "") == tuple(capsys.readouterr())
    assert handlers_before_the_test_were_kept(r9s_logger)


def handlers_before_the_test_were_kept(logger: logging.Logger) -> bool:
    return not [h for h in logger.handlers if type(h).__name__ == "_StderrHandler"]
