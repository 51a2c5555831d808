"""``UsageStore``: the SQLite file a backfill fills window by window, with summaries and exports.

Layout (schema version 1, WAL mode):

- ``windows``: one row per (scope, UTC day) that has been stored: the span ``[start, end)`` of
  that day it covers, ``status`` (``"complete"``, or ``"recent"`` while the data may still
  change), ``fetched_at``, ``request_id``, ``record_count`` and ``tokens``.
- ``records``: the usage records, each owned by one window (``scope``, ``day``) and numbered
  by ``seq`` in the order the server sent them. Identical records are distinct usage: they are
  all kept, told apart by ``seq``.

``scope`` is the ``user_id`` a backfill asked for, or ``''`` for the organisation.
A window and its records are always replaced in one transaction, so after any crash the file
holds whole windows only.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from datetime import date
from types import TracebackType
from typing import IO, Any, Literal, Self

from attrs import frozen

from ._config import check_user_id
from ._exceptions import StoreConflictError
from ._models import UsageRecord
from ._optional import import_optional
from ._times import DAY, TimeLike, day_start, to_half_open, utc_day

__all__ = ["SCHEMA_VERSION", "StoredWindow", "UsageStore"]

SCHEMA_VERSION = 1
_APPLICATION_ID = 0x72397375  # "r9su": marks the file as ours
_BATCH = 5_000

_SCHEMA = """
CREATE TABLE windows (
    scope        TEXT    NOT NULL,  -- user_id, or '' for the organisation
    day          INTEGER NOT NULL,  -- the UTC midnight (Unix seconds) of the window's day
    start        INTEGER NOT NULL,  -- first second covered
    end          INTEGER NOT NULL,  -- first second not covered: [start, end)
    status       TEXT    NOT NULL CHECK (status IN ('complete', 'recent')),
    fetched_at   INTEGER NOT NULL,  -- Unix seconds
    request_id   TEXT,
    record_count INTEGER NOT NULL,
    tokens       INTEGER NOT NULL,
    PRIMARY KEY (scope, day)
) WITHOUT ROWID;
CREATE TABLE records (
    scope     TEXT    NOT NULL,
    day       INTEGER NOT NULL,     -- the window that owns the record
    seq       INTEGER NOT NULL,     -- position in that window: server order, twins kept apart
    timestamp INTEGER NOT NULL,
    model     TEXT    NOT NULL,
    tokens    INTEGER NOT NULL,
    PRIMARY KEY (scope, day, seq)
) WITHOUT ROWID;
"""

Status = Literal["complete", "recent"]


@frozen
class StoredWindow:
    """One stored window: which part of one UTC day a store holds, and how fresh it is.

    Attributes:
        user_id: The member the window was fetched for, or ``None`` for the organisation.
        start: First second covered (Unix seconds).
        end: First second not covered: the window covers ``[start, end)``.
        status: ``"complete"``, or ``"recent"`` when it was fetched less than
            ``refresh_recent`` after it ended (a later backfill fetches it again).
        fetched_at: When it was stored, Unix seconds.
        request_id: ``meta.request_id`` of the answer it came from.
        record_count: How many records it holds.
        tokens: The sum of their tokens.
    """

    user_id: str | None
    start: int
    end: int
    status: Status
    fetched_at: int
    request_id: str | None
    record_count: int
    tokens: int

    @property
    def day(self) -> date:
        """The UTC day this window belongs to."""
        return utc_day(self.start)


class _Unchecked:
    """Marks a write that does not check what the day held before."""


_UNCHECKED = _Unchecked()


class UsageStore:
    """A SQLite file of usage records, filled by ``backfill()`` one whole window at a time.

    Safe to share between threads (calls are serialised) and between processes (SQLite
    locking; WAL mode lets readers run beside a writer). Use it as a context manager, or call
    :meth:`close`.

    Args:
        path: The database file. Created with its directory's permissions when missing.
        create: Whether a missing file may be created; with ``False`` a missing file raises
            :class:`FileNotFoundError`.

    Raises:
        FileNotFoundError: ``create=False`` and there is no such file.
        sqlite3.DatabaseError: The file is not SQLite, belongs to another application, or was
            written by a newer version of this library.
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self._path = os.fspath(path)
        if not isinstance(self._path, str):
            raise TypeError("path must be a str or os.PathLike[str]")
        if not create and not os.path.exists(self._path):
            raise FileNotFoundError(f"no usage store at {self._path!r}")
        self._lock = threading.RLock()
        # check_same_thread=False: a backfill writes from its own store thread while the
        # caller may read; the lock above serialises every use of the connection.
        self._db: sqlite3.Connection | None = sqlite3.connect(
            self._path, timeout=60.0, isolation_level=None, check_same_thread=False
        )
        try:
            self._setup(self._db)
        except BaseException:
            self._db.close()
            self._db = None
            raise

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, create: bool = True) -> Self:
        """Open (or create) the store at ``path``; the same as ``UsageStore(path)``."""
        return cls(path, create=create)

    @staticmethod
    def _setup(db: sqlite3.Connection) -> None:
        # Switching a new file to WAL needs an exclusive lock and does not wait on the busy
        # timeout, so two processes creating one store at once can see "database is locked".
        for attempt in range(100):
            try:
                db.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 99:
                    raise
                time.sleep(0.05)
        # In WAL mode NORMAL keeps every commit atomic; a power cut may lose the last few
        # windows, which the next run fetches again.
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("BEGIN IMMEDIATE")
        try:
            app_id = db.execute("PRAGMA application_id").fetchone()[0]
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if app_id == 0 and version == 0 and tables == 0:
                # One statement at a time: executescript() would commit the open transaction.
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA application_id = {_APPLICATION_ID}")
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif app_id != _APPLICATION_ID:
                raise sqlite3.DatabaseError(
                    "this SQLite file is not an r9s_async usage store; choose another path"
                )
            elif version != SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"this usage store has schema version {version}; this version of "
                    f"r9s_async reads version {SCHEMA_VERSION}"
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    @property
    def path(self) -> str:
        """The database file."""
        return self._path

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._db is None

    def __repr__(self) -> str:
        state = "closed" if self._db is None else "open"
        return f"UsageStore({self._path!r}, {state})"

    def __enter__(self) -> Self:
        self._conn()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the file. Safe to call twice."""
        with self._lock:
            db, self._db = self._db, None
        if db is not None:
            db.close()

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise ValueError("this UsageStore is closed")
        return self._db

    # -- reads --------------------------------------------------------------------------------

    def windows(self, *, user_id: str | int | None = None) -> list[StoredWindow]:
        """Every stored window of one scope (the organisation by default), in time order."""
        scope = check_user_id(user_id) or ""
        with self._lock:
            rows = (
                self._conn()
                .execute(
                    "SELECT start, end, status, fetched_at, request_id, record_count, tokens "
                    "FROM windows WHERE scope = ? ORDER BY day",
                    (scope,),
                )
                .fetchall()
            )
        uid = scope or None
        return [StoredWindow(uid, *row) for row in rows]

    def iter_records(
        self,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        user_id: str | int | None = None,
    ) -> Iterator[UsageRecord]:
        """Stored records with ``start <= timestamp < end``, in timestamp order (server order
        kept within a second).

        Records are read in batches, so memory does not grow with the range. Arguments are
        checked at once.

        Args:
            start: First second; ``None`` for the earliest stored.
            end: Exclusive end; ``None`` for no end.
            user_id: The member whose backfill to read; ``None`` for the organisation's.
        """
        rows = self._rows(start, end, user_id)
        return (UsageRecord(timestamp, tokens, model) for timestamp, model, tokens in rows)

    def count_records(
        self,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        user_id: str | int | None = None,
    ) -> int:
        """How many records :meth:`iter_records` would yield."""
        rows = self._aggregate("count(*)", "", start, end, user_id)
        return int(rows[0][0])

    def tokens_by_model(
        self,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        user_id: str | int | None = None,
    ) -> dict[str, int]:
        """Tokens per model in ``[start, end)``, largest first."""
        rows = self._aggregate(
            "model, sum(tokens) AS total",
            "GROUP BY model ORDER BY total DESC, model",
            start,
            end,
            user_id,
        )
        return dict(rows)

    def tokens_by_day(
        self,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        user_id: str | int | None = None,
    ) -> dict[date, int]:
        """Tokens per UTC day in ``[start, end)``, in day order."""
        rows = self._aggregate("day, sum(tokens)", "GROUP BY day ORDER BY day", start, end, user_id)
        return {utc_day(day): total for day, total in rows}

    def tokens_by_day_and_model(
        self,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        user_id: str | int | None = None,
    ) -> dict[tuple[date, str], int]:
        """Tokens per (UTC day, model) in ``[start, end)``, in day order then model order."""
        rows = self._aggregate(
            "day, model, sum(tokens)",
            "GROUP BY day, model ORDER BY day, model",
            start,
            end,
            user_id,
        )
        return {(utc_day(day), model): total for day, model, total in rows}

    # -- exports ------------------------------------------------------------------------------

    def export_csv(
        self,
        out: IO[str],
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        user_id: str | int | None = None,
    ) -> int:
        """Write ``timestamp,model,tokens`` CSV (Unix seconds), in timestamp order.

        Returns:
            How many records were written.
        """
        rows = self._rows(start, end, user_id)
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(("timestamp", "model", "tokens"))
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
    ) -> int:
        """Write one JSON object per record (keys ``timestamp``, ``model``, ``tokens``).

        Returns:
            How many records were written.
        """
        count = 0
        dumps = json.dumps
        for timestamp, model, tokens in self._rows(start, end, user_id):
            out.write(dumps({"timestamp": timestamp, "model": model, "tokens": tokens}))
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
    ) -> int:
        """Write a Parquet file with columns ``timestamp`` (``timestamp[s, tz=UTC]``),
        ``model`` (string) and ``tokens`` (int64), in timestamp order. Needs the ``parquet``
        extra (pyarrow).

        Records are written in row groups as they are read, so memory stays bounded.

        Returns:
            How many records were written.
        """
        rows = self._rows(start, end, user_id)
        pa = import_optional("pyarrow", "parquet")
        pq = import_optional("pyarrow.parquet", "parquet")
        schema = pa.schema(
            [
                ("timestamp", pa.timestamp("s", tz="UTC")),
                ("model", pa.string()),
                ("tokens", pa.int64()),
            ]
        )
        target = os.fspath(out) if isinstance(out, str | os.PathLike) else out
        count = 0
        with pq.ParquetWriter(target, schema) as writer:
            for batch in _batched(rows, 100_000):
                timestamps, models, tokens = zip(*batch, strict=True)
                writer.write_table(
                    pa.table([list(timestamps), list(models), list(tokens)], schema=schema)
                )
                count += len(batch)
        return count

    # -- the backfill's side --------------------------------------------------------------------

    def coverage(self, scope: str, first: int, last: int) -> dict[int, StoredWindow]:
        """Stored windows of ``scope`` whose day meets ``[first, last)``, by day."""
        first_day = day_start(first)
        with self._lock:
            rows = (
                self._conn()
                .execute(
                    "SELECT day, start, end, status, fetched_at, request_id, record_count, tokens "
                    "FROM windows WHERE scope = ? AND day >= ? AND day < ?",
                    (scope, first_day, last),
                )
                .fetchall()
            )
        uid = scope or None
        return {day: StoredWindow(uid, *rest) for day, *rest in rows}

    def replace_window(
        self,
        scope: str,
        start: int,
        end: int,
        records: Sequence[UsageRecord],
        *,
        status: Status,
        fetched_at: int,
        request_id: str | None,
        previous: StoredWindow | _Unchecked | None = _UNCHECKED,
    ) -> None:
        """Store one day's window and its records in one transaction, replacing what that
        (scope, day) held before.

        ``records`` must be the ones ``[start, end)`` owns, in order; ``start`` and ``end``
        must lie within one UTC day. With ``previous`` (what the day held when the caller
        planned this write, ``None`` for nothing), the write is refused if another writer
        changed the day since: replacing it would drop that writer's records.

        Raises:
            StoreConflictError: ``previous`` no longer matches the stored day.
        """
        day = day_start(start)
        if not day <= start <= end <= day + DAY:
            raise ValueError(f"window [{start}, {end}) is not within one UTC day")
        tokens = sum(r.tokens for r in records)
        with self._lock:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                if not isinstance(previous, _Unchecked):
                    row = db.execute(
                        "SELECT start, end, status, fetched_at FROM windows "
                        "WHERE scope = ? AND day = ?",
                        (scope, day),
                    ).fetchone()
                    expected = (
                        None
                        if previous is None
                        else (previous.start, previous.end, previous.status, previous.fetched_at)
                    )
                    if (tuple(row) if row is not None else None) != expected:
                        raise StoreConflictError(
                            f"another writer changed day {utc_day(day)} of {self._path!r} "
                            "while this backfill was fetching it; nothing of this day was "
                            "written: run the backfill again"
                        )
                db.execute("DELETE FROM records WHERE scope = ? AND day = ?", (scope, day))
                db.executemany(
                    "INSERT INTO records (scope, day, seq, timestamp, model, tokens) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        (scope, day, seq, r.timestamp, r.model, r.tokens)
                        for seq, r in enumerate(records)
                    ),
                )
                db.execute(
                    "INSERT OR REPLACE INTO windows (scope, day, start, end, status, fetched_at, "
                    "request_id, record_count, tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (scope, day, start, end, status, fetched_at, request_id, len(records), tokens),
                )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    # -- plumbing -------------------------------------------------------------------------------

    def _bounds(
        self, start: TimeLike | None, end: TimeLike | None, user_id: str | int | None
    ) -> tuple[str, int, int]:
        scope = check_user_id(user_id) or ""
        lo, hi = to_half_open(start, end, open_ends=True)
        self._conn()
        return scope, lo, hi

    def _aggregate(
        self,
        columns: str,
        tail: str,
        start: TimeLike | None,
        end: TimeLike | None,
        user_id: str | int | None,
    ) -> list[Any]:
        scope, lo, hi = self._bounds(start, end, user_id)
        with self._lock:
            return (
                self._conn()
                .execute(
                    f"SELECT {columns} FROM records WHERE scope = ? AND day >= ? AND day < ? "
                    f"AND timestamp >= ? AND timestamp < ? {tail}",
                    (scope, day_start(lo), hi, lo, hi),
                )
                .fetchall()
            )

    def _rows(
        self, start: TimeLike | None, end: TimeLike | None, user_id: str | int | None
    ) -> Iterator[tuple[int, str, int]]:
        scope, lo, hi = self._bounds(start, end, user_id)
        return self._read_rows(scope, lo, hi)

    def _read_rows(self, scope: str, lo: int, hi: int) -> Iterator[tuple[int, str, int]]:
        # One read transaction on a connection of its own: the rows come from one snapshot
        # even while a backfill replaces days (in WAL mode a reader never blocks the writer).
        reader = sqlite3.connect(
            f"file:{urllib.parse.quote(self._path)}?mode=ro", uri=True, isolation_level=None
        )
        try:
            reader.execute("BEGIN")
            cursor = reader.execute(
                "SELECT timestamp, model, tokens FROM records "
                "WHERE scope = ? AND day >= ? AND day < ? "
                "AND timestamp >= ? AND timestamp < ? ORDER BY day, seq",
                (scope, day_start(lo), hi, lo, hi),
            )
            while batch := cursor.fetchmany(_BATCH):
                yield from batch
        finally:
            reader.close()


def _batched(rows: Iterable[tuple[int, str, int]], size: int = _BATCH) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
