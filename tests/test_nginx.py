"""A real web server in front: the API double behind nginx with gzip on and short keep-alive
limits (``keepalive_requests 2; keepalive_timeout 1s``). Sequential and concurrent fetches,
with pauses longer than the keep-alive timeout between them, all succeed and equal the
answer the double gives directly.

nginx is the Debian package (``apt-get install nginx``, done by ``.ci/run``); the test starts
it on loopback with its configuration, pid and logs in a temporary directory. A missing
``/usr/sbin/nginx`` fails the test: it is part of CI, not optional."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from _helpers import D0, DAY

from r9s_async import AsyncClient, Client, UsageRecord
from r9s_async.testing import TEST_API_KEY, FakeR9sAPI

pytestmark = pytest.mark.usefixtures("quiet_asyncio")

NGINX = Path("/usr/sbin/nginx")
KEEPALIVE_TIMEOUT = 1.0
PAUSE = KEEPALIVE_TIMEOUT + 0.5  # long enough for nginx to have closed idle connections

CONFIG = """
worker_processes 1;
{user}
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;

    gzip on;
    gzip_types application/json;
    gzip_min_length 0;
    gzip_proxied any;

    keepalive_requests 2;
    keepalive_timeout {keepalive}s;

    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
        }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def wait_until_listening(port: int, nginx: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if nginx.poll() is not None:
            raise AssertionError(f"nginx exited with {nginx.returncode}: {log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except OSError:
            time.sleep(0.02)
        else:
            return
    raise AssertionError(f"nginx did not listen on {port} within 10 s: {log.read_text()}")


@pytest.fixture(scope="module")
def api() -> FakeR9sAPI:
    return FakeR9sAPI(mode="events", events_per_day=48)


@pytest.fixture(scope="module")
def nginx_url(api: FakeR9sAPI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of nginx proxying to ``api``, which is served from a thread."""
    assert NGINX.exists(), f"{NGINX} is missing: install the nginx package (.ci/run does)"
    tmp = tmp_path_factory.mktemp("nginx")
    port = free_port()
    with api.serve_in_thread() as direct:
        upstream = int(direct.split(":")[2].split("/")[0])
        # As root, nginx would hand its workers to "nobody", who cannot use this directory.
        user = "user root;" if os.geteuid() == 0 else ""
        config = CONFIG.format(
            user=user, tmp=tmp, port=port, upstream=upstream, keepalive=int(KEEPALIVE_TIMEOUT)
        )
        (tmp / "nginx.conf").write_text(config)
        log = tmp / "error.log"
        command = [str(NGINX), "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(log)]
        nginx = subprocess.Popen([*command, "-g", "daemon off;"])
        try:
            wait_until_listening(port, nginx, log)
            yield direct.replace(f":{upstream}/", f":{port}/")
        finally:
            nginx.terminate()
            nginx.wait(timeout=10)


def direct_answer(api: FakeR9sAPI, start: int, end: int) -> list[UsageRecord]:
    return [UsageRecord(**r) for r in api.records_in(start, end)]


async def test_nginx_in_front_compresses_the_answers(nginx_url: str) -> None:
    """The premise of the tests below: answers arrive gzipped, and keep-alive is short."""
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        headers = {"Authorization": "Bearer " + TEST_API_KEY, "Accept-Encoding": "gzip"}
        query = f"?start_time={D0}&end_time={D0 + DAY}"
        async with session.get(nginx_url + "/usage" + query, headers=headers) as response:
            assert 200 == response.status
            assert "gzip" == response.headers.get("Content-Encoding")
            assert "nginx" in response.headers.get("Server", "")


async def test_sequential_fetches_with_pauses_past_the_keep_alive_all_succeed(
    api: FakeR9sAPI, nginx_url: str
) -> None:
    async with AsyncClient(TEST_API_KEY, base_url=nginx_url, max_concurrency=1) as client:
        first = await client.usage(D0, D0 + 5 * DAY)  # five requests: two or three connections
        await asyncio.sleep(PAUSE)  # the point: idle connections outlive the keep-alive
        second = await client.usage(D0 + 5 * DAY, D0 + 8 * DAY)
        await asyncio.sleep(PAUSE)  # the point: idle connections outlive the keep-alive
        balance = await client.balance()

    assert direct_answer(api, D0, D0 + 5 * DAY) == first.records
    assert direct_answer(api, D0 + 5 * DAY, D0 + 8 * DAY) == second.records
    assert "USD" == balance.currency_code


async def test_concurrent_fetches_with_pauses_past_the_keep_alive_all_succeed(
    api: FakeR9sAPI, nginx_url: str
) -> None:
    async with AsyncClient(TEST_API_KEY, base_url=nginx_url, max_concurrency=8) as client:
        first = await client.usage(D0, D0 + 40 * DAY)
        await asyncio.sleep(PAUSE)  # the point: idle connections outlive the keep-alive
        both = await asyncio.gather(
            client.usage(D0 + 40 * DAY, D0 + 80 * DAY), client.usage(D0, D0 + 3 * DAY)
        )

    assert direct_answer(api, D0, D0 + 40 * DAY) == first.records
    assert direct_answer(api, D0 + 40 * DAY, D0 + 80 * DAY) == both[0].records
    assert direct_answer(api, D0, D0 + 3 * DAY) == both[1].records


def test_the_sync_client_through_nginx_with_pauses_succeeds(
    api: FakeR9sAPI, nginx_url: str
) -> None:
    with Client(TEST_API_KEY, base_url=nginx_url, max_concurrency=4) as client:
        first = client.usage(D0, D0 + 10 * DAY)
        time.sleep(PAUSE)  # the point: idle connections outlive the keep-alive
        second = client.usage(D0 + 10 * DAY, D0 + 20 * DAY)

    assert direct_answer(api, D0, D0 + 10 * DAY) == first.records
    assert direct_answer(api, D0 + 10 * DAY, D0 + 20 * DAY) == second.records
