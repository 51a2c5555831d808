"""The pytest plugin (``_r9s_async_pytestplugin``), run as users run it: pytest inside pytest.

Each test writes a user's test file into a fresh directory and runs pytest on it with
``pytester``; the inner runs are strict (``--strict-markers``, warnings are errors) as ours are.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap

import pytest

import _r9s_async_pytestplugin

pytest_plugins = ["pytester"]

# Hypothesis is left out of the inner runs: its plugin alone costs ~1 s per run.
INI = """\
[pytest]
addopts = -p no:cacheprovider -p no:hypothesispytest --strict-markers --strict-config
filterwarnings = error
asyncio_default_fixture_loop_scope = function
"""


@pytest.fixture
def user_project(pytester: pytest.Pytester) -> pytest.Pytester:
    """An empty project of a user's, with strict pytest settings."""
    pytester.makeini(INI)
    return pytester


def write_tests(pytester: pytest.Pytester, source: str) -> None:
    pytester.makepyfile(test_user=textwrap.dedent(source))


def test_the_plugin_is_declared_as_a_pytest11_entry_point() -> None:
    [entry_point] = [
        ep for ep in importlib.metadata.entry_points(group="pytest11") if ep.name == "r9s_async"
    ]

    assert "_r9s_async_pytestplugin" == entry_point.value
    assert _r9s_async_pytestplugin is entry_point.load()


def test_loading_the_plugin_imports_nothing_of_r9s_async() -> None:
    # pytest loads plugins before coverage starts: anything imported then counts as unrun.
    code = (
        "import sys, _r9s_async_pytestplugin; "
        "print(sorted(name for name in sys.modules if name.startswith('r9s_async')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert "[]\n" == result.stdout


def test_installing_the_package_is_enough_to_get_the_fixture(
    user_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fresh interpreter and no -p option: only the entry point can have loaded the plugin.
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    write_tests(
        user_project,
        """
        from datetime import date

        import r9s_async

        def test_usage_comes_from_the_fake(r9s_fake_api):
            with r9s_async.Client(r9s_fake_api.api_key, base_url=r9s_fake_api.base_url) as client:
                report = client.usage(date(2025, 1, 1), date(2025, 1, 3))

            expected = r9s_fake_api.records_in(report.start, report.end)
            assert [r9s_async.UsageRecord(**record) for record in expected] == report.records
            assert ["/usage", "/usage"] == [request.path for request in r9s_fake_api.requests]
        """,
    )

    result = user_project.runpytest_subprocess()

    result.assert_outcomes(passed=1)


def test_turning_the_plugin_off_by_its_entry_point_name_removes_the_fixture(
    user_project: pytest.Pytester,
) -> None:
    write_tests(user_project, "def test_needs_it(r9s_fake_api):\n    pass\n")

    result = user_project.runpytest("-p", "no:r9s_async")

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'r9s_fake_api' not found*"])


def test_the_fixture_serves_async_tests_in_strict_mode(user_project: pytest.Pytester) -> None:
    write_tests(
        user_project,
        """
        import pytest

        import r9s_async

        @pytest.mark.asyncio
        async def test_balance(r9s_fake_api):
            async with r9s_async.AsyncClient(
                r9s_fake_api.api_key, base_url=r9s_fake_api.base_url
            ) as client:
                balance = await client.balance()

            assert "470.010481" == str(balance.balance)
        """,
    )

    result = user_project.runpytest("--asyncio-mode=strict")

    result.assert_outcomes(passed=1)


def test_the_fixture_serves_async_tests_in_auto_mode(user_project: pytest.Pytester) -> None:
    write_tests(
        user_project,
        """
        import r9s_async

        async def test_balance(r9s_fake_api):
            async with r9s_async.AsyncClient(
                r9s_fake_api.api_key, base_url=r9s_fake_api.base_url
            ) as client:
                balance = await client.balance()

            assert "470.010481" == str(balance.balance)
        """,
    )

    result = user_project.runpytest("--asyncio-mode=auto")

    result.assert_outcomes(passed=1)


def test_markers_set_the_options_and_closer_markers_win(user_project: pytest.Pytester) -> None:
    write_tests(
        user_project,
        """
        from datetime import date

        import pytest

        import r9s_async
        from r9s_async.testing import FakeR9sAPI

        pytestmark = pytest.mark.r9s_fake_api(mode="events", seed=3)

        def test_the_module_marker_applies(r9s_fake_api):
            assert ("events", 3, True) == (
                r9s_fake_api.mode, r9s_fake_api.seed, r9s_fake_api.end_inclusive
            )

        @pytest.mark.r9s_fake_api(end_inclusive=False, seed=7)
        def test_the_test_marker_adds_and_overrides(r9s_fake_api):
            with r9s_async.Client(r9s_fake_api.api_key, base_url=r9s_fake_api.base_url) as client:
                report = client.usage(date(2025, 1, 1), date(2025, 1, 3))

            same = FakeR9sAPI(mode="events", end_inclusive=False, seed=7)
            expected = same.records_in(report.start, report.end)
            assert [r9s_async.UsageRecord(**record) for record in expected] == report.records
            assert ("events", 7, False) == (
                r9s_fake_api.mode, r9s_fake_api.seed, r9s_fake_api.end_inclusive
            )
        """,
    )

    result = user_project.runpytest()

    result.assert_outcomes(passed=2)


def test_an_overridden_options_fixture_sets_defaults_under_the_markers(
    user_project: pytest.Pytester,
) -> None:
    user_project.makeconftest(
        """
        import pytest

        @pytest.fixture(params=[True, False], ids=["end-inclusive", "end-exclusive"])
        def r9s_fake_api_options(request):
            return {"mode": "events", "end_inclusive": request.param}
        """
    )
    write_tests(
        user_project,
        """
        import pytest

        seen = []

        def test_runs_under_both_behaviours(r9s_fake_api):
            seen.append((r9s_fake_api.mode, r9s_fake_api.end_inclusive))

        @pytest.mark.r9s_fake_api(mode="daily")
        def test_a_marker_wins_over_the_fixture(r9s_fake_api):
            seen.append((r9s_fake_api.mode, r9s_fake_api.end_inclusive))

        def test_every_combination_was_served():
            assert [
                ("events", True), ("events", False), ("daily", True), ("daily", False)
            ] == seen
        """,
    )

    result = user_project.runpytest("-p", "no:randomly")

    result.assert_outcomes(passed=5)


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ('r9s_fake_api(mood="events")', "*r9s_fake_api: unknown option(s) mood; FakeR9sAPI takes*"),
        ('r9s_fake_api("events")', "*r9s_fake_api takes keyword arguments only, got ('events',)*"),
        ('r9s_fake_api(mode="hourly")', "*mode must be 'daily' or 'events', not 'hourly'*"),
    ],
    ids=["unknown-option", "positional", "bad-value"],
)
def test_a_bad_option_is_an_error_naming_it(
    user_project: pytest.Pytester, marker: str, message: str
) -> None:
    write_tests(
        user_project,
        f"""
        import pytest

        @pytest.mark.{marker}
        def test_it(r9s_fake_api):
            pass
        """,
    )

    result = user_project.runpytest()

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([message])


