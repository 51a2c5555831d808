"""The API key never shows: not in logs, exception text, chained exceptions, the locals of our
own frames in a traceback (error reporters capture those), reprs, retry events or CLI output,
whatever the server does.

The mechanisms have their own specifications beside their modules: ``ApiKey`` and
``AuthHeaders`` in ``test_config.py``, the scrubbing of server messages in ``test_decode.py``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import traceback
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _helpers import D0, DAY

import r9s_async
from r9s_async import (
    AsyncClient,
    AuthenticationError,
    Client,
    ConfigurationError,
    R9sError,
    RetryEvent,
    UsageRecord,
)
from r9s_async.testing import FakeR9sAPI, Fault, FaultPlan

pytestmark = pytest.mark.usefixtures("quiet_asyncio", "decoder")

KEY = "sk_mg_" + "5ec12e7a" * 8
SECRET_PART = KEY[6:30]  # catches a key that was cut or partly redacted, too
PACKAGE = Path(r9s_async.__file__).parent
RETRY_NOW = {"Retry-After": "0"}


def leaks(text: str) -> bool:
    return KEY in text or SECRET_PART in text or ("Bearer " + KEY) in text


def error_page(status: int) -> Fault:
    # A gateway's debug page that echoes the request, key and all, past the first 120 bytes.
    page = f"<html><body>{'x' * 100}<pre>Authorization: Bearer {KEY}</pre></body></html>"
    return Fault.respond(status, page, headers={**RETRY_NOW, "Content-Type": "text/html"})


def echo(status: int, *, code: int | None = None) -> Fault:
    return Fault.error(status, f"API key {KEY} not found", code=code, headers=RETRY_NOW)


def echo_page(status: int) -> Fault:
    page = f"<html><body>{'x' * 200}<pre>Authorization: Bearer {KEY}</pre></body></html>"
    return Fault.respond(status, page, headers={**RETRY_NOW, "Content-Type": "text/html"})


def echo_error(status: int) -> Fault:
    return Fault.error(status, f"key {KEY} is not welcome", headers=RETRY_NOW)


def faulty_api(**settings: Any) -> FakeR9sAPI:
    """Every transient fault on first attempts, stalls aside (the CLI waits 30 s for those)."""
    kinds = [kind for kind in FaultPlan.TRANSIENT if kind != "stall"]
    plan = FaultPlan(dict.fromkeys(kinds, 0.5 / len(kinds)), seed=7, attempts=1)
    return FakeR9sAPI(api_key=KEY, fault_plan=plan, **settings)


def success(data: Any) -> dict[str, Any]:
    return {"meta": {"code": 200, "message": "success", "request_id": "R" * 32}, "data": data}


def record_with(**fields: Any) -> dict[str, Any]:
    record = {"timestamp": D0, "tokens": 1, "model": "m"} | fields
    return success({"records": [record], "total_tokens": 1})


SCENARIOS: dict[str, tuple[list[Fault], type[R9sError]]] = {
    "401-echoes-key": ([echo(401)], r9s_async.AuthenticationError),
    "401-html-echo": ([error_page(401)], r9s_async.AuthenticationError),
    "403-echoes-key": ([echo(403)], r9s_async.PermissionDeniedError),
    "500s-echo-key": ([echo(500)] * 4, r9s_async.ServerError),
    "502-html-echo": ([error_page(502)] * 4, r9s_async.ServerError),
    "200-meta-code-401": ([echo(200, code=401)], r9s_async.AuthenticationError),
    "200-html-echo": ([error_page(200)], r9s_async.MalformedResponseError),
    "key-in-int-field": (
        [Fault.respond(200, record_with(tokens=KEY))],
        r9s_async.MalformedResponseError,
    ),
    "key-as-field-name": (
        [Fault.respond(200, success({KEY: []}))],
        r9s_async.MalformedResponseError,
    ),
    "resets": ([Fault.reset()] * 8, r9s_async.APIConnectionError),
    "cut-short": ([Fault.reset(after_headers=True)] * 4, r9s_async.APIConnectionError),
    "timeouts": ([Fault.stall(30)] * 4, r9s_async.APITimeoutError),
}


def exception_chain(error: BaseException) -> Iterator[BaseException]:
    """The error, its causes and contexts (suppressed or not), and group members."""
    seen: set[int] = set()
    todo = [error]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)


def our_frames(error: BaseException) -> Iterator[types.FrameType]:
    """Frames of r9s_async modules in the tracebacks of the error and its chain."""
    for link in exception_chain(error):
        tb = link.__traceback__
        while tb is not None:
            if Path(tb.tb_frame.f_code.co_filename).is_relative_to(PACKAGE):
                yield tb.tb_frame
            tb = tb.tb_next


def assert_no_leak(error: BaseException, records: list[logging.LogRecord]) -> None:
    for link in exception_chain(error):
        assert not leaks(str(link)), f"{type(link).__name__} text shows the key"
        assert not leaks(repr(link)), f"{type(link).__name__} repr shows the key"
        assert not leaks(repr(vars(link))), f"{type(link).__name__} attributes show the key"
    frames = list(our_frames(error))
    assert frames, "the traceback should pass through r9s_async"
    for frame in frames:
        for name, value in frame.f_locals.items():
            where = f"local {name!r} of {frame.f_code.co_name}()"
            assert not leaks(repr(value)), f"{where} shows the key"
    assert records, "logging at DEBUG should have recorded the attempts"
    for record in records:
        assert not leaks(record.getMessage()), f"log record from {record.name} shows the key"
        assert not leaks(repr(record.args)), f"log args from {record.name} show the key"
        assert not leaks(record.exc_text or ""), f"log traceback from {record.name} shows it"


def debug_everywhere(caplog: pytest.LogCaptureFixture) -> None:
    """Capture every logger at DEBUG, ours explicitly (whatever level it was left at)."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="r9s_async")


