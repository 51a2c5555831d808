"""Proxies from the environment, through a real proxy on loopback: Debian's tinyproxy, which
the test starts itself (in the foreground, logging to a file) and stops. Without tinyproxy
the tests fail; ``.ci/run`` installs it."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _helpers import D0, DAY

from r9s_async import AsyncClient, Client
from r9s_async.testing import TEST_API_KEY, FakeR9sAPI

pytestmark = pytest.mark.usefixtures("quiet_asyncio")


class Tinyproxy:
    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log

    def request_lines(self) -> list[str]:
        """What the proxy logged of each request it forwarded: ``GET http://... HTTP/1.1``."""
        lines = self.log.read_text(errors="replace").splitlines()
        return [line.split("): ", 1)[1] for line in lines if "Request (file descriptor" in line]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def tinyproxy(tmp_path: Path) -> Iterator[Tinyproxy]:
    binary = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"
    assert Path(binary).exists(), "tinyproxy is not installed (apt-get install tinyproxy)"
    port, log = free_port(), tmp_path / "tinyproxy.log"
    config = tmp_path / "tinyproxy.conf"
    config.write_text(
        f'Port {port}\nListen 127.0.0.1\nTimeout 30\nLogFile "{log}"\nLogLevel Info\n'
        "MaxClients 20\nAllow 127.0.0.1\n"
    )
    process = subprocess.Popen(
        [binary, "-d", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "tinyproxy did not start listening"
                time.sleep(0.05)
        yield Tinyproxy(f"http://127.0.0.1:{port}", log)
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stderr is not None:
            process.stderr.close()


@pytest.fixture
def proxied_api(
    tinyproxy: Tinyproxy, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[FakeR9sAPI, str]]:
    api = FakeR9sAPI()
    with api.serve_in_thread() as url:
        monkeypatch.setenv("HTTP_PROXY", tinyproxy.url)
        yield api, url


def via_proxy(api: FakeR9sAPI) -> list[bool]:
    """For each request the API got, whether it came through tinyproxy (which adds ``Via``)."""
    return ["tinyproxy" in request.headers.get("Via", "") for request in api.requests]


async def test_http_proxy_from_the_environment_carries_the_requests(
    tinyproxy: Tinyproxy, proxied_api: tuple[FakeR9sAPI, str]
) -> None:
    api, url = proxied_api
    with Client(TEST_API_KEY, base_url=url) as client:
        client.balance()
    async with AsyncClient(TEST_API_KEY, base_url=url) as async_client:
        await async_client.usage(D0, D0 + DAY)

    lines = tinyproxy.request_lines()
    assert [f"GET {url}/balance HTTP/1.1", f"GET {url}/usage?"] == [
        lines[0],
        lines[1].split("start_time")[0],
    ]
    assert [True, True] == via_proxy(api)
    assert [] == [line for line in lines if TEST_API_KEY in line]  # not in the request line


async def test_no_proxy_covering_the_host_sends_directly(
    tinyproxy: Tinyproxy, proxied_api: tuple[FakeR9sAPI, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    api, url = proxied_api
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    with Client(TEST_API_KEY, base_url=url) as client:
        client.balance()
    async with AsyncClient(TEST_API_KEY, base_url=url) as async_client:
        await async_client.balance()

    assert ([], [False, False]) == (tinyproxy.request_lines(), via_proxy(api))


async def test_trust_env_false_sends_directly(
    tinyproxy: Tinyproxy, proxied_api: tuple[FakeR9sAPI, str]
) -> None:
    api, url = proxied_api
    with Client(TEST_API_KEY, base_url=url, trust_env=False) as client:
        client.balance()
    async with AsyncClient(TEST_API_KEY, base_url=url, trust_env=False) as async_client:
        await async_client.balance()

    assert ([], [False, False]) == (tinyproxy.request_lines(), via_proxy(api))