def test_a_fault_scripted_through_the_fixture_reaches_the_test_as_a_typed_error(
    user_project: pytest.Pytester,
) -> None:
    write_tests(
        user_project,
        """
        import pytest

        import r9s_async
        from r9s_async.testing import Fault

        def test_overloaded(r9s_fake_api):
            r9s_fake_api.add_fault(Fault.error(503, "overloaded"), path="/balance")
            with r9s_async.Client(
                r9s_fake_api.api_key, base_url=r9s_fake_api.base_url, max_retries=0
            ) as client:
                with pytest.raises(r9s_async.ServerError) as caught:
                    client.balance()

            assert (503, "overloaded", "F" * 32) == (
                caught.value.status, caught.value.message, caught.value.request_id
            )
            assert ["respond"] == [request.fault for request in r9s_fake_api.requests]
        """,
    )

    result = user_project.runpytest()

    result.assert_outcomes(passed=1)


def test_the_server_is_stopped_after_the_test(user_project: pytest.Pytester) -> None:
    write_tests(
        user_project,
        """
        import socket
        from urllib.parse import urlsplit

        import pytest

        import r9s_async

        addresses = []

        def test_serving(r9s_fake_api):
            url = urlsplit(r9s_fake_api.base_url)
            addresses.append((url.hostname, url.port))
            with r9s_async.Client(r9s_fake_api.api_key, base_url=r9s_fake_api.base_url) as client:
                client.balance()

        def test_stopped_afterwards():
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(addresses[0], timeout=5)
        """,
    )

    result = user_project.runpytest("-p", "no:randomly")

    result.assert_outcomes(passed=2)


def test_a_failing_user_test_is_reported_as_a_failure_and_still_torn_down(
    user_project: pytest.Pytester,
) -> None:
    write_tests(
        user_project,
        """
        import r9s_async

        def test_wrong_expectation(r9s_fake_api):
            with r9s_async.Client(r9s_fake_api.api_key, base_url=r9s_fake_api.base_url) as client:
                balance = client.balance()
            assert "0" == str(balance.balance)
        """,
    )

    result = user_project.runpytest()

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E * AssertionError: assert '0' == '470.010481'"])


def test_r9s_env_points_client_and_cli_at_the_fake_for_one_test(
    user_project: pytest.Pytester,
) -> None:
    write_tests(
        user_project,
        """
        import os
        import subprocess
        import sys

        import r9s_async

        def test_a_client_without_arguments(r9s_env):
            with r9s_async.Client() as client:
                balance = client.balance()

            assert "470.010481" == str(balance.balance)
            assert 1 == len(r9s_env.requests)

        def test_the_cli(r9s_env):
            result = subprocess.run(
                [sys.executable, "-m", "r9s_async", "balance"],
                capture_output=True, text=True, check=True,
            )

            assert "470.010481 USD" in result.stdout
            assert ["/balance"] == [request.path for request in r9s_env.requests]

        def test_the_environment_is_restored_afterwards():
            assert {} == {
                name: os.environ[name]
                for name in ("R9S_API_KEY", "R9S_BASE_URL")
                if name in os.environ
            }
        """,
    )

    result = user_project.runpytest("-p", "no:randomly")

    result.assert_outcomes(passed=3)