def script(api: FakeR9sAPI, faults: list[Fault]) -> None:
    for fault in faults:
        api.add_fault(fault)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_a_failing_async_call_never_shows_the_key(
    caplog: pytest.LogCaptureFixture, scenario: str
) -> None:
    debug_everywhere(caplog)
    faults, error_type = SCENARIOS[scenario]
    api = FakeR9sAPI(api_key=KEY)
    script(api, faults)

    async with (
        api.serve() as base_url,
        AsyncClient(KEY, base_url=base_url, timeout=0.1, max_retries=1) as client,
    ):
        with pytest.raises(error_type) as caught:
            await client.usage(D0, D0 + DAY - 1)

    assert_no_leak(caught.value, caplog.records)


@pytest.mark.parametrize("scenario", ["401-echoes-key", "500s-echo-key", "key-in-int-field"])
async def test_a_failing_window_among_many_never_shows_the_key(
    caplog: pytest.LogCaptureFixture, scenario: str
) -> None:
    debug_everywhere(caplog)
    faults, error_type = SCENARIOS[scenario]
    api = FakeR9sAPI(api_key=KEY, latency=0.01)
    for fault in faults:
        api.add_fault(fault, start_time=D0 + 2 * DAY)

    async with (
        api.serve() as base_url,
        AsyncClient(KEY, base_url=base_url, max_retries=1, max_concurrency=2) as client,
    ):
        with pytest.raises(error_type) as caught:
            await client.usage(D0, D0 + 6 * DAY)

    assert_no_leak(caught.value, caplog.records)


@pytest.mark.parametrize("scenario", ["401-echoes-key", "502-html-echo", "timeouts"])
def test_a_failing_sync_call_never_shows_the_key(
    caplog: pytest.LogCaptureFixture, scenario: str
) -> None:
    debug_everywhere(caplog)
    faults, error_type = SCENARIOS[scenario]
    api = FakeR9sAPI(api_key=KEY)
    script(api, faults)

    with (
        api.serve_in_thread() as base_url,
        Client(KEY, base_url=base_url, timeout=0.1, max_retries=1) as client,
        pytest.raises(error_type) as caught,
    ):
        client.usage(D0, D0 + DAY - 1)

    assert_no_leak(caught.value, caplog.records)


