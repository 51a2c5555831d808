"""1. Latency-bound backfill: 120 days from a server that takes 30 ms + 20 ms per day asked."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

import aiohttp
import requests

import r9s_async
from r9s_async.testing import TEST_API_KEY

from ._harness import (
    DAY,
    START,
    FakeServer,
    Goal,
    Options,
    Report,
    Run,
    repeat,
    seconds,
    table,
    timed,
)

DAYS = 120
CONCURRENCY = 8
LATENCY = 0.030
LATENCY_PER_DAY = 0.020
END = START + DAYS * DAY
HEADERS = {"Authorization": f"Bearer {TEST_API_KEY}", "Content-Type": "application/json"}


def _day_ranges() -> list[tuple[int, int]]:
    return [(START + d * DAY, START + (d + 1) * DAY) for d in range(DAYS)]


def requests_whole_range(base_url: str) -> Run:
    """The seed page's own example: one ``requests.get`` over the whole range."""

    def work() -> tuple[int, int]:
        params = {"start_time": START, "end_time": END}
        response = requests.get(f"{base_url}/usage", params=params, headers=HEADERS)
        data = response.json()["data"]
        return len(data["records"]), data["total_tokens"]

    return timed(work)


def requests_session_days(base_url: str) -> Run:
    """What a ten-minute script does: one ``requests.Session``, one call per day."""

    def work() -> tuple[int, int]:
        records: list[dict[str, object]] = []
        tokens = 0
        with requests.Session() as session:
            for start, end in _day_ranges():
                params = {"start_time": start, "end_time": end}
                response = session.get(f"{base_url}/usage", params=params, headers=HEADERS)
                data = response.json()["data"]
                records.extend(data["records"])
                tokens += data["total_tokens"]
        return len(records), tokens

    return timed(work)


async def _aiohttp_gather(base_url: str) -> tuple[int, int]:
    slots = asyncio.Semaphore(CONCURRENCY)
    async with aiohttp.ClientSession(headers=HEADERS) as session:

        async def one(start: int, end: int) -> dict[str, object]:
            async with slots:
                params = {"start_time": str(start), "end_time": str(end)}
                async with session.get(f"{base_url}/usage", params=params) as response:
                    data: dict[str, object] = (await response.json())["data"]
                    return data

        answers = await asyncio.gather(*(one(s, e) for s, e in _day_ranges()))
    records = sum(len(a["records"]) for a in answers)  # type: ignore[arg-type]
    tokens = sum(a["total_tokens"] for a in answers)  # type: ignore[misc]
    return records, tokens


def aiohttp_gather(base_url: str) -> Run:
    """A hand-written aiohttp gather over day windows with a semaphore of 8."""
    return timed(lambda: asyncio.run(_aiohttp_gather(base_url)))


async def _one_lane(base_url: str) -> tuple[int, int]:
    records = tokens = 0
    async with aiohttp.ClientSession(headers=HEADERS) as session:
        for start, end in _day_ranges()[: math.ceil(DAYS / CONCURRENCY)]:
            params = {"start_time": str(start), "end_time": str(end)}
            async with session.get(f"{base_url}/usage", params=params) as response:
                data = (await response.json())["data"]
            records += len(data["records"])
            tokens += data["total_tokens"]
    return records, tokens


def one_lane(base_url: str) -> Run:
    """One of the 8 lanes alone: 15 sequential day requests, nothing else in flight."""
    return timed(lambda: asyncio.run(_one_lane(base_url)))


async def _client_usage(base_url: str) -> tuple[int, int]:
    async with r9s_async.AsyncClient(
        TEST_API_KEY, base_url=base_url, max_concurrency=CONCURRENCY
    ) as client:
        report = await client.usage(START, END)
    return len(report.records), report.total_tokens


def client_async(base_url: str) -> Run:
    return timed(lambda: asyncio.run(_client_usage(base_url)))


def client_sync(base_url: str) -> Run:
    def work() -> tuple[int, int]:
        with r9s_async.Client(
            TEST_API_KEY, base_url=base_url, max_concurrency=CONCURRENCY
        ) as client:
            report = client.usage(START, END)
        return len(report.records), report.total_tokens

    return timed(work)


CLIENT = "r9s_async AsyncClient.usage"
PEER = "aiohttp gather, day windows, semaphore 8"
LANE = "floor: one lane alone, 15 sequential day requests (aiohttp)"


def run(options: Options) -> Report:
    times = options.repeat or (1 if options.quick else 3)
    ideal = math.ceil(DAYS / CONCURRENCY) * (LATENCY + LATENCY_PER_DAY)
    with FakeServer(
        options, mode="daily", latency=LATENCY, latency_per_day=LATENCY_PER_DAY
    ) as server:
        url = server.base_url
        contenders: dict[str, Callable[[], Run]] = {
            "requests.get, whole range (seed page)": lambda: requests_whole_range(url),
            "requests.Session, loop over days": lambda: requests_session_days(url),
            PEER: lambda: aiohttp_gather(url),
            CLIENT: lambda: client_async(url),
            "r9s_async Client.usage (sync facade)": lambda: client_sync(url),
            LANE: lambda: one_lane(url),
        }
        client_async(url)  # warm-up: imports, first connections
        rows = repeat(contenders, times)
    truth = rows[0]  # one unsplit call is what the answer must equal
    peer = next(row for row in rows if row.name == PEER)
    body = [
        [
            row.name,
            seconds(row.median),
            seconds(row.best),
            f"{row.median / ideal:.2f}x",
            f"{row.median / peer.median:.2f}x",
            f"{row.records:,}",
            "yes" if (row.records, row.tokens) == (truth.records, truth.tokens) else "no",
        ]
        for row in rows
        if row.name != LANE
    ]
    lane = next(row for row in rows if row.name == LANE)
    body.append(
        [LANE, seconds(lane.median), seconds(lane.best), f"{lane.median / ideal:.2f}x", "", "", ""]
    )
    body.append(["ideal: ceil(120/8) x 50 ms", seconds(ideal), "", "1.00x", "", "", ""])
    client = next(row for row in rows if row.name == CLIENT)
    return Report(
        title="1. Latency-bound backfill",
        setup=(
            f"{DAYS} days, daily records (4 models), server latency {LATENCY * 1000:.0f} ms + "
            f"{LATENCY_PER_DAY * 1000:.0f} ms per day asked, `max_concurrency={CONCURRENCY}`, "
            f"median of {times}. *exact* = same records and tokens as one unsplit call."
        ),
        table=table(
            ["contender", "median", "best", "x ideal", "x aiohttp", "records", "exact"],
            body,
        ),
        goals=[Goal("latency-bound: AsyncClient.usage / ideal", client.median / ideal, 1.05)],
        notes=[
            f"latency-bound: AsyncClient.usage / hand-written aiohttp gather: "
            f"{client.median / peer.median:.2f}x",
            f"one lane alone, with no other request in flight, already takes "
            f"{lane.median / ideal:.2f}x the ideal: that is the cost of HTTP on loopback and of "
            "the fake's timer, before 8 answers at once queue in its single thread",
        ],
    )
