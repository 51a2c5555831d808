"""4. Sync facade: 60 sequential one-hour calls through one ``Client`` vs one ``AsyncClient``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import requests

import r9s_async
from r9s_async.testing import TEST_API_KEY

from ._harness import START, FakeServer, Goal, Options, Report, Row, Run, table

CALLS = 60
HOUR = 3_600
HEADERS = {"Authorization": f"Bearer {TEST_API_KEY}"}
WARM_UP = (START - HOUR, START)  # one untimed call first: the loop, session and connection


def _hours() -> list[tuple[int, int]]:
    return [(START + i * HOUR, START + (i + 1) * HOUR) for i in range(CALLS)]


def async_client(base_url: str) -> Run:
    async def work() -> Run:
        records = tokens = 0
        async with r9s_async.AsyncClient(TEST_API_KEY, base_url=base_url) as client:
            await client.usage(*WARM_UP)
            wall, cpu = time.perf_counter(), time.process_time()
            for start, end in _hours():
                report = await client.usage(start, end)
                records += len(report.records)
                tokens += report.total_tokens
            return Run(time.perf_counter() - wall, time.process_time() - cpu, records, tokens)

    return asyncio.run(work())


def sync_client(base_url: str) -> Run:
    records = tokens = 0
    with r9s_async.Client(TEST_API_KEY, base_url=base_url) as client:
        client.usage(*WARM_UP)
        wall, cpu = time.perf_counter(), time.process_time()
        for start, end in _hours():
            report = client.usage(start, end)
            records += len(report.records)
            tokens += report.total_tokens
        return Run(time.perf_counter() - wall, time.process_time() - cpu, records, tokens)


def requests_session(base_url: str) -> Run:
    records = tokens = 0
    with requests.Session() as session:
        params = {"start_time": WARM_UP[0], "end_time": WARM_UP[1]}
        session.get(f"{base_url}/usage", params=params, headers=HEADERS).json()
        wall, cpu = time.perf_counter(), time.process_time()
        for start, end in _hours():
            params = {"start_time": start, "end_time": end}
            data = session.get(f"{base_url}/usage", params=params, headers=HEADERS).json()["data"]
            records += len(data["records"])
            tokens += data["total_tokens"]
        return Run(time.perf_counter() - wall, time.process_time() - cpu, records, tokens)


def requests_get(base_url: str) -> Run:
    records = tokens = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for start, end in _hours():
        params = {"start_time": start, "end_time": end}
        data = requests.get(f"{base_url}/usage", params=params, headers=HEADERS).json()["data"]
        records += len(data["records"])
        tokens += data["total_tokens"]
    return Run(time.perf_counter() - wall, time.process_time() - cpu, records, tokens)


BASELINE = "r9s_async AsyncClient, one client"
CLIENT = "r9s_async Client (sync facade), one client"


def run(options: Options) -> Report:
    times = options.repeat or (5 if options.quick else 31)
    with FakeServer(options, mode="events") as server:
        url = server.base_url

        def counted(contender: Callable[[str], Run]) -> Callable[[], Run]:
            def measure() -> Run:
                server.reset()
                result = contender(url)
                result.extra["connections"] = server.stats()["connections"]
                return result

            return measure

        contenders: dict[str, Callable[[], Run]] = {
            BASELINE: counted(async_client),
            CLIENT: counted(sync_client),
            "requests.Session, one session": counted(requests_session),
            "requests.get, no session": counted(requests_get),
        }
        for measure in contenders.values():
            measure()  # warm-up
        rows = [Row(name) for name in contenders]
        for _ in range(times):
            for row, measure in zip(rows, contenders.values(), strict=True):
                row.runs.append(measure())
    baseline = rows[0]
    client = rows[1]
    body = [
        [
            row.name,
            f"{row.median / CALLS * 1e6:.0f}",
            f"{row.best / CALLS * 1e6:.0f}",
            f"{row.median / baseline.median:.2f}x",
            f"{row.cpu_median / CALLS * 1e6:.0f}",
            f"{row.extra_max('connections'):.0f}",
        ]
        for row in rows
    ]
    return Report(
        title="4. Sync facade",
        setup=(
            f"{CALLS} sequential one-hour `usage()` calls on one client, timed after one untimed "
            "call that opens the client (its loop thread, session and connection); a fresh "
            "client per run. Events mode (~1 record an hour), no latency, so the figures are "
            f"per-call overhead; median of {times}. Connections: distinct TCP connections the "
            "server saw during one run, warm-up call included (most of any run)."
        ),
        table=table(
            [
                "contender",
                "us/call median",
                "us/call best",
                "x AsyncClient",
                "CPU us/call",
                "TCP connections",
            ],
            body,
        ),
        goals=[
            Goal(
                "sync facade: Client / AsyncClient per call", client.median / baseline.median, 1.15
            ),
            Goal(
                "sync facade: Client - AsyncClient per call (fixed cost)",
                (client.median - baseline.median) / CALLS * 1e6,
                60.0,
                " us",
            ),
            Goal(
                "sync facade: TCP connections for 60 calls",
                client.extra_max("connections"),
                2.0,
                "",
            ),
        ],
        notes=[
            f"sync facade, best run of each: Client / AsyncClient per call: "
            f"{client.best / baseline.best:.2f}x (a run is ~30 ms: the best is the run least "
            "disturbed by other work on the machine)",
            f"sync facade, CPU time of the process (both threads): Client / AsyncClient per "
            f"call: {client.cpu_median / baseline.cpu_median:.2f}x, "
            f"+{(client.cpu_median - baseline.cpu_median) / CALLS * 1e6:.0f} us",
            f"sync facade, best run of each: Client - AsyncClient per call: "
            f"{(client.best - baseline.best) / CALLS * 1e6:+.0f} us",
        ],
    )
