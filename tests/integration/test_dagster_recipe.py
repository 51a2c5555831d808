"""The Dagster recipe of docs/examples, run in process: partitions materialized twice stay exact."""

from __future__ import annotations

import importlib.util
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import ModuleType

import dagster as dg
import pytest
from _helpers import DAY

from integration._figures import FIGURES
from r9s_async.testing import TEST_API_KEY, FakeR9sAPI

RECIPE = Path(__file__).parents[2] / "docs" / "examples" / "dagster_usage.py"


def load_recipe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dagster_usage", RECIPE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_three_partitions_materialized_twice_leave_the_warehouse_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = FakeR9sAPI(mode="events")
    days = [date(2025, 3, 1), date(2025, 3, 2), date(2025, 3, 3)]
    monkeypatch.setenv("R9S_API_KEY", TEST_API_KEY)
    monkeypatch.setenv("R9S_WAREHOUSE", str(tmp_path / "usage.duckdb"))
    monkeypatch.setenv("R9S_PIPELINES_DIR", str(tmp_path / "pipelines"))
    recipe = load_recipe()
    started = time.perf_counter()
    with api.serve_in_thread() as url:
        monkeypatch.setenv("R9S_BASE_URL", url)
        for _ in range(2):
            for day in days:
                result = dg.materialize([recipe.r9s_usage], partition_key=day.isoformat())
                assert result.success
    seconds = time.perf_counter() - started

    lo = int(datetime(2025, 3, 1, tzinfo=UTC).timestamp())
    hi = lo + 3 * DAY
    truth = [r for r in api.records(lo, hi) if r["timestamp"] < hi]
    with recipe.usage_pipeline().sql_client() as sql:
        rows = sql.execute_sql("SELECT day, COUNT(*), SUM(tokens) FROM usage GROUP BY day")
    expected = {
        day: (
            sum(1 for r in truth if lo + i * DAY <= r["timestamp"] < lo + (i + 1) * DAY),
            sum(r["tokens"] for r in truth if lo + i * DAY <= r["timestamp"] < lo + (i + 1) * DAY),
        )
        for i, day in enumerate(days)
    }
    assert expected == {d: (int(n), int(t)) for d, n, t in rows or []}
    assert days[-1] + timedelta(days=1) > days[0]
    FIGURES.append(
        f"dagster: 3 partitions x 2 materializations in {seconds:.2f} s, "
        f"{sum(n for n, _ in expected.values())} rows exact"
    )
