"""The blocking client across process events: Ctrl-C in the middle of a call, and fork()."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _helpers import D0, DAY, eventually_sync

from r9s_async import (
    AsyncClient,
    BackfillProgress,
    Client,
    ClientClosedError,
    RetryEvent,
    UsageStore,
)
from r9s_async.testing import TEST_API_KEY, FakeR9sAPI, Fault

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


def test_a_call_cancelled_before_its_first_step_ends_with_client_closed(
    threaded_api: tuple[FakeR9sAPI, str],
) -> None:
    # The loop is held up while the call is handed over, then the call's task is cancelled
    # before it ever ran: it must still end (not hang), and its coroutine must not leak
    # unawaited (warnings are errors here).
    _, url = threaded_api
    with Client(TEST_API_KEY, base_url=url) as client:
        client.balance()  # the loop thread is running
        runner = client._runner
        assert runner is not None
        hold = threading.Event()
        runner.loop.call_soon_threadsafe(hold.wait, 10)
        worker, outcome = run_in_thread(lambda: client.usage(0, DAY))
        eventually_sync(lambda: len(runner.loop._ready) >= 1)  # type: ignore[attr-defined]

        def cancel_unstarted() -> None:
            for task in list(client._calls):
                task.cancel()

        runner.loop.call_soon_threadsafe(cancel_unstarted)
        hold.set()
        worker.join(timeout=10)

        assert not worker.is_alive()
        assert [ClientClosedError] == [type(exc) for exc in outcome]
        assert {} == client._calls


# -- closing from the client's own hooks (they run on its loop thread) --------------------------

# A long server-ordered pause: a call that is not ended by close() would sit in it for 30 s.
LONG_PAUSE = Fault.error(503, "down", headers={"Retry-After": "30"})


def run_in_thread(call: Callable[[], object]) -> tuple[threading.Thread, list[BaseException]]:
    outcome: list[BaseException] = []

    def target() -> None:
        try:
            call()
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=target)
    worker.start()
    return worker, outcome


def r9s_loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("r9s_async.Client")]


@pytest.mark.usefixtures("quiet_asyncio")
@pytest.mark.parametrize("hook_swallows_errors", [False, True])
def test_close_from_on_retry_ends_the_call_with_client_closed_at_once(
    api: FakeR9sAPI, threaded_base_url: str, hook_swallows_errors: bool
) -> None:
    api.add_fault(LONG_PAUSE, path="/balance")
    raised_in_hook: list[BaseException] = []

    def on_retry(event: RetryEvent) -> None:
        try:
            client.close()
        except Exception as exc:
            raised_in_hook.append(exc)
            if not hook_swallows_errors:
                raise

    client = Client(TEST_API_KEY, base_url=threaded_base_url, on_retry=on_retry)
    worker, outcome = run_in_thread(client.balance)
    worker.join(timeout=5)

    assert not worker.is_alive()
    assert [] == raised_in_hook
    assert [ClientClosedError] == [type(exc) for exc in outcome]
    eventually_sync(lambda: not r9s_loop_threads())  # the loop closed and stopped itself
    assert 1 == len(api.requests)
    with pytest.raises(ClientClosedError):
        client.balance()


@pytest.mark.usefixtures("quiet_asyncio")
def test_close_from_on_retry_ends_the_calls_of_other_threads_too(
    api: FakeR9sAPI, threaded_base_url: str
) -> None:
    api.add_fault(Fault.stall(30), path="/usage")
    api.add_fault(Fault.error(503, "down"), path="/balance")
    client = Client(TEST_API_KEY, base_url=threaded_base_url, on_retry=lambda _: client.close())
    stalled, stalled_outcome = run_in_thread(lambda: client.usage(D0, D0 + DAY))
    eventually_sync(lambda: api.in_flight > 0)
    closing, closing_outcome = run_in_thread(client.balance)  # retried: the hook closes
    stalled.join(timeout=5)
    closing.join(timeout=5)

    assert (False, False) == (stalled.is_alive(), closing.is_alive())
    assert [ClientClosedError] * 2 == [type(e) for e in stalled_outcome + closing_outcome]


@pytest.mark.usefixtures("quiet_asyncio")
def test_close_from_a_progress_callback_ends_the_backfill_with_client_closed(
    tmp_path: Path,
) -> None:
    api = FakeR9sAPI(latency=0.2)
    seen: list[int] = []

    def progress(step: BackfillProgress) -> None:
        seen.append(step.windows_done)
        if step.windows_done >= 1:
            client.close()

    with api.serve_in_thread() as url:
        client = Client(TEST_API_KEY, base_url=url, max_concurrency=1)
        worker, outcome = run_in_thread(
            lambda: client.backfill(0, 30 * DAY, db=tmp_path / "usage.db", progress=progress)
        )
        worker.join(timeout=5)

    assert not worker.is_alive()
    assert [ClientClosedError] == [type(exc) for exc in outcome]
    assert [0, 1] == seen  # nothing reported after the close
    eventually_sync(lambda: not r9s_loop_threads())
    with UsageStore(tmp_path / "usage.db") as store:
        assert 1 == len(store.windows())  # the window stored before the close is kept


@pytest.mark.usefixtures("quiet_asyncio")
async def test_aclose_from_on_retry_ends_the_call_with_client_closed_at_once(
    api: FakeR9sAPI, base_url: str
) -> None:
    api.add_fault(LONG_PAUSE, path="/balance")
    closing: list[asyncio.Task[None]] = []

    def on_retry(event: RetryEvent) -> None:
        closing.append(asyncio.get_running_loop().create_task(client.aclose()))

    client = AsyncClient(TEST_API_KEY, base_url=base_url, on_retry=on_retry)
    async with asyncio.timeout(5):
        with pytest.raises(ClientClosedError, match="closed during the call"):
            await client.balance()
        await asyncio.gather(*closing)

    assert 1 == len(api.requests)
