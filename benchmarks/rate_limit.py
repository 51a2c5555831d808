"""5. Rate-limited backfill: 365 days against a server that allows 20 requests/s, burst 5."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import r9s_async
from r9s_async.testing import TEST_API_KEY

from ._harness import DAY, START, FakeServer, Goal, Options, Report, Row, Run, table

RATE = 20.0
BURST = 5
CONCURRENCY = 16


def backfill(base_url: str, days: int, server: FakeServer) -> Run:
    """One backfill into a fresh store, with a fresh client (no pace learnt before)."""

    async def work() -> None:
        async with r9s_async.AsyncClient(
            TEST_API_KEY, base_url=base_url, max_concurrency=CONCURRENCY
        ) as client:
            await client.backfill(START, START + days * DAY, db=db)

    server.reset()
    time.sleep(BURST / RATE + 0.5)  # the server's bucket is full again, as for a first run
    with tempfile.TemporaryDirectory() as directory:
        db = Path(directory) / "usage.sqlite"
        wall, cpu = time.perf_counter(), time.process_time()
        asyncio.run(work())
        run = Run(time.perf_counter() - wall, time.process_time() - cpu, days, 0)
    stats = server.stats()
    run.extra.update(requests=stats["requests"], limited=stats["limited"])
    return run


def run(options: Options) -> Report:
    days = 73 if options.quick else 365
    times = options.repeat or (2 if options.quick else 5)
    ideal = (days - BURST) / RATE
    rows: list[Row] = []
    for headers in (False, True):
        row = Row(f"AsyncClient.backfill, {'with' if headers else 'without'} rate-limit headers")
        with FakeServer(
            options, mode="daily", rate=RATE, burst=BURST, rate_headers=headers
        ) as server:
            for _ in range(times):
                row.runs.append(backfill(server.base_url, days, server))
        rows.append(row)
    body = [
        [
            row.name,
            f"{row.median:.2f} s",
            f"{min(r.seconds for r in row.runs):.2f} s",
            f"{max(r.seconds for r in row.runs):.2f} s",
            f"{row.median / ideal:.3f}x",
            f"{row.extra_median('limited'):.0f}",
            f"{row.extra_median('limited') / row.extra_median('requests'):.1%}",
        ]
        for row in rows
    ]
    plain, announced = rows
    limited_share = plain.extra_median("limited") / plain.extra_median("requests")
    return Report(
        title="5. Rate-limited backfill",
        setup=(
            f"{days} daily windows into a fresh SQLite store, `max_concurrency={CONCURRENCY}`, "
            f"a server allowing {RATE:.0f} requests/s with a burst of {BURST} per key (429 with a "
            f"whole-second `Retry-After` over it); ideal = ({days} - {BURST}) / {RATE:.0f} = "
            f"{ideal:.2f} s. A fresh client and a full server bucket per run; median of {times}."
        ),
        table=table(
            ["contender", "median", "best", "worst", "x ideal", "429s (median)", "429 share"],
            body,
        ),
        goals=[
            Goal("rate limit, no headers: backfill / ideal", plain.median / ideal, 1.15),
            Goal("rate limit, no headers: share of 429s", limited_share * 100, 5.0, " %"),
            Goal("rate limit, with headers: backfill / ideal", announced.median / ideal, 1.05),
            Goal(
                "rate limit, with headers: 429s (median)",
                announced.extra_median("limited"),
                0.0,
                "",
            ),
        ],
    )