async def test_a_wrong_key_is_not_shown_either(caplog: pytest.LogCaptureFixture) -> None:
    debug_everywhere(caplog)
    api = FakeR9sAPI()  # accepts another key: ours is well formed but unknown

    async with api.serve() as base_url, AsyncClient(KEY, base_url=base_url) as client:
        with pytest.raises(r9s_async.AuthenticationError, match="API key not found") as caught:
            await client.balance()

    assert_no_leak(caught.value, caplog.records)


async def test_a_successful_call_logs_nothing_of_the_key(caplog: pytest.LogCaptureFixture) -> None:
    debug_everywhere(caplog)
    api = FakeR9sAPI(api_key=KEY)

    async with api.serve() as base_url, AsyncClient(KEY, base_url=base_url) as client:
        await client.usage(D0, D0 + 3 * DAY)
        await client.balance()
        shown = [repr(client), str(client)]

    assert caplog.records
    assert not any(leaks(r.getMessage()) or leaks(repr(r.args)) for r in caplog.records)
    assert not any(leaks(text) for text in shown)


def test_the_clients_repr_and_str_never_show_the_key() -> None:
    with Client(KEY, base_url="http://127.0.0.1:1/api") as client:
        shown = [repr(client), str(client), repr(vars(client))]
    async_client = AsyncClient(KEY, base_url="http://127.0.0.1:1/api")
    shown += [repr(async_client), str(async_client), repr(vars(async_client))]

    assert [] == [text for text in shown if leaks(text)]


def test_the_key_comes_from_the_environment_and_is_not_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("R9S_API_KEY", KEY)

    client = AsyncClient(base_url="http://127.0.0.1:1/api")

    assert not leaks(repr(vars(client)))


@pytest.mark.parametrize(
    "base_url",
    ["http://portal-api.r9s.ai/api", "http://10.0.0.1/api", "http://[2001:db8::1]/api"],
)
def test_plain_http_to_a_non_loopback_host_is_refused_at_construction(base_url: str) -> None:
    with pytest.raises(ValueError, match="non-loopback") as caught:
        AsyncClient(KEY, base_url=base_url)
    with pytest.raises(ValueError, match="non-loopback"):
        Client(KEY, base_url=base_url)

    assert not leaks(str(caught.value))


@pytest.mark.parametrize(
    "base_url", ["http://127.0.0.1:8080/api", "http://localhost/api", "http://[::1]:9/api"]
)
def test_plain_http_to_loopback_is_allowed(base_url: str) -> None:
    assert base_url == AsyncClient(KEY, base_url=base_url).base_url


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


def reported_with_locals(error: BaseException) -> str:
    """The traceback as an error reporter that captures locals formats it, from the frame
    that called into the client (the test's own frame holds the key as an argument)."""
    assert error.__traceback__ is not None
    below_the_test = error.__traceback__.tb_next
    return "".join(
        traceback.TracebackException(
            type(error), error, below_the_test, capture_locals=True
        ).format()
    )


CONSTRUCTION_ERRORS = {
    "bad key": {"api_key": KEY + " "},
    "bad base_url": {"base_url": "ftp://127.0.0.1/api"},
    "http to a remote host": {"base_url": "http://portal-api.r9s.ai/api"},
    "bad timeout": {"timeout": 0},
    "bad max_retries": {"max_retries": -1},
    "bad max_concurrency": {"max_concurrency": "8"},
    "bad trust_env": {"trust_env": "yes"},
    "bad on_retry": {"on_retry": 3},
}


@pytest.mark.parametrize("client_type", [AsyncClient, Client])
@pytest.mark.parametrize("settings", CONSTRUCTION_ERRORS.values(), ids=CONSTRUCTION_ERRORS.keys())
def test_a_construction_error_reported_with_its_frames_locals_shows_no_key(
    client_type: type[AsyncClient | Client], settings: dict[str, Any]
) -> None:
    # What error reporters (Sentry and the like) do: format every frame's locals with repr.
    arguments = {"api_key": KEY, "base_url": "http://127.0.0.1:1/api", **settings}
    with pytest.raises((ValueError, TypeError, ConfigurationError)) as caught:
        client_type(**arguments)

    report = reported_with_locals(caught.value)

    assert "in __init__" in report  # the constructor's frame, with its locals, is there
    assert not leaks(report)


