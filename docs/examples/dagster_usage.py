"""Dagster recipe: r9s usage in a warehouse, one daily partition per materialization.

Each partition loads its own UTC day through the r9s dlt source, as a backfill of that day
(``start``/``end``), so materializing a partition again replaces its day and never double
counts. Run it with ``dagster dev -f dagster_usage.py`` and materialize partitions from the UI,
or schedule it with ``build_schedule_from_partitioned_job``.

Settings come from the environment: ``R9S_API_KEY`` (or dlt's secrets), and where to load:
``R9S_WAREHOUSE`` (a DuckDB file here; any dlt destination works the same way).
"""

import os

import dagster as dg
import dlt

from r9s_async.dlt import r9s_source

daily = dg.DailyPartitionsDefinition(start_date="2025-01-01", timezone="UTC")


def usage_pipeline() -> dlt.Pipeline:
    """The pipeline every partition loads through (one dlt state, one dataset)."""
    return dlt.pipeline(
        "r9s_usage",
        destination=dlt.destinations.duckdb(os.environ.get("R9S_WAREHOUSE", "r9s_usage.duckdb")),
        dataset_name="r9s",
        pipelines_dir=os.environ.get("R9S_PIPELINES_DIR"),
    )


@dg.asset(partitions_def=daily)
def r9s_usage(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Token usage of the partition's UTC day, one row per record."""
    window = context.partition_time_window
    source = r9s_source(start=window.start.date(), end=window.end.date())
    info = usage_pipeline().run(source.with_resources("usage"))
    context.log.info(str(info))
    return dg.MaterializeResult(metadata={"day": window.start.date().isoformat()})


defs = dg.Definitions(assets=[r9s_usage])
