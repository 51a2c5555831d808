"""The exports of a ``UsageStore``: its records as CSV, JSON Lines or Parquet, streamed."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator
from typing import IO, Any

from ._optional import import_optional
from ._store_reads import BATCH, RecordReads
from ._times import TimeLike

__all__ = ["RecordExports"]


class RecordExports(RecordReads):
    """CSV, JSON Lines and Parquet exports in the order of ``iter_records``; mixed into
    ``UsageStore``."""

    def export_csv(
        self,
        out: IO[str],
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        user_id: str | int | None = None,
        account: str | None = None,
    ) -> int:
        """Write ``timestamp,model,tokens,account,user_id`` CSV (Unix seconds), in the order of
        :meth:`iter_records`.

        ``account`` is the account's name when it has one, else its fingerprint; ``user_id``
        is empty for the organisation. ``user_id`` and ``account`` select as in
        :meth:`iter_records`.

        Returns:
            How many records were written.
        """
        rows = self._rows(start, end, user_id, account)
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(("timestamp", "model", "tokens", "account", "user_id"))
        count = 0
        for batch in _batched(rows):
            writer.writerows(batch)
            count += len(batch)
        return count

    def export_jsonl(
        self,
        out: IO[str],
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        user_id: str | int | None = None,
        account: str | None = None,
    ) -> int:
        """Write one JSON object per record, in the order of :meth:`iter_records`.

        Keys: ``timestamp``, ``model``, ``tokens``, ``account`` (the account's name, else its
        fingerprint) and ``user_id`` (``null`` for the organisation). ``user_id`` and
        ``account`` select as in :meth:`iter_records`.

        Returns:
            How many records were written.
        """
        count = 0
        dumps = json.dumps
        for timestamp, model, tokens, label, scope in self._rows(start, end, user_id, account):
            row = {
                "timestamp": timestamp,
                "model": model,
                "tokens": tokens,
                "account": label,
                "user_id": scope or None,
            }
            out.write(dumps(row))
            out.write("\n")
            count += 1
        return count

    def export_parquet(
        self,
        out: str | os.PathLike[str] | IO[bytes],
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        user_id: str | int | None = None,
        account: str | None = None,
    ) -> int:
        """Write a Parquet file with columns ``timestamp`` (``timestamp[s, tz=UTC]``),
        ``model`` (string), ``tokens`` (int64), ``account`` (string: the account's name, else
        its fingerprint) and ``user_id`` (string, null for the organisation), in the order of
        :meth:`iter_records`. Needs the ``parquet`` extra (pyarrow).

        Records are written in row groups as they are read, so memory stays bounded.
        ``user_id`` and ``account`` select as in :meth:`iter_records`.

        Returns:
            How many records were written.
        """
        rows = self._rows(start, end, user_id, account)
        pa = import_optional("pyarrow", "parquet")
        pq = import_optional("pyarrow.parquet", "parquet")
        schema = pa.schema(
            [
                ("timestamp", pa.timestamp("s", tz="UTC")),
                ("model", pa.string()),
                ("tokens", pa.int64()),
                ("account", pa.string()),
                ("user_id", pa.string()),
            ]
        )
        target = os.fspath(out) if isinstance(out, str | os.PathLike) else out
        count = 0
        with pq.ParquetWriter(target, schema) as writer:
            for batch in _batched(rows, 100_000):
                timestamps, models, tokens, labels, scopes = zip(*batch, strict=True)
                columns = [
                    list(timestamps),
                    list(models),
                    list(tokens),
                    list(labels),
                    [scope or None for scope in scopes],
                ]
                writer.write_table(pa.table(columns, schema=schema))
                count += len(batch)
        return count


def _batched(rows: Iterable[tuple[Any, ...]], size: int = BATCH) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
