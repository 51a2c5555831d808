"""The pytest plugin of r9s_async: the ``r9s_fake_api`` and ``r9s_env`` fixtures.

pytest imports this module through the ``pytest11`` entry point before coverage starts, so
it imports nothing of r9s_async until a fixture runs: otherwise every module-level line of
r9s_async would count as unexecuted, in its users' coverage and in ours. That is also why it
is a top-level module (as hypothesis does): importing any ``r9s_async.testing`` submodule
imports the whole ``r9s_async`` package first.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from r9s_async.testing import ServedFakeR9sAPI

__all__ = ["r9s_env", "r9s_fake_api", "r9s_fake_api_options"]

MARKER = "r9s_fake_api"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**options): FakeR9sAPI settings (mode=, end_inclusive=, seed=, ...) for the "
        "r9s_fake_api fixture; closer markers win option by option",
    )


@pytest.fixture
def r9s_fake_api_options() -> Mapping[str, Any]:
    """The :class:`~r9s_async.testing.FakeR9sAPI` keyword arguments for ``r9s_fake_api``:
    none by default. Override it in a conftest for a whole directory, or parametrize it to run
    every test under several server behaviours."""
    return {}


@pytest.fixture
def r9s_fake_api(
    request: pytest.FixtureRequest, r9s_fake_api_options: Mapping[str, Any]
) -> Iterator[ServedFakeR9sAPI]:
    """A fake r9s Manager API served on loopback from its own thread for this test.

    Its settings are ``r9s_fake_api_options`` updated by the ``r9s_fake_api`` markers on the
    module, the class and the test, in that order. A plain (sync) fixture with its own loop,
    so it serves sync tests, and async tests in any pytest-asyncio mode, alike.
    """
    from r9s_async.testing import ServedFakeR9sAPI

    options = dict(r9s_fake_api_options)
    # iter_markers yields the closest first: apply them farthest first so closer ones win.
    for marker in reversed(list(request.node.iter_markers(MARKER))):
        if marker.args:
            pytest.fail(
                f"@pytest.mark.{MARKER} takes keyword arguments only, got {marker.args!r}",
                pytrace=False,
            )
        options.update(marker.kwargs)
    accepted = inspect.signature(ServedFakeR9sAPI).parameters
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        pytest.fail(
            f"{MARKER}: unknown option(s) {', '.join(unknown)}; FakeR9sAPI takes "
            f"{', '.join(accepted)}",
            pytrace=False,
        )
    api = ServedFakeR9sAPI(**options)
    with api.serve_in_thread() as base_url:
        api.base_url = base_url
        yield api


@pytest.fixture
def r9s_env(r9s_fake_api: ServedFakeR9sAPI, monkeypatch: pytest.MonkeyPatch) -> ServedFakeR9sAPI:
    """``r9s_fake_api``, with ``R9S_API_KEY`` and ``R9S_BASE_URL`` pointing at it for this
    test: code that builds ``Client()`` with no arguments, or runs ``r9s-usage``, talks to the
    fake."""
    monkeypatch.setenv("R9S_API_KEY", r9s_fake_api.api_key)
    monkeypatch.setenv("R9S_BASE_URL", r9s_fake_api.base_url)
    return r9s_fake_api
