"""Security: TLS is verified (a private CA works only through an injected session), proxies and
netrc only on request, and every request says who sent it. That the key never shows is
specified in ``test_secrets.py``."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import aiohttp
import pytest
import trustme
from _helpers import D0, DAY

import r9s_async
from r9s_async import (
    APIConnectionError,
    AsyncClient,
    Client,
    R9sError,
    UsageRecord,
)
from r9s_async.testing import FakeR9sAPI

pytestmark = pytest.mark.usefixtures("quiet_asyncio")

KEY = "sk_mg_" + "c0ffee42" * 8


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
