"""Small waiting helpers shared by the tests (the fake API exposes counters, not events)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def eventually(condition: Callable[[], bool], *, within: float = 5.0) -> None:
    """Poll until ``condition()`` holds; fail if it does not within ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"still not true after {within}s")
        await asyncio.sleep(0.005)


def eventually_sync(condition: Callable[[], bool], *, within: float = 5.0) -> None:
    """:func:`eventually` for threads without an event loop."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {within}s")
        time.sleep(0.005)
