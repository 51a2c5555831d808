"""SIGKILL a running ``r9s-usage backfill`` at random points, re-run it: the store then holds
exactly what an uninterrupted run stores, whichever way the server treats ``end_time``."""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from _helpers import DAY
from aiohttp import web

from r9s_async import Client
from r9s_async.testing import TEST_API_KEY, FakeR9sAPI

D0 = 19_800 * DAY  # 2024-03-18
START, END = D0 + 5_000, D0 + 40 * DAY + 7_000  # partial days at both ends: 41 windows
WINDOWS = 41
KILLS = 4
LATENCY = 0.02


class WatchedFake(FakeR9sAPI):
    """The fake, plus an event set when the n-th ``/usage`` request since :meth:`arm` arrives."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.reached = threading.Event()
        self._lock = threading.Lock()
        self._left = -1

    def arm(self, requests: int) -> None:
        with self._lock:
            self.reached.clear()
            self._left = requests

    def make_app(self) -> web.Application:
        app = super().make_app()

        @web.middleware
        async def count(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            if request.path.endswith("/usage"):
                with self._lock:
                    self._left -= 1
                    if self._left == 0:
                        self.reached.set()
            return await handler(request)

        app.middlewares.append(count)
        return app


def backfill_command(db: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "r9s_async",
        "backfill",
        "--start",
        str(START),
        "--end",
        str(END),
        "--db",
        str(db),
        "--max-concurrency",
        "4",
    ]


def rows(db: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every stored record in order, and every window without its fetch time or request id."""
    con = sqlite3.connect(db)
    try:
        records = con.execute(
            "SELECT scope, day, seq, timestamp, model, tokens FROM records ORDER BY scope, day, seq"
        ).fetchall()
        windows = con.execute(
            "SELECT scope, day, start, end, status, record_count, tokens FROM windows "
            "ORDER BY scope, day"
        ).fetchall()
    finally:
        con.close()
    return records, windows


def whole_windows_only(db: Path) -> bool:
    if not db.exists():
        return True
    con = sqlite3.connect(db)
    try:
        mismatched = con.execute(
            "SELECT count(*) FROM windows w WHERE record_count != "
            "(SELECT count(*) FROM records r WHERE r.scope = w.scope AND r.day = w.day) "
            "OR tokens != (SELECT coalesce(sum(tokens), 0) FROM records r "
            "WHERE r.scope = w.scope AND r.day = w.day)"
        ).fetchone()[0]
        orphans = con.execute(
            "SELECT count(*) FROM records r WHERE NOT EXISTS "
            "(SELECT 1 FROM windows w WHERE w.scope = r.scope AND w.day = r.day)"
        ).fetchone()[0]
    finally:
        con.close()
    return bool(mismatched == 0 and orphans == 0)


def stored_windows(db: Path) -> int:
    if not db.exists():
        return 0
    con = sqlite3.connect(db)
    try:
        return int(con.execute("SELECT count(*) FROM windows").fetchone()[0])
    finally:
        con.close()


@pytest.mark.parametrize("end_inclusive", [True, False], ids=["end-inclusive", "end-exclusive"])
def test_killed_backfills_rerun_to_the_rows_of_an_uninterrupted_run(
    end_inclusive: bool, tmp_path: Path
) -> None:
    rng = random.Random(f"sigkill-{end_inclusive}")
    api = WatchedFake(mode="events", end_inclusive=end_inclusive, latency=LATENCY)
    baseline, killed = tmp_path / "baseline.db", tmp_path / "killed.db"
    with api.serve_in_thread() as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("R9S_")}
        env |= {"R9S_API_KEY": TEST_API_KEY, "R9S_BASE_URL": url}
        with Client(TEST_API_KEY, base_url=url) as client:
            client.backfill(START, END, db=baseline)

        for _ in range(KILLS):
            left = WINDOWS - stored_windows(killed)
            api.arm(1)
            process = subprocess.Popen(
                backfill_command(killed),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                assert api.reached.wait(timeout=60)  # the run is under way
                # A random instant within what it still has to do (4 windows per round trip).
                time.sleep(rng.uniform(0.0, 0.7 * (left / 4) * (LATENCY + 0.005)))
            finally:
                process.kill()
                process.wait()
            assert -9 == process.returncode
            assert whole_windows_only(killed)

        api.arm(-1)
        finished = subprocess.run(
            backfill_command(killed), env=env, capture_output=True, text=True, timeout=60
        )

    assert 0 == finished.returncode, finished.stderr
    assert rows(baseline) == rows(killed)
    expected = [
        (r["timestamp"], r["model"], r["tokens"])
        for r in api.records(START, END)
        if r["timestamp"] < END
    ]
    assert expected == [(t, m, n) for _, _, _, t, m, n in rows(killed)[0]]
    assert WINDOWS == len(rows(killed)[1])
