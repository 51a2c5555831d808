"""The dlt source on real destinations: exact loads, reruns, killed runs, members, secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import dlt
import pytest
from aiohttp import ClientSession, web

from integration._figures import FIGURES
from r9s_async import Client
from r9s_async.dlt import r9s_source
from r9s_async.testing import TEST_API_KEY, FakeR9sAPI

TODAY = datetime.now(UTC).date()
START = TODAY - timedelta(days=89)  # 90 days, today included
RUN_SCRIPT = Path(__file__).with_name("_pipeline_run.py")

Totals = dict[tuple[date, str], tuple[int, int]]


def midnight(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def truth(api: FakeR9sAPI, first: date, end: date) -> Totals:
    """(day, model) -> (records, tokens) of the half-open days ``[first, end)``."""
    hi = midnight(end)
    out: dict[tuple[date, str], tuple[int, int]] = {}
    for r in api.records(midnight(first), hi):
        if r["timestamp"] < hi:
            key = (datetime.fromtimestamp(r["timestamp"], UTC).date(), r["model"])
            n, t = out.get(key, (0, 0))
            out[key] = (n + 1, t + r["tokens"])
    return out


def loaded(pipeline: dlt.Pipeline, where: str = "1 = 1") -> Totals:
    with pipeline.sql_client() as sql:
        rows = sql.execute_sql(
            f"SELECT day, model, COUNT(*), SUM(tokens) FROM usage WHERE {where} GROUP BY day, model"
        )
    return {(day, model): (int(n), int(t)) for day, model, n, t in rows or []}


def usage_starts(api: FakeR9sAPI, since: int) -> list[date]:
    return sorted(
        datetime.fromtimestamp(int(r.query["start_time"]), UTC).date()
        for r in api.requests[since:]
        if r.path == "/usage"
    )


class Destination:
    """One destination of a test, with a dataset of its own."""

    def __init__(self, kind: str, tmp_path: Path, postgres_url: str | None) -> None:
        self.kind = kind
        self.dataset = f"r9s_{uuid.uuid4().hex[:8]}"
        self.pipelines_dir = tmp_path / "pipelines"
        self.path = tmp_path / "usage.duckdb"
        self.url = postgres_url

    @property
    def spec(self) -> str:
        return f"duckdb:{self.path}" if self.kind == "duckdb" else f"postgres:{self.url}"

    def make(self) -> Any:
        if self.kind == "duckdb":
            return dlt.destinations.duckdb(str(self.path))
        assert self.url is not None
        return dlt.destinations.postgres(credentials=self.url)

    def pipeline(self, name: str = "r9s_usage") -> dlt.Pipeline:
        return dlt.pipeline(
            name,
            destination=self.make(),
            dataset_name=self.dataset,
            pipelines_dir=str(self.pipelines_dir),
        )


@pytest.fixture(params=["duckdb", "postgres"])
def destination(request: pytest.FixtureRequest, tmp_path: Path) -> Destination:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    return Destination(request.param, tmp_path, url)


@pytest.fixture
def duckdb_destination(tmp_path: Path) -> Destination:
    return Destination("duckdb", tmp_path, None)


@pytest.fixture
def served() -> Iterator[tuple[FakeR9sAPI, str]]:
    api = FakeR9sAPI(mode="events")
    with api.serve_in_thread() as url:
        yield api, url


def timed_run(pipeline: dlt.Pipeline, source: Any) -> tuple[float, int]:
    started = time.perf_counter()
    pipeline.run(source)
    seconds = time.perf_counter() - started
    trace = pipeline.last_trace
    assert trace is not None
    rows = trace.last_normalize_info.row_counts.get("usage", 0) if trace.last_normalize_info else 0
    return seconds, rows


@pytest.mark.parametrize("end_inclusive", [True, False], ids=["end-inclusive", "end-exclusive"])
def test_a_90_day_load_is_exact_and_a_rerun_fetches_only_the_recent_days(
    destination: Destination, end_inclusive: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = FakeR9sAPI(mode="events", end_inclusive=end_inclusive)
    monkeypatch.setenv("R9S_API_KEY", TEST_API_KEY)
    with api.serve_in_thread() as url:
        pipeline = destination.pipeline()
        seconds, rows = timed_run(pipeline, r9s_source(start=START, base_url=url))
        expected = truth(api, START, TODAY + timedelta(days=1))
        assert expected == loaded(pipeline)
        assert sum(n for n, _ in expected.values()) == rows
        FIGURES.append(
            f"{destination.kind} ({'inclusive' if end_inclusive else 'exclusive'}): "
            f"90-day load {seconds:.2f} s, {rows} rows"
        )

        since = len(api.requests)
        seconds, rows = timed_run(pipeline, r9s_source(start=START, base_url=url))

        recent = [TODAY - timedelta(days=2), TODAY - timedelta(days=1), TODAY]
        assert recent == usage_starts(api, since)
        recent_truth = truth(api, recent[0], TODAY + timedelta(days=1))
        assert sum(n for n, _ in recent_truth.values()) == rows
        assert expected == loaded(pipeline)
        FIGURES.append(f"{destination.kind}: rerun {seconds:.2f} s, {rows} rows (3 recent days)")


@pytest.mark.parametrize("kill", ["mid-extract", "before-load"])
def test_a_run_killed_and_started_again_ends_exact(
    destination: Destination, served: tuple[FakeR9sAPI, str], kill: str
) -> None:
    api, url = served
    env = {
        **os.environ,
        "R9S_API_KEY": TEST_API_KEY,
        "R9S_BASE_URL": url,
        "PIPELINES_DIR": str(destination.pipelines_dir),
        "PIPELINE_NAME": "r9s_usage",
        "DESTINATION": destination.spec,
        "DATASET": destination.dataset,
        "START": START.isoformat(),
    }
    if kill == "mid-extract":
        env["KILL_AT_DAY"] = "40"
    else:
        env["KILL_BEFORE_LOAD"] = "1"
    started = time.perf_counter()
    killed = subprocess.run([sys.executable, str(RUN_SCRIPT)], env=env, capture_output=True)
    killed_seconds = time.perf_counter() - started
    assert -9 == killed.returncode, killed.stderr.decode()[-2000:]

    env.pop("KILL_AT_DAY", None)
    env.pop("KILL_BEFORE_LOAD", None)
    started = time.perf_counter()
    again = subprocess.run([sys.executable, str(RUN_SCRIPT)], env=env, capture_output=True)
    seconds = time.perf_counter() - started
    assert 0 == again.returncode, again.stderr.decode()[-2000:]

    expected = truth(api, START, TODAY + timedelta(days=1))
    assert expected == loaded(destination.pipeline())
    FIGURES.append(
        f"{destination.kind}: killed {kill} after {killed_seconds:.2f} s, run again "
        f"{seconds:.2f} s, {sum(n for n, _ in expected.values())} rows exact"
    )


class VanishingFakeR9sAPI(FakeR9sAPI):
    """The fake, with every record of some days gone (usage the provider withdrew)."""

    def __init__(self, gone: set[date], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gone = gone

    def records(self, start: int, end: int) -> list[dict[str, Any]]:
        return [
            r
            for r in super().records(start, end)
            if datetime.fromtimestamp(r["timestamp"], UTC).date() not in self.gone
        ]


def test_a_reloaded_day_that_lost_its_records_is_emptied_and_overlaps_never_double_count(
    duckdb_destination: Destination, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("R9S_API_KEY", TEST_API_KEY)
    first, end = date(2025, 3, 1), date(2025, 3, 11)
    gone = {date(2025, 3, 4), date(2025, 3, 5)}
    pipeline = duckdb_destination.pipeline()
    before = FakeR9sAPI(mode="events")
    with before.serve_in_thread() as url:
        pipeline.run(r9s_source(start=first, end=end, base_url=url))
        pipeline.run(r9s_source(start=date(2025, 3, 3), end=date(2025, 3, 8), base_url=url))
    assert truth(before, first, end) == loaded(pipeline)

    after = VanishingFakeR9sAPI(gone, mode="events")
    port = int(url.split(":")[2].split("/")[0])  # the same base URL: the same account
    with after.serve_in_thread(port=port) as url:
        pipeline.run(r9s_source(start=date(2025, 3, 2), end=date(2025, 3, 7), base_url=url))

    expected = truth(after, first, end)
    assert gone.isdisjoint(day for day, _ in expected)
    assert expected == loaded(pipeline)
    with pipeline.sql_client() as sql:
        rows = sql.execute_sql("SELECT COUNT(*) FROM usage WHERE day_cleared IS NOT NULL")
    assert [(0,)] == [tuple(r) for r in rows or []]


def test_identical_records_stay_distinct_rows(
    duckdb_destination: Destination, served: tuple[FakeR9sAPI, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    api, url = served
    monkeypatch.setenv("R9S_API_KEY", TEST_API_KEY)
    first, end = date(2025, 1, 1), date(2025, 1, 31)
    pipeline = duckdb_destination.pipeline()
    pipeline.run(r9s_source(start=first, end=end, base_url=url))

    twins = Counter(
        (r["timestamp"], r["model"], r["tokens"])
        for r in api.records(midnight(first), midnight(end))
    )
    with pipeline.sql_client() as sql:
        rows = sql.execute_sql(
            "SELECT timestamp, model, tokens, COUNT(*) FROM usage"
            " GROUP BY 1, 2, 3 HAVING COUNT(*) > 1"
        )
    expected = {k: n for k, n in twins.items() if n > 1 and k[0] < midnight(end)}
    assert expected  # the fake does serve identical twins
    assert expected == {(int(t.timestamp()), m, int(k)): int(n) for t, m, k, n in rows or []}


def test_members_and_keys_are_accounts_of_their_own(
    duckdb_destination: Destination, monkeypatch: pytest.MonkeyPatch
) -> None:
    other_key = "sk_mg_" + "b" * 64
    org, other = FakeR9sAPI(mode="events"), FakeR9sAPI(mode="daily", api_key=other_key, seed=7)
    first, end = date(2025, 2, 1), date(2025, 2, 8)
    with (
        org.serve_in_thread() as org_url,
        other.serve_in_thread() as other_url,
        serve_routing_by_key({TEST_API_KEY: org_url, other_key: other_url}) as url,
    ):
        pipeline = duckdb_destination.pipeline()
        pipeline.run(
            r9s_source(
                api_key=[TEST_API_KEY, other_key],
                account_names=["prod", "lab"],
                user_ids=[None, "42"],
                start=first,
                end=end,
                base_url=url,
            )
        )

    for account, api in [("prod", org), ("lab", other)]:
        for member in ("user_id IS NULL", "user_id = '42'"):
            where = f"account = '{account}' AND {member}"
            assert truth(api, first, end) == loaded(pipeline, where)
    with pipeline.sql_client() as sql:
        rows = sql.execute_sql("SELECT account, balance, currency FROM balance ORDER BY account")
    assert [("lab", Decimal("470.010481"), "USD"), ("prod", Decimal("470.010481"), "USD")] == [
        tuple(r) for r in rows or []
    ]


class serve_routing_by_key:
    """A loopback gateway that sends each request to the fake that accepts its key."""

    def __init__(self, routes: dict[str, str]) -> None:
        self.routes = routes
        self.api = FakeR9sAPI()  # only for its thread-serving helper
        self._cm: Any = None

    def __enter__(self) -> str:
        routes = self.routes

        async def forward(request: web.Request) -> web.Response:
            auth = request.headers.get("Authorization", "")
            target = next(u for k, u in routes.items() if auth == f"Bearer {k}")
            tail = request.path.rsplit("/", 1)[1]
            async with (
                ClientSession() as session,
                session.get(
                    f"{target}/{tail}", params=request.query, headers={"Authorization": auth}
                ) as answer,
            ):
                return web.Response(
                    status=answer.status, body=await answer.read(), content_type="application/json"
                )

        def make_app() -> web.Application:
            app = web.Application()
            app.router.add_get("/{tail:.*}", forward)
            return app

        self.api.make_app = make_app  # type: ignore[method-assign]
        self._cm = self.api.serve_in_thread()
        url: str = self._cm.__enter__()
        return url

    def __exit__(self, *exc: object) -> None:
        self._cm.__exit__(None, None, None)


def test_the_key_from_dlt_secrets_is_nowhere_in_the_pipeline_or_the_destination(
    duckdb_destination: Destination,
    served: tuple[FakeR9sAPI, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    api, url = served
    monkeypatch.setenv("SOURCES__R9S_ASYNC__API_KEY", TEST_API_KEY)
    caplog.set_level("DEBUG")
    pipeline = duckdb_destination.pipeline()
    pipeline.run(r9s_source(start=TODAY - timedelta(days=3), base_url=url))
    pipeline.run(r9s_source(api_key=TEST_API_KEY, start=TODAY - timedelta(days=3), base_url=url))

    assert all(r.authorized for r in api.requests)
    secret = TEST_API_KEY.encode()
    where = [Path(pipeline.working_dir), duckdb_destination.path]
    leaks = [
        str(path)
        for root in where
        for path in ([root] if root.is_file() else root.rglob("*"))
        if path.is_file() and secret in path.read_bytes()
    ]
    assert [] == leaks
    assert pipeline.last_trace is not None
    assert TEST_API_KEY not in json.dumps(pipeline.last_trace.asdict(), default=str)
    assert TEST_API_KEY not in repr(pipeline.last_trace)
    assert TEST_API_KEY not in caplog.text
    assert Path(pipeline.working_dir).is_dir()


def test_without_a_dlt_secret_the_key_comes_from_r9s_api_key(
    duckdb_destination: Destination, served: tuple[FakeR9sAPI, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    api, url = served
    monkeypatch.delenv("SOURCES__R9S_ASYNC__API_KEY", raising=False)
    monkeypatch.setenv("R9S_API_KEY", TEST_API_KEY)
    pipeline = duckdb_destination.pipeline()
    pipeline.run(r9s_source(start=date(2025, 1, 1), end=date(2025, 1, 3), base_url=url))
    assert truth(api, date(2025, 1, 1), date(2025, 1, 3)) == loaded(pipeline)
    assert all(r.authorized for r in api.requests)


def test_an_external_schedule_loads_its_interval_and_leaves_the_state_alone(
    duckdb_destination: Destination, served: tuple[FakeR9sAPI, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    api, url = served
    monkeypatch.setenv("R9S_API_KEY", TEST_API_KEY)
    pipeline = duckdb_destination.pipeline()
    pipeline.run(r9s_source(start=TODAY - timedelta(days=5), base_url=url))
    state_before = pipeline.state["sources"]["r9s_async"]["resources"]["usage"]

    monkeypatch.setenv("DLT_INTERVAL_START", "2025-01-10T00:00:00+00:00")
    monkeypatch.setenv("DLT_INTERVAL_END", "2025-01-12T00:00:00+00:00")
    since = len(api.requests)
    pipeline.run(r9s_source(start=date(2025, 1, 1), base_url=url, external_schedule=True))

    assert [date(2025, 1, 10), date(2025, 1, 11)] == usage_starts(api, since)
    assert truth(api, date(2025, 1, 10), date(2025, 1, 12)) == loaded(
        pipeline, "day < '2025-02-01'"
    )
    assert state_before == pipeline.state["sources"]["r9s_async"]["resources"]["usage"]


def test_balance_snapshots_are_appended_as_exact_decimals(
    duckdb_destination: Destination, served: tuple[FakeR9sAPI, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, url = served
    monkeypatch.setenv("R9S_API_KEY", TEST_API_KEY)
    pipeline = duckdb_destination.pipeline()
    for _ in range(2):
        pipeline.run(r9s_source(start=TODAY, base_url=url).with_resources("balance"))
    with Client(TEST_API_KEY, base_url=url) as client:
        fingerprint = client.account.fingerprint
    with pipeline.sql_client() as sql:
        rows = sql.execute_sql("SELECT account, balance, coupon_balance, currency FROM balance")
    assert [(fingerprint, Decimal("470.010481"), Decimal(0), "USD")] * 2 == [
        tuple(r) for r in rows or []
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"recent_days": -1}, "recent_days"),
        ({"start": "2025-02-01", "end": "2025-01-01"}, "before start"),
        ({"start": "yesterday"}, "ISO date"),
        ({"start": datetime(2025, 1, 1)}, "timezone-aware"),
        ({"api_key": [TEST_API_KEY], "account_names": ["a", "b"]}, "account_names"),
    ],
)
def test_bad_arguments_fail_before_anything_is_fetched(
    kwargs: dict[str, Any], message: str, served: tuple[FakeR9sAPI, str]
) -> None:
    api, url = served
    with pytest.raises(Exception, match=message):
        r9s_source(base_url=url, **kwargs)
    assert [] == api.requests
