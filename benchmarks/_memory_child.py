"""One memory run in a fresh process: ``python -m benchmarks._memory_child CONTENDER URL DAYS``.

Prints one JSON line: wall and CPU seconds, records, tokens, the RSS once the imports are done
and the peak RSS of the process, in MiB.

The peak is ``VmHWM`` from ``/proc/self/status``: the high-water mark of this process's own
memory map. ``ru_maxrss`` would do on a fresh interpreter, except that Linux carries into it the
RSS of the parent whose memory the child borrowed before ``exec`` (``vfork``/``posix_spawn``),
so every child would report at least the benchmark runner's own size.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from typing import Any

import aiohttp

import r9s_async

# The key comes from R9S_API_KEY, set by the parent: importing r9s_async.testing for it would
# load aiohttp.web too, and count against the client.
API_KEY = os.environ["R9S_API_KEY"]
DAY = 86_400
START = 1_735_689_600


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # the kernel writes kB
    # Not Linux: ru_maxrss (KiB on Linux, bytes on macOS) is the best there is.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def client_iter_usage(url: str, days: int) -> tuple[int, int]:
    records = tokens = 0
    async with r9s_async.AsyncClient(API_KEY, base_url=url) as client:
        async for window in client.iter_usage(START, START + days * DAY):
            records += len(window.records)
            tokens += window.total_tokens
    return records, tokens


async def client_usage(url: str, days: int) -> tuple[int, int]:
    """``usage()``: every record held at once, in one report."""
    async with r9s_async.AsyncClient(API_KEY, base_url=url) as client:
        report = await client.usage(START, START + days * DAY)
    return len(report.records), report.total_tokens


async def aiohttp_hold(url: str, days: int) -> tuple[int, int]:
    """A hand-written loop that keeps every record, as the dicts ``json.loads`` made."""
    held: list[dict[str, Any]] = []
    tokens = 0
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        for day in range(days):
            start = START + day * DAY
            params = {"start_time": str(start), "end_time": str(start + DAY)}
            async with session.get(f"{url}/usage", params=params) as response:
                data: dict[str, Any] = json.loads(await response.read())["data"]
            held += data["records"]
            tokens += data["total_tokens"]
    return len(held), tokens


async def client_balance(url: str, days: int) -> tuple[int, int]:
    """The floor: the same imports and one request, nothing held."""
    async with r9s_async.AsyncClient(API_KEY, base_url=url) as client:
        await client.balance()
    return 0, 0


async def aiohttp_loop(url: str, days: int) -> tuple[int, int]:
    """A hand-written sequential loop that parses each day and keeps only counts."""
    records = tokens = 0
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        for day in range(days):
            start = START + day * DAY
            params = {"start_time": str(start), "end_time": str(start + DAY)}
            async with session.get(f"{url}/usage", params=params) as response:
                data: dict[str, Any] = json.loads(await response.read())["data"]
            records += len(data["records"])
            tokens += data["total_tokens"]
    return records, tokens


CONTENDERS = {
    "client": client_iter_usage,
    "usage": client_usage,
    "hold": aiohttp_hold,
    "floor": client_balance,
    "aiohttp": aiohttp_loop,
}


def main() -> None:
    name, url, days = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if os.environ.get("R9S_BENCH_DECODER") == "pure":
        from r9s_async import _speedups

        _speedups._decoder = None  # the pure decoder, as without the speedups extra
    after_imports = _status_mib("VmRSS")
    wall, cpu = time.perf_counter(), time.process_time()
    records, tokens = asyncio.run(CONTENDERS[name](url, days))
    result = {
        "seconds": time.perf_counter() - wall,
        "cpu_seconds": time.process_time() - cpu,
        "records": records,
        "tokens": tokens,
        "rss_after_imports_mib": after_imports,
        "peak_rss_mib": _status_mib("VmHWM"),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
