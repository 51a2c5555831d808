"""A usage store for the exporter's tests: two accounts, settled and recent days, a member.

Filled by real backfills against two API doubles on loopback. The expected figures are worked
out here from the doubles' own data, not read back through the store.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from _helpers import D0, DAY, make_client
from attrs import frozen
from prometheus_client.parser import text_string_to_metric_families

from r9s_async.testing import FakeR9sAPI

SETTLED_DAYS = 2  # D0 and D0 + 1 are complete; D0 + 2 .. D0 + 4 still recent
DAYS = 5
MEMBER = "7"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@frozen
class Expected:
    settled: dict[tuple[str, str], int]  # (account, model) -> tokens of the settled days
    recent: dict[tuple[str, str], int]  # (account, model) -> tokens of the recent days

    def settled_total(self) -> int:
        return sum(self.settled.values())


def owned_tokens(api: FakeR9sAPI, start: int, end: int) -> dict[str, int]:
    """Tokens per model of the records ``[start, end)`` owns."""
    totals: dict[str, int] = {}
    for record in api.records(start, end):
        if record["timestamp"] < end:
            totals[record["model"]] = totals.get(record["model"], 0) + record["tokens"]
    return totals


async def fill_store(db: str) -> Expected:
    """Backfill D0 .. D0 + 5 days of two accounts (and a member of the first) into ``db``."""
    settled: dict[tuple[str, str], int] = {}
    recent: dict[tuple[str, str], int] = {}
    # Days that ended more than this long before the backfill are complete: D0 and D0 + 1.
    refresh_recent = time.time() - (D0 + (SETTLED_DAYS + 0.5) * DAY)
    for name, api in (("prod", FakeR9sAPI(seed=0)), ("staging", FakeR9sAPI(seed=1))):
        async with api.serve() as url, make_client(url) as client:
            end = D0 + DAYS * DAY
            await client.backfill(D0, end, db=db, refresh_recent=refresh_recent, account_name=name)
            await client.backfill(D0, end, db=db, user_id=MEMBER, refresh_recent=refresh_recent)
        for day in range(DAYS):
            into = settled if day < SETTLED_DAYS else recent
            a = D0 + day * DAY
            for model, tokens in owned_tokens(api, a, a + DAY).items():
                into[name, model] = into.get((name, model), 0) + tokens
    return Expected(settled, recent)


def parse(text: str) -> Samples:
    """A scrape's samples, by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def of(samples: Samples, name: str) -> dict[tuple[str, ...], float]:
    """The samples called ``name``, by their label values in label-name order (account,
    currency, model)."""
    return {
        tuple(value for _, value in labels): v for (n, labels), v in samples.items() if n == name
    }


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        text: str = answer.read().decode()
        return text


@contextmanager
def exporter_process(
    *args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``r9s-usage exporter ARGS --port 0`` in a subprocess; yields its /metrics URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "r9s_async", "exporter", *args, "--port", "0"],
        env=env if env is not None else clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert "serving http://" in line, line + process.stderr.read()
        url = line.split("serving ", 1)[1].split()[0]
        yield url, process
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=20)
        if process.stderr is not None:
            process.stderr.close()


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("R9S_")}
    env.update(extra)
    return env