def test_a_half_built_client_in_a_traceback_has_a_repr() -> None:
    with pytest.raises(ValueError, match="timeout") as caught:
        Client(KEY, base_url="http://127.0.0.1:1/api", timeout=-1)

    report = reported_with_locals(caught.value)

    assert "self = Client(<not constructed>)" in report
    assert not leaks(report)


def test_a_borrowed_session_refused_by_the_sync_client_shows_no_key_in_the_locals() -> None:
    async def attempt() -> TypeError:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(TypeError, match="AsyncClient") as caught:
                Client(KEY, base_url="http://127.0.0.1:1/api", session=session)
            return caught.value

    error = asyncio.run(attempt())
    report = reported_with_locals(error)

    assert not leaks(report)


def test_client_reprs_show_the_settings_but_never_the_key() -> None:
    async_client = AsyncClient(KEY, base_url="http://127.0.0.1:9/api", timeout=5)
    client = Client(KEY, base_url="http://127.0.0.1:9/api", max_retries=1)
    try:
        texts = [repr(async_client), str(async_client), repr(client), str(client)]
    finally:
        client.close()

    assert all(KEY not in text and KEY[6:] not in text for text in texts)
    assert texts[0].startswith("AsyncClient(base_url='http://127.0.0.1:9/api', timeout=5.0")
    assert texts[2].startswith("Client(base_url='http://127.0.0.1:9/api'")
    assert "max_retries=1" in texts[2]


# -- logs at DEBUG and the CLI, through faults ------------------------------------------------


async def test_a_faulty_run_logged_at_debug_never_shows_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="r9s_async")
    api = faulty_api()
    for day in range(0, 20, 4):
        api.add_fault(echo_error(502), start_time=D0 + day * DAY)
        api.add_fault(echo_page(503), start_time=D0 + day * DAY)
    api.add_fault(echo_error(401), start_time=D0 + 29 * DAY)
    events: list[RetryEvent] = []

    async with (
        api.serve() as url,
        AsyncClient(KEY, base_url=url, timeout=0.3, on_retry=events.append) as client,
    ):
        report = await client.usage(D0, D0 + 20 * DAY)
        with pytest.raises(AuthenticationError) as caught:
            await client.usage(D0 + 20 * DAY, D0 + 30 * DAY)

    shown = [r.getMessage() for r in caplog.records] + [repr(r.args) for r in caplog.records]
    shown += [repr(event) for event in events]
    shown += [text for error in exception_chain(caught.value) for text in (str(error), repr(error))]
    assert [UsageRecord(**r) for r in api.records_in(D0, D0 + 20 * DAY)] == report.records
    assert len(events) >= 10
    assert len(caplog.records) > 30
    assert [] == [text for text in shown if leaks(text)]


def run_cli(*args: str, base_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "R9S_API_KEY": KEY, "PYTHONWARNINGS": "error"}
    env.pop("R9S_BASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "r9s_async", *args, "--base-url", base_url, "--debug"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_cli_at_debug_through_faults_never_shows_the_key() -> None:
    api = faulty_api()
    api.add_fault(echo_page(502), start_time=D0)
    api.add_fault(echo_error(500), start_time=D0 + DAY)
    with api.serve_in_thread() as url:
        done = run_cli("usage", "--start", str(D0), "--end", str(D0 + 10 * DAY), base_url=url)

    assert 0 == done.returncode, done.stderr
    assert "GET /usage" in done.stderr  # --debug logged the attempts
    assert "retrying" in done.stderr
    assert not leaks(done.stdout + done.stderr)


def test_the_cli_failing_at_debug_with_a_traceback_never_shows_the_key() -> None:
    api = faulty_api()
    api.add_fault(echo_error(403), start_time=D0 + 3 * DAY)
    with api.serve_in_thread() as url:
        done = run_cli("usage", "--start", str(D0), "--end", str(D0 + 10 * DAY), base_url=url)

    assert 0 != done.returncode
    assert "Traceback" in done.stderr
    assert "PermissionDeniedError" in done.stderr
    assert not leaks(done.stdout + done.stderr)
