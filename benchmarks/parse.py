"""2. Parse-bound backfill: 100 windows x ~10,000 records, no latency."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp

import r9s_async
from r9s_async import _speedups
from r9s_async.testing import TEST_API_KEY

from ._harness import (
    DAY,
    START,
    FakeServer,
    Goal,
    Options,
    Report,
    Row,
    Run,
    repeat,
    seconds,
    table,
    timed,
)

CONCURRENCY = 8
EVENTS_PER_DAY = 9_091  # the fake adds ~10% identical twins: ~10,000 records a day
HEADERS = {"Authorization": f"Bearer {TEST_API_KEY}"}


async def _plain_dicts(base_url: str, days: int, concurrency: int) -> tuple[int, int]:
    slots = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(headers=HEADERS) as session:

        async def one(day: int) -> list[dict[str, Any]]:
            start = START + day * DAY
            params = {"start_time": str(start), "end_time": str(start + DAY)}
            async with slots, session.get(f"{base_url}/usage", params=params) as response:
                records: list[dict[str, Any]] = json.loads(await response.read())["data"]["records"]
                return records

        windows = await asyncio.gather(*(one(day) for day in range(days)))
    records = [record for window in windows for record in window]
    return len(records), sum(record["tokens"] for record in records)


def plain_dicts(base_url: str, days: int, concurrency: int) -> Run:
    """The peer: hand-written aiohttp + ``json.loads``, returning plain dicts (not checked)."""
    return timed(lambda: asyncio.run(_plain_dicts(base_url, days, concurrency)))


async def _client_usage(base_url: str, days: int) -> tuple[int, int]:
    async with r9s_async.AsyncClient(
        TEST_API_KEY, base_url=base_url, max_concurrency=CONCURRENCY
    ) as client:
        report = await client.usage(START, START + days * DAY)
    return len(report.records), report.total_tokens


async def _client_iter_usage(base_url: str, days: int) -> tuple[int, int]:
    records = tokens = 0
    async with r9s_async.AsyncClient(
        TEST_API_KEY, base_url=base_url, max_concurrency=CONCURRENCY
    ) as client:
        async for window in client.iter_usage(START, START + days * DAY):
            records += len(window.records)
            tokens += window.total_tokens
    return records, tokens


async def _usage_report(base_url: str, days: int) -> r9s_async.UsageReport:
    async with r9s_async.AsyncClient(
        TEST_API_KEY, base_url=base_url, max_concurrency=CONCURRENCY
    ) as client:
        return await client.usage(START, START + days * DAY)


def obvious_program(base_url: str, days: int) -> tuple[int, int]:
    """What users write: the main coroutine returns the report, ``asyncio.run`` hands it
    over (in the main thread, where ``asyncio.run`` installs its SIGINT handler)."""
    report = asyncio.run(_usage_report(base_url, days))
    return len(report.records), report.total_tokens


def decoder(name: str, work: Callable[[], Run]) -> Callable[[], Run]:
    """``work`` with the msgspec decoder (``speedups``) or the pure one (``pure``)."""
    fast = _speedups._decoder

    def measure() -> Run:
        _speedups._decoder = fast if name == "speedups" else None
        try:
            return work()
        finally:
            _speedups._decoder = fast

    return measure


def client_sync(base_url: str, days: int) -> Run:
    def work() -> tuple[int, int]:
        with r9s_async.Client(
            TEST_API_KEY, base_url=base_url, max_concurrency=CONCURRENCY
        ) as client:
            report = client.usage(START, START + days * DAY)
        return len(report.records), report.total_tokens

    return timed(work)


PEER = "aiohttp + json.loads, plain dicts, semaphore 8"
USAGE = "r9s_async AsyncClient.usage"
ITER = "r9s_async AsyncClient.iter_usage"
OBVIOUS = "r9s_async `report = asyncio.run(main())`"


def _spread(row: Row) -> float:
    times = [r.seconds for r in row.runs]
    return max(times) - min(times)


def run(options: Options) -> Report:
    days = 20 if options.quick else 100
    times = options.repeat or (2 if options.quick else 5)
    with FakeServer(
        options, mode="events", events_per_day=EVENTS_PER_DAY, cache_bodies=True
    ) as server:
        url = server.base_url
        paths = ["speedups", "pure"] if _speedups.speedups_enabled() else ["pure"]
        contenders: dict[str, Callable[[], Run]] = {
            PEER: lambda: plain_dicts(url, days, CONCURRENCY),
            "aiohttp + json.loads, plain dicts, sequential": lambda: plain_dicts(url, days, 1),
        }
        for path in paths:
            contenders[f"{USAGE} ({path})"] = decoder(
                path, lambda: timed(lambda: asyncio.run(_client_usage(url, days)))
            )
            contenders[f"{ITER} ({path})"] = decoder(
                path, lambda: timed(lambda: asyncio.run(_client_iter_usage(url, days)))
            )
            contenders[f"{OBVIOUS} ({path})"] = decoder(
                path, lambda: timed(lambda: obvious_program(url, days))
            )
        contenders[f"r9s_async Client.usage (sync facade, {paths[0]})"] = lambda: client_sync(
            url, days
        )
        # Warm-up, untimed: the server generates and caches every answer once.
        plain_dicts(url, days, CONCURRENCY)
        asyncio.run(_client_usage(url, days))
        server_cpu = server.cpu_seconds()
        rows = repeat(contenders, times)
        server_cpu = (server.cpu_seconds() - server_cpu) / (times * len(contenders))
    peer = rows[0]
    by_name = {row.name: row for row in rows}
    best = paths[0]
    client = by_name[f"{USAGE} ({best})"]
    pure = by_name[f"{USAGE} (pure)"]
    ratios = {
        name: row.median / peer.median for name, row in by_name.items() if name.startswith("r9s")
    }
    body = [
        [
            row.name,
            seconds(row.median),
            seconds(row.best),
            f"{row.median / peer.median:.2f}x",
            f"{_spread(row) / row.median:.0%}",
            f"{row.median / row.records * 1e6:.2f}",
            f"{row.cpu_median / row.records * 1e6:.2f}",
            f"{row.records:,}",
        ]
        for row in rows
    ]
    return Report(
        title="2. Parse-bound backfill",
        setup=(
            f"{days} day windows x ~10,000 records (events mode, twins and boundary seconds), no "
            f"latency, answers cached by the server after a warm-up (server CPU per run: "
            f"{server_cpu * 1000:.0f} ms), median of {times}. *us/record* is wall time; *CPU "
            "us/record* is the client process's CPU. The peer returns unchecked dicts; this "
            "client returns validated attrs records, owned by their window, in time order (the "
            "peer's extra records are the next day's midnight records, counted twice). "
            "*(speedups)* rows decode with msgspec (the `speedups` extra), *(pure)* rows "
            "without it, in the same process; *spread* is (worst - best) / median."
        ),
        table=table(
            [
                "contender",
                "median",
                "best",
                "x peer",
                "spread",
                "us/record",
                "CPU us/record",
                "records",
            ],
            body,
        ),
        goals=[
            Goal(
                f"parse-bound: AsyncClient.usage ({best}) / peer", ratios[f"{USAGE} ({best})"], 1.0
            ),
            Goal(
                f"parse-bound: AsyncClient.iter_usage ({best}) / peer",
                ratios[f"{ITER} ({best})"],
                0.75,
            ),
            Goal(
                f"parse-bound: `report = asyncio.run(main())` ({best}) / peer",
                ratios[f"{OBVIOUS} ({best})"],
                1.0,
            ),
            Goal("parse-bound: AsyncClient.usage (pure) / peer", pure.median / peer.median, 2.0),
        ],
        notes=[
            f"parse-bound, CPU time of the client process: AsyncClient.usage ({best}) / peer: "
            f"{client.cpu_median / peer.cpu_median:.2f}x; "
            f"{client.median / client.records * 1e6:.2f} us per record (wall)"
        ],
    )
