"""Shared fixtures: the fake API served on loopback, and a client pointed at it."""

from __future__ import annotations

import gc
import logging
import warnings
from collections.abc import AsyncIterator, Iterator

import pytest

from r9s_async import AsyncClient, _speedups
from r9s_async.testing import TEST_API_KEY, FakeR9sAPI

# The decoders a test module marked with ``usefixtures("decoder")`` runs with: the pure one
# always, msgspec's too when the speedups extra is installed (``nox -s tests_speedups``).
DECODERS = ["pure", "speedups"] if _speedups.speedups_enabled() else ["pure"]


@pytest.fixture(scope="module", params=DECODERS)
def decoder(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the module's tests once per decoder of ``/usage`` answers."""
    saved = _speedups._decoder
    if request.param == "pure":
        _speedups._decoder = None
    try:
        yield request.param
    finally:
        _speedups._decoder = saved


@pytest.fixture(autouse=True)
def _no_leaks() -> Iterator[None]:
    """Unclosed sessions, sockets and never-awaited coroutines fail the test that made them."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        yield
        gc.collect()


@pytest.fixture(autouse=True, scope="session")
def _freeze_startup_heap() -> None:
    """Move everything alive before the first test out of the collector's sight: the leak
    checks' ``gc.collect()`` then scans only what tests made (several times faster)."""
    gc.freeze()


# What the clients read from the environment: a developer's own settings (a proxy above all,
# which clients now use by default) must not change what the tests see.
_CLIENT_ENV = (
    "R9S_API_KEY",
    "R9S_BASE_URL",
    "R9S_TIMEOUT",
    "R9S_MAX_RETRIES",
    "R9S_LOG",
    *(
        case(name)
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
        for case in (str.upper, str.lower)
    ),
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _CLIENT_ENV:
        monkeypatch.delenv(name, raising=False)


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


@pytest.fixture
def threaded_base_url(api: FakeR9sAPI) -> Iterator[str]:
    """``api`` served from its own thread and loop: the test's loop then holds only its own
    tasks, so a test can assert that nothing of the client is left running."""
    with api.serve_in_thread() as url:
        yield url


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def quiet_asyncio() -> Iterator[None]:
    """Fail the test if asyncio reported anything, in any thread's loop: "Task was destroyed
    but it is pending", "Unclosed client session" and "exception was never retrieved" arrive
    as log records from loop exception handlers, not as warnings."""
    handler = _Collect()
    logger = logging.getLogger("asyncio")
    logger.addHandler(handler)
    try:
        yield
        gc.collect()
    finally:
        logger.removeHandler(handler)
    assert [] == [record.getMessage() for record in handler.records]
