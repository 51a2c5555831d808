"""3. Memory: 3,650 daily windows x ~1,000 records, streamed with ``iter_usage`` and held by
``usage()``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from r9s_async._speedups import speedups_enabled
from r9s_async.testing import TEST_API_KEY

from ._harness import (
    ROOT,
    FakeServer,
    Goal,
    Options,
    Report,
    Row,
    Run,
    seconds,
    table,
)

EVENTS_PER_DAY = 910  # the fake adds ~10% identical twins: ~1,000 records a day


def child(name: str, url: str, days: int) -> Run:
    """One run in a fresh interpreter, so ``VmHWM`` is this run's peak alone. A name ending
    in ``:pure`` runs without the speedups extra's decoder."""
    name, _, decoder = name.partition(":")
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks._memory_child", name, url, str(days)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "R9S_API_KEY": TEST_API_KEY, "R9S_BENCH_DECODER": decoder},
    ).stdout
    result = json.loads(out)
    return Run(
        result["seconds"],
        result["cpu_seconds"],
        result["records"],
        result["tokens"],
        {"peak": result["peak_rss_mib"], "imports": result["rss_after_imports_mib"]},
    )


def run(options: Options) -> Report:
    short, long = (73, 365) if options.quick else (365, 3_650)
    times = options.repeat or (1 if options.quick else 2)
    fast = "speedups" if speedups_enabled() else "pure"
    plan = [
        ("floor", "r9s_async: imports + one balance() call", 1),
        ("client", f"r9s_async AsyncClient.iter_usage, {short} days", short),
        ("client", f"r9s_async AsyncClient.iter_usage, {long:,} days", long),
        ("aiohttp", f"aiohttp + json.loads loop, counts only, {short} days", short),
        ("aiohttp", f"aiohttp + json.loads loop, counts only, {long:,} days", long),
        ("usage", f"r9s_async AsyncClient.usage holding {long:,} days ({fast})", long),
        ("usage:pure", f"r9s_async AsyncClient.usage holding {long:,} days (pure)", long),
        ("hold", f"aiohttp + json.loads loop holding the dicts, {long:,} days", long),
    ]
    rows = [Row(label) for _, label, _ in plan]
    with FakeServer(
        options, mode="events", events_per_day=EVENTS_PER_DAY, cache_bodies=True
    ) as server:
        child("aiohttp", server.base_url, long)  # warm-up: the server generates every day once
        for _ in range(times):
            for (name, _, days), row in zip(plan, rows, strict=True):
                row.runs.append(child(name, server.base_url, days))
    body = [
        [
            row.name,
            f"{row.extra_max('peak'):.1f}",
            f"{row.extra_median('imports'):.1f}",
            seconds(row.median),
            f"{row.records:,}",
            f"{row.median / row.records * 1e6:.2f}" if row.records else "",
        ]
        for row in rows
    ]
    client_short, client_long = rows[1], rows[2]
    peak = client_long.extra_max("peak")
    growth = client_long.extra_max("peak") - client_short.extra_max("peak")
    held = rows[5].extra_max("peak")
    return Report(
        title="3. Memory: streaming with iter_usage, holding with usage()",
        setup=(
            f"Day windows of ~1,000 records (events mode), no latency, answers cached by the "
            f"server after a warm-up; every run in a fresh process, peak RSS from `VmHWM` "
            f"(max of {times}), other columns median of {times}."
        ),
        table=table(
            ["contender", "peak RSS MiB", "RSS after imports", "time", "records", "us/record"],
            body,
        ),
        goals=[
            Goal(f"memory: peak RSS streaming {long:,} days", peak, 80.0, " MiB"),
            Goal(f"memory: growth {short} -> {long:,} days", growth, 10.0, " MiB"),
            Goal(
                f"memory: peak RSS of usage() holding {long:,} days ({fast})", held, 550.0, " MiB"
            ),
        ],
    )
