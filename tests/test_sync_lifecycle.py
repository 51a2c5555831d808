"""The blocking client across process events: Ctrl-C in the middle of a call, and fork()."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator

import pytest
from _helpers import DAY, eventually_sync

from r9s_async import Client, ClientClosedError
from r9s_async.testing import TEST_API_KEY, FakeR9sAPI

SLOW_CALL = textwrap.dedent(
    """
    import threading
    import time
    import r9s_async
    from r9s_async.testing import TEST_API_KEY, FakeR9sAPI

    api = FakeR9sAPI(latency=30.0)

    def announce_requests_in_flight() -> None:
        while not api.in_flight:
            time.sleep(0.01)
        print("in flight", flush=True)

    with api.serve_in_thread() as url, r9s_async.Client(TEST_API_KEY, base_url=url) as client:
        threading.Thread(target=announce_requests_in_flight, daemon=True).start()
        try:
            client.usage(0, 10 * 86_400)
        except KeyboardInterrupt:
            print("interrupted; in flight:", api.in_flight, flush=True)
    print("closed", flush=True)
    """
)


def test_ctrl_c_during_a_blocking_call_cancels_the_requests_and_exits_cleanly() -> None:
    child = subprocess.Popen(
        [sys.executable, "-X", "dev", "-c", SLOW_CALL],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert "in flight\n" == child.stdout.readline()

    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=30)

    assert 0 == child.returncode, err
    assert "closed" in out
    assert "interrupted" in out
    assert "" == err  # no "Task was destroyed", no unclosed session, no traceback


@pytest.fixture
def threaded_api() -> Iterator[tuple[FakeR9sAPI, str]]:
    api = FakeR9sAPI()
    with api.serve_in_thread() as url:
        yield api, url


def test_a_forked_child_gets_its_own_loop_and_connections(
    threaded_api: tuple[FakeR9sAPI, str],
) -> None:
    _, url = threaded_api
    with Client(TEST_API_KEY, base_url=url) as client:
        expected = client.usage(0, 3 * 86_400).total_tokens
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: must not hang on the parent's (absent) loop thread
            code = 1
            try:
                code = 0 if client.usage(0, 3 * 86_400).total_tokens == expected else 3
            finally:
                os.write(write, bytes([code]))
                os._exit(code)
        os.close(write)
        status = os.read(read, 1)
        os.close(read)
        os.waitpid(pid, 0)
        assert client.usage(0, 3 * 86_400).total_tokens == expected  # the parent still works

    assert b"\x00" == status


FORK_AND_EXIT = textwrap.dedent(
    """
    import os, sys, time
    import r9s_async
    from r9s_async.testing import TEST_API_KEY, FakeR9sAPI

    api = FakeR9sAPI()
    with api.serve_in_thread() as url:
        client = r9s_async.Client(TEST_API_KEY, base_url=url)
        client.usage(0, 86_400)
        pid = os.fork()
        if pid == 0:
            sys.exit(0)  # a normal exit: atexit handlers and finalizers run in the child
        started = time.monotonic()
        os.waitpid(pid, 0)
        print(f"child exited after {time.monotonic() - started:.1f}s", flush=True)
        client.close()
    """
)


def test_a_forked_child_that_exits_does_not_wait_for_the_parents_loop_thread() -> None:
    result = subprocess.run(
        [sys.executable, "-c", FORK_AND_EXIT],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert 0 == result.returncode, result.stderr
    assert "child exited after 0." in result.stdout
    assert "Traceback" not in result.stderr


@pytest.fixture
def slow_api() -> Iterator[tuple[FakeR9sAPI, str]]:
    api = FakeR9sAPI(latency=5.0)
    with api.serve_in_thread() as url:
        yield api, url


def test_closing_a_client_from_another_thread_ends_a_running_call_with_client_closed(
    slow_api: tuple[FakeR9sAPI, str],
) -> None:
    api, url = slow_api
    client = Client(TEST_API_KEY, base_url=url)
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            client.usage(0, 3 * DAY)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=call)
    worker.start()
    eventually_sync(lambda: api.in_flight > 0)  # the call is under way on the server

    client.close()
    worker.join(timeout=10)

    assert not worker.is_alive()
    assert [ClientClosedError] == [type(exc) for exc in outcome]
