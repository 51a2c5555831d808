"""Run the r9s source into a destination in a process of its own; the kill test's subject.

Arguments come from the environment: ``R9S_API_KEY``, ``R9S_BASE_URL``, ``PIPELINES_DIR``,
``PIPELINE_NAME``, ``DESTINATION`` (``duckdb:<path>`` or ``postgres:<url>``), ``DATASET``,
``START`` (ISO day), and where to SIGKILL itself: ``KILL_AT_DAY`` (at the first row of the
N-th day, mid-extract) or ``KILL_BEFORE_LOAD=1`` (extracted and normalized, nothing loaded).
"""

from __future__ import annotations

import os
import signal
from datetime import date
from typing import Any

import dlt

from r9s_async.dlt import r9s_source


def destination() -> Any:
    kind, _, where = os.environ["DESTINATION"].partition(":")
    if kind == "duckdb":
        return dlt.destinations.duckdb(where)
    return dlt.destinations.postgres(credentials=where)


def main() -> None:
    source = r9s_source(start=date.fromisoformat(os.environ["START"]))
    kill_at = int(os.environ.get("KILL_AT_DAY", "0"))
    days: set[date] = set()

    def maybe_die(row: dict[str, Any]) -> dict[str, Any]:
        days.add(row["day"])
        if kill_at and len(days) >= kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # mid-extract, with days already written
        return row

    source.resources["usage"].add_map(maybe_die)
    pipeline = dlt.pipeline(
        os.environ["PIPELINE_NAME"],
        destination=destination(),
        dataset_name=os.environ["DATASET"],
        pipelines_dir=os.environ["PIPELINES_DIR"],
    )
    if os.environ.get("KILL_BEFORE_LOAD") == "1":
        pipeline.extract(source)
        pipeline.normalize()
        os.kill(os.getpid(), signal.SIGKILL)
    pipeline.run(source)


if __name__ == "__main__":
    main()
