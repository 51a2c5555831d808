"""Security under faults: the key never shows (logs at DEBUG, exceptions, retry events, CLI
output), TLS is verified (a private CA works only through an injected session), proxies and
netrc only on request, and every request says who sent it."""

from __future__ import annotations

import logging
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import trustme
from _helpers import D0, DAY

import r9s_async
from r9s_async import (
    APIConnectionError,
    AsyncClient,
    AuthenticationError,
    Client,
    R9sError,
    RetryEvent,
    UsageRecord,
)
from r9s_async.testing import FakeR9sAPI, Fault, FaultPlan

pytestmark = pytest.mark.usefixtures("quiet_asyncio")

KEY = "sk_mg_" + "c0ffee42" * 8
SECRET_PART = KEY[6:30]  # catches a key that was cut or partly redacted, too
RETRY_NOW = {"Retry-After": "0"}


def leaks(text: str) -> bool:
    return SECRET_PART in text


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


def chain(error: BaseException) -> Iterator[BaseException]:
    while True:
        yield error
        following = error.__cause__ or error.__context__
        if following is None:
            return
        error = following


# -- the key never shows ----------------------------------------------------------------------


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
    shown += [text for error in chain(caught.value) for text in (str(error), repr(error))]
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


# -- TLS --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def private_ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA, name: str = "127.0.0.1") -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)
    return context


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def test_a_certificate_the_system_does_not_trust_is_a_connection_error(
    private_ca: trustme.CA,
) -> None:
    api = FakeR9sAPI(api_key=KEY)
    async with api.serve(ssl_context=server_context(private_ca)) as url:
        assert url.startswith("https://127.0.0.1:")
        async with AsyncClient(KEY, base_url=url, max_retries=0) as client:
            with pytest.raises(R9sError) as caught:
                await client.balance()

    assert APIConnectionError is type(caught.value)
    assert "certificate" in str(caught.value).lower()
    assert [] == api.requests  # the key never left the client


async def test_a_private_ca_is_trusted_through_an_injected_session(
    private_ca: trustme.CA,
) -> None:
    api = FakeR9sAPI(api_key=KEY)
    connector = aiohttp.TCPConnector(ssl=trusting(private_ca))
    async with (
        api.serve(ssl_context=server_context(private_ca)) as url,
        aiohttp.ClientSession(connector=connector) as session,
        AsyncClient(KEY, base_url=url, session=session) as client,
    ):
        report = await client.usage(D0, D0 + 2 * DAY)

    assert [UsageRecord(**r) for r in api.records_in(D0, D0 + 2 * DAY)] == report.records


async def test_a_trusted_certificate_for_another_name_is_still_refused(
    private_ca: trustme.CA,
) -> None:
    api = FakeR9sAPI(api_key=KEY)
    connector = aiohttp.TCPConnector(ssl=trusting(private_ca))
    async with (
        api.serve(ssl_context=server_context(private_ca, "portal-api.r9s.ai")) as url,
        aiohttp.ClientSession(connector=connector) as session,
        AsyncClient(KEY, base_url=url, session=session, max_retries=0) as client,
    ):
        with pytest.raises(APIConnectionError):
            await client.balance()

    assert [] == api.requests


def test_the_sync_client_refuses_an_untrusted_certificate_too(private_ca: trustme.CA) -> None:
    api = FakeR9sAPI(api_key=KEY)
    with (
        api.serve_in_thread(ssl_context=server_context(private_ca)) as url,
        Client(KEY, base_url=url, max_retries=0) as client,
        pytest.raises(APIConnectionError),
    ):
        client.balance()


# -- who we are, and proxies only on request --------------------------------------------------


async def test_every_request_names_r9s_async_and_its_version(
    api: FakeR9sAPI, client: AsyncClient
) -> None:
    await client.usage(D0, D0 + 2 * DAY)
    await client.balance()

    agents = {r.headers["User-Agent"] for r in api.requests}
    [agent] = agents
    assert agent.startswith(f"r9s_async/{r9s_async.__version__} aiohttp/")


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def proxy_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeR9sAPI, str]]:
    """A base URL nothing listens on, and HTTP_PROXY pointing at a fake that answers for it
    (aiohttp sends a proxy the absolute URL; the fake routes it by path)."""
    proxy = FakeR9sAPI(api_key=KEY)
    with proxy.serve_in_thread() as proxy_url:
        monkeypatch.setenv("HTTP_PROXY", proxy_url.split("/api/")[0])
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        yield proxy, f"http://127.0.0.1:{unused_port()}/api/v1/portal/management"


async def test_proxies_from_the_environment_are_used_by_default(
    proxy_env: tuple[FakeR9sAPI, str],
) -> None:
    proxy, base_url = proxy_env

    async with AsyncClient(KEY, base_url=base_url) as client:
        await client.balance()

    assert ["/balance"] == [r.path for r in proxy.requests]


async def test_trust_env_false_ignores_the_proxies_from_the_environment(
    proxy_env: tuple[FakeR9sAPI, str],
) -> None:
    proxy, base_url = proxy_env

    async with AsyncClient(KEY, base_url=base_url, max_retries=0, trust_env=False) as client:
        with pytest.raises(APIConnectionError):
            await client.balance()

    assert [] == proxy.requests


def test_the_sync_client_uses_the_proxies_from_the_environment_too(
    proxy_env: tuple[FakeR9sAPI, str],
) -> None:
    proxy, base_url = proxy_env

    with Client(KEY, base_url=base_url) as client:
        client.balance()
    with (
        Client(KEY, base_url=base_url, max_retries=0, trust_env=False) as client,
        pytest.raises(APIConnectionError),
    ):
        client.balance()

    assert 1 == len(proxy.requests)


async def test_a_borrowed_session_is_accepted_with_the_default_trust_env() -> None:
    async with aiohttp.ClientSession() as session:
        client = AsyncClient(KEY, session=session)  # no ValueError: trust_env was not asked
        await client.aclose()
        borrowed_still_open = not session.closed

    assert borrowed_still_open


async def test_trust_env_with_an_injected_session_says_the_sessions_own_setting_applies() -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ValueError, match="injected session's own trust_env"):
            AsyncClient(KEY, session=session, trust_env=True)


def test_trust_env_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="trust_env"):
        AsyncClient(KEY, trust_env="yes")  # type: ignore[arg-type]
