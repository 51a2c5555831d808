"""Shared fixtures: the fake API served on loopback, and a client pointed at it."""

from __future__ import annotations

import gc
import warnings
from collections.abc import AsyncIterator, Iterator

import pytest

from r9s_async import AsyncClient
from r9s_async.testing import TEST_API_KEY, FakeR9sAPI


@pytest.fixture(autouse=True)
def _no_leaks() -> Iterator[None]:
    """Unclosed sessions, sockets and never-awaited coroutines fail the test that made them."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        yield
        gc.collect()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("R9S_API_KEY", raising=False)
    monkeypatch.delenv("R9S_BASE_URL", raising=False)


@pytest.fixture
def api() -> FakeR9sAPI:
    return FakeR9sAPI()


@pytest.fixture
async def base_url(api: FakeR9sAPI) -> AsyncIterator[str]:
    async with api.serve() as url:
        yield url


@pytest.fixture
async def client(base_url: str) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(TEST_API_KEY, base_url=base_url) as client:
        yield client
