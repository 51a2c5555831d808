"""``UsageStore``: the SQLite file a backfill fills window by window, with summaries and exports.

Layout (schema version 2, WAL mode):

- ``accounts``: one row per account whose data the file holds: the API root (``base_url``),
  the key's ``fingerprint`` (never the key) and an optional readable ``name``.
- ``windows``: one row per (account, scope, UTC day) that has been stored: the span
  ``[start, end)`` of that day it covers, ``status`` (``"complete"``, or ``"recent"`` while the
  data may still change), ``fetched_at``, ``request_id``, ``record_count`` and ``tokens``.
- ``records``: the usage records, each owned by one window (``account``, ``scope``, ``day``) and
  numbered by ``seq`` in the order the server sent them. Identical records are distinct usage:
  they are all kept, told apart by ``seq``.

- ``balances`` and ``alerts_sent``: balance snapshots and the failed checks already reported,
  created by their first write (see ``_store_money.py``).

``scope`` is the ``user_id`` a backfill asked for, or ``''`` for the organisation.
A window and its records are always replaced in one transaction, so after any crash the file
holds whole windows only. A file is identified (``application_id``, ``user_version``, its
tables) through a read-only connection before anything writes to it, so a file that is not a
store is refused unchanged.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
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
from ._exceptions import StoreConflictError, StoreError
from ._models import Account, UsageRecord
from ._optional import import_optional
from ._store_money import MoneyTables
from ._times import DAY, TimeLike, day_start, to_half_open, utc_day

__all__ = ["SCHEMA_VERSION", "StoredWindow", "UsageStore", "check_account_name"]

SCHEMA_VERSION = 2
_APPLICATION_ID = 0x72397375  # "r9su": marks the file as ours
_TABLES = frozenset({"accounts", "windows", "records"})
_BATCH = 5_000
_TOKENS_LIMIT = 1 << 63  # SQLite integers are signed 64-bit
_FINGERPRINT = re.compile(r"[0-9a-f]{16}")
# sqlite3 primary result codes that mean the bytes are not a (sound) database.
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26
_SQLITE_READONLY_DIRECTORY = 1544

_SCHEMA = """
CREATE TABLE accounts (
    id          INTEGER PRIMARY KEY,
    base_url    TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL UNIQUE,  -- of the base URL and the key, never the key
    name        TEXT    UNIQUE,           -- a readable name the user gave, if any
    created_at  INTEGER                   -- Unix seconds
);
CREATE TABLE windows (
    account      INTEGER NOT NULL REFERENCES accounts (id),
    scope        TEXT    NOT NULL,  -- user_id, or '' for the organisation
    day          INTEGER NOT NULL,  -- the UTC midnight (Unix seconds) of the window's day
    start        INTEGER NOT NULL,  -- first second covered
    end          INTEGER NOT NULL,  -- first second not covered: [start, end)
    status       TEXT    NOT NULL CHECK (status IN ('complete', 'recent')),
    fetched_at   INTEGER NOT NULL,  -- Unix seconds
    request_id   TEXT,
    record_count INTEGER NOT NULL,
    tokens       INTEGER,           -- their sum, NULL when it does not fit 64 bits
    PRIMARY KEY (account, scope, day)
) WITHOUT ROWID;
CREATE TABLE records (
    account   INTEGER NOT NULL,
    scope     TEXT    NOT NULL,
    day       INTEGER NOT NULL,     -- the window that owns the record
    seq       INTEGER NOT NULL,     -- position in that window: server order, twins kept apart
    timestamp INTEGER NOT NULL,
    model     TEXT    NOT NULL,
    tokens    INTEGER NOT NULL,
    PRIMARY KEY (account, scope, day, seq)
) WITHOUT ROWID;
"""

Status = Literal["complete", "recent"]


@frozen
class StoredWindow:
    """One stored window: which part of one UTC day a store holds, and how fresh it is.

    Attributes:
        account: The account it belongs to: its name when it has one, else its fingerprint.
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

    account: str
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


def check_account_name(name: object) -> str | None:
    """``name`` as an account name, or ``None``.

    Raises:
        TypeError: Not ``None`` or a ``str``.
        ValueError: Empty, surrounded by whitespace, holding control characters, longer than
            200 characters, or 16 hex digits (the shape of a fingerprint, so a filter by name
            or fingerprint stays unambiguous).
    """
    if name is None:
        return None
    if not isinstance(name, str):
        raise TypeError(f"account name must be a str, not {type(name).__name__}")
    if not name or name != name.strip() or not name.isprintable() or len(name) > 200:
        raise ValueError(
            "account name must be 1 to 200 printable characters, without leading or "
            f"trailing whitespace, not {name!r}"
        )
    if _FINGERPRINT.fullmatch(name.lower()):
        raise ValueError(
            f"account name {name!r} looks like a fingerprint (16 hex digits); choose another"
        )
    return name


class UsageStore(MoneyTables):
    """A SQLite file of usage records, filled by ``backfill()`` one whole window at a time.

    One file holds the data of several accounts (API root and key) and, for each, of the
    organisation and of single members, side by side. Reads default to every account and to
    the organisation's own rows (``user_id=None``), so an organisation's total never silently
    includes its members' separate backfills. It keeps balance snapshots beside the usage
    (:meth:`record_balance`, :meth:`balance_history`).

    Safe to share between threads (calls are serialised) and between processes (SQLite
    locking; WAL mode lets readers run beside a writer). Opening only reads the file: its
    identity is checked through a read-only connection, and a writable connection is opened
    at the first write, so a store on read-only media can be read. Use it as a context
    manager, or call :meth:`close`.

    Args:
        path: The database file. Created with its directory's permissions when missing. Not
            ``":memory:"`` or ``""``: reads go through a second connection to the file.
        create: Whether a missing file may be created; with ``False`` a missing file raises
            :class:`FileNotFoundError`.

    Raises:
        FileNotFoundError: ``create=False`` and there is no such file.
        ValueError: ``path`` is ``":memory:"`` or ``""``.
        StoreError: The file is not SQLite, is corrupt, belongs to another application, or
            has another schema version (for example one written by r9s_async 0.1). It was
            not changed.
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self._path = os.fspath(path)
        if not isinstance(self._path, str):
            raise TypeError("path must be a str or os.PathLike[str]")
        if self._path in ("", ":memory:"):
            raise ValueError(
                f"a usage store needs a file, not {self._path!r}: its reads open a second "
                "connection to the same path, which an in-memory database does not have"
            )
        exists = os.path.exists(self._path)
        if not create and not exists:
            raise FileNotFoundError(f"no usage store at {self._path!r}")
        self._lock = threading.RLock()
        self._closed = False
        self._reader: sqlite3.Connection | None = None
        self._writer: sqlite3.Connection | None = None
        try:
            with self._unusable_is_store_error():
                empty = True
                if exists:
                    self._reader = self._connect_ro()
                    empty = self._identify(self._reader)
                if empty:
                    if not create:
                        raise StoreError(
                            f"{self._path!r} is an empty file, not a usage store; run a "
                            "backfill into it first",
                            path=self._path,
                        )
                    self._write_connection()  # creates the schema
                    if self._reader is not None:
                        self._reader.close()  # opened on the empty file: start afresh
                    self._reader = self._connect_ro()
        except BaseException:
            self.close()
            raise

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, create: bool = True) -> Self:
        """Open (or create) the store at ``path``; the same as ``UsageStore(path)``."""
        return cls(path, create=create)

    # -- opening --------------------------------------------------------------------------------

    def _connect_ro(self) -> sqlite3.Connection:
        uri = f"file:{urllib.parse.quote(self._path)}?mode=ro"
        db = sqlite3.connect(
            uri, uri=True, timeout=60.0, isolation_level=None, check_same_thread=False
        )
        try:
            db.execute("PRAGMA schema_version").fetchone()  # the first read opens the file
        except sqlite3.OperationalError as exc:
            db.close()
            if exc.sqlite_errorcode != _SQLITE_READONLY_DIRECTORY:
                raise
            # A WAL file in a folder we cannot write (read-only media): no one can write it
            # either, so it is read as immutable, without the shared-memory file.
            db = sqlite3.connect(
                uri + "&immutable=1",
                uri=True,
                timeout=60.0,
                isolation_level=None,
                check_same_thread=False,
            )
        return db

    def _identify(self, db: sqlite3.Connection) -> bool:
        """Whether the file is empty (a new store); raises unless it is one of ours."""
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        if app_id == 0 and version == 0 and not names:
            return True
        path = self._path
        if app_id != _APPLICATION_ID:
            raise StoreError(
                f"{path!r} is an SQLite file of another application, not an r9s_async usage "
                "store; it was left unchanged: choose another path",
                path=path,
            )
        if version == 1:
            raise StoreError(
                f"{path!r} is a usage store of schema version 1, written by r9s_async 0.1 "
                "before stores recorded whose data they hold; this version reads schema "
                f"version {SCHEMA_VERSION}: move the file aside and run the backfill again",
                path=path,
            )
        if version != SCHEMA_VERSION:
            raise StoreError(
                f"{path!r} is a usage store of schema version {version}; this version of "
                f"r9s_async reads schema version {SCHEMA_VERSION}: use the r9s_async that "
                "wrote it, or another path",
                path=path,
            )
        if _TABLES - names:
            raise StoreError(
                f"{path!r} is marked as a usage store but lacks the tables "
                f"{', '.join(sorted(_TABLES - names))}: it is damaged; move it aside and run "
                "the backfill again",
                path=path,
            )
        return False

    def _write_connection(self) -> sqlite3.Connection:
        """The writable connection, opened (and the schema created) at the first write."""
        if self._writer is not None:
            return self._writer
        # Created only by the constructor; a store whose file vanished is not made again.
        mode = "rwc" if self._reader is None else "rw"
        db = sqlite3.connect(
            f"file:{urllib.parse.quote(self._path)}?mode={mode}",
            uri=True,
            timeout=60.0,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            # Identity first: `journal_mode = WAL` rewrites the header of whatever file it is.
            self._identify(db)
            self._setup(db)
        except BaseException:
            db.close()
            raise
        self._writer = db
        return db

    def _setup(self, db: sqlite3.Connection) -> None:
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
            # Again under the write lock: another process may have created it meanwhile.
            if self._identify(db):
                # One statement at a time: executescript() would commit the open transaction.
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA application_id = {_APPLICATION_ID}")
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    @contextlib.contextmanager
    def _unusable_is_store_error(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if exc.sqlite_errorcode & 0xFF not in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
                raise
            raise StoreError(
                f"{self._path!r} cannot be used as a usage store: {exc} (it is not an SQLite "
                "database, or it is corrupt); move it aside and run the backfill again into a "
                "new file",
                path=self._path,
            ) from exc

    # -- the object -----------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The database file."""
        return self._path

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
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
            self._closed = True
            reader, self._reader = self._reader, None
            writer, self._writer = self._writer, None
        # The writer last: the last connection to close checkpoints the WAL into the file.
        for db in (reader, writer):
            if db is not None:
                db.close()

    def _conn(self) -> sqlite3.Connection:
        if self._closed or self._reader is None:
            raise ValueError("this UsageStore is closed")
        return self._reader

    # -- accounts -------------------------------------------------------------------------------

    def accounts(self) -> list[Account]:
        """The accounts whose data the store holds, in the order they were first stored."""
        with self._lock, self._unusable_is_store_error():
            rows = (
                self._conn()
                .execute("SELECT base_url, fingerprint, name FROM accounts ORDER BY id")
                .fetchall()
            )
        return [Account(*row) for row in rows]

    def register_account(self, account: Account) -> None:
        """Record ``account`` in the store (a backfill does so before it fetches anything).

        An account is known by its fingerprint. A ``name`` given is recorded, replacing the
        account's earlier name; ``name=None`` keeps the name it has.

        Raises:
            TypeError: ``account`` is not an :class:`Account`.
            ValueError: The name is not a valid account name, or another account of this
                store already has it.
        """
        _check_account(account)
        with self._lock, self._unusable_is_store_error():
            self._conn()
            db = self._write_connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                self._account_id(db, account, write=True)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def _account_id(self, db: sqlite3.Connection, account: Account, *, write: bool) -> int | None:
        row = db.execute(
            "SELECT id, name FROM accounts WHERE fingerprint = ?", (account.fingerprint,)
        ).fetchone()
        if account.name is not None:
            other = db.execute(
                "SELECT fingerprint FROM accounts WHERE name = ? AND fingerprint != ?",
                (account.name, account.fingerprint),
            ).fetchone()
            if other is not None:
                raise ValueError(
                    f"the account name {account.name!r} is already used in {self._path!r} by "
                    f"another account (fingerprint {other[0]}); choose another name"
                )
        if row is None:
            if not write:
                return None
            cursor = db.execute(
                "INSERT INTO accounts (base_url, fingerprint, name, created_at) "
                "VALUES (?, ?, ?, ?)",
                (account.base_url, account.fingerprint, account.name, int(time.time())),
            )
            return int(cursor.lastrowid or 0)
        if write and account.name is not None and account.name != row[1]:
            db.execute("UPDATE accounts SET name = ? WHERE id = ?", (account.name, row[0]))
        return int(row[0])

    def _account_ids(self, db: sqlite3.Connection, account: object) -> dict[int, str]:
        """The accounts a read covers, id to label: one by name or fingerprint, or all."""
        if account is not None and not isinstance(account, str):
            raise TypeError(
                f"account must be a name or a fingerprint (str), not {type(account).__name__}"
            )
        rows = db.execute(
            "SELECT id, coalesce(name, fingerprint) FROM accounts ORDER BY id"
        ).fetchall()
        labels: dict[int, str] = dict(rows)
        if account is None:
            return labels
        found = db.execute(
            "SELECT id FROM accounts WHERE name = ? OR fingerprint = ?", (account, account)
        ).fetchone()
        if found is None:
            held = ", ".join(labels.values()) or "none"
            raise ValueError(
                f"no account {account!r} in the usage store {self._path!r} (accounts held: {held})"
            )
        return {found[0]: labels[found[0]]}

    # -- reads --------------------------------------------------------------------------------

    def windows(
        self, *, user_id: str | int | None = None, account: str | None = None
    ) -> list[StoredWindow]:
        """Stored windows of one scope, in time order per account.

        Args:
            user_id: The member whose backfill to list; ``None`` for the organisation's own.
            account: An account's name or fingerprint; ``None`` for every account, in the
                order they were first stored.

        Raises:
            ValueError: No such account in the store.
        """
        scope = check_user_id(user_id) or ""
        uid = scope or None
        out: list[StoredWindow] = []
        with self._lock, self._unusable_is_store_error():
            db = self._conn()
            for account_id, label in self._account_ids(db, account).items():
                rows = db.execute(
                    "SELECT day, start, end, status, fetched_at, request_id, record_count, "
                    "tokens FROM windows WHERE account = ? AND scope = ? ORDER BY day",
                    (account_id, scope),
                ).fetchall()
                out += [self._window(db, account_id, label, uid, row) for row in rows]
        return out

    def _window(
        self,
        db: sqlite3.Connection,
        account_id: int,
        label: str,
        uid: str | None,
        row: tuple[Any, ...],
    ) -> StoredWindow:
        day, start, end, status, fetched_at, request_id, record_count, tokens = row
        if tokens is None:  # a day whose sum does not fit 64 bits: summed exactly here
            tokens = sum(
                t
                for (t,) in db.execute(
                    "SELECT tokens FROM records WHERE account = ? AND scope = ? AND day = ?",
                    (account_id, uid or "", day),
                )
            )
        return StoredWindow(
            label, uid, start, end, status, fetched_at, request_id, record_count, tokens
        )

    def iter_records(
        self,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        user_id: str | int | None = None,
        account: str | None = None,
    ) -> Iterator[UsageRecord]:
        """Stored records with ``start <= timestamp < end``, in timestamp order (server order
        kept within a second) within each account; accounts in the order they were first
        stored.

        Records are read in batches from one snapshot, so memory does not grow with the range
        and a backfill running meanwhile is not seen half-done. Arguments are checked at once.

        Args:
            start: First second; ``None`` for the earliest stored.
            end: Exclusive end; ``None`` for no end.
            user_id: The member whose backfill to read; ``None`` for the organisation's own
                records (never its members' too).
            account: An account's name or fingerprint; ``None`` for every account.

        Raises:
            ValueError: A bad range, or no such account in the store.
        """
        rows = self._rows(start, end, user_id, account)
        return (UsageRecord(row[0], row[2], row[1]) for row in rows)

    def count_records(
        self,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        user_id: str | int | None = None,
        account: str | None = None,
    ) -> int:
        """How many records :meth:`iter_records` would yield."""
        scope, lo, hi, ids = self._bounds(start, end, user_id, account)
        where, params = _where(ids, scope, lo, hi)
        with self._lock, self._unusable_is_store_error():
            row = self._conn().execute(f"SELECT count(*) FROM records WHERE {where}", params)
            return int(row.fetchone()[0])

    def tokens_by_model(
        self,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        user_id: str | int | None = None,
        account: str | None = None,
    ) -> dict[str, int]:
        """Tokens per model in ``[start, end)``, largest first (the accounts read summed).

        ``user_id`` and ``account`` select as in :meth:`iter_records`.
        """
        totals = self._totals("model", start, end, user_id, account)
        ordered = sorted(totals.items(), key=lambda item: (-item[1], item[0][0]))
        return {model: total for (model,), total in ordered}

    def tokens_by_day(
        self,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        user_id: str | int | None = None,
        account: str | None = None,
    ) -> dict[date, int]:
        """Tokens per UTC day in ``[start, end)``, in day order (the accounts read summed).

        ``user_id`` and ``account`` select as in :meth:`iter_records`.
        """
        totals = self._totals("day", start, end, user_id, account)
        return {utc_day(day): total for (day,), total in sorted(totals.items())}

    def tokens_by_day_and_model(
        self,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        user_id: str | int | None = None,
        account: str | None = None,
    ) -> dict[tuple[date, str], int]:
        """Tokens per (UTC day, model) in ``[start, end)``, in day order then model order
        (the accounts read summed).

        ``user_id`` and ``account`` select as in :meth:`iter_records`.
        """
        totals = self._totals("day, model", start, end, user_id, account)
        return {(utc_day(day), model): total for (day, model), total in sorted(totals.items())}

    # -- exports ------------------------------------------------------------------------------

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

    # -- the backfill's side --------------------------------------------------------------------

    def coverage(
        self, account: Account, scope: str, first: int, last: int
    ) -> dict[int, StoredWindow]:
        """Stored windows of ``account`` and ``scope`` whose day meets ``[first, last)``, by
        day. An account the store does not hold has none."""
        _check_account(account)
        first_day = day_start(first)
        uid = scope or None
        with self._lock, self._unusable_is_store_error():
            db = self._conn()
            row = db.execute(
                "SELECT id, coalesce(name, fingerprint) FROM accounts WHERE fingerprint = ?",
                (account.fingerprint,),
            ).fetchone()
            if row is None:
                return {}
            account_id, label = row
            rows = db.execute(
                "SELECT day, start, end, status, fetched_at, request_id, record_count, tokens "
                "FROM windows WHERE account = ? AND scope = ? AND day >= ? AND day < ?",
                (account_id, scope, first_day, last),
            ).fetchall()
            return {row[0]: self._window(db, account_id, label, uid, row) for row in rows}

    def replace_window(
        self,
        account: Account,
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
        """Store one day's window of ``account`` and its records in one transaction,
        replacing what that (account, scope, day) held before.

        ``records`` must be the ones ``[start, end)`` owns, in order; ``start`` and ``end``
        must lie within one UTC day. The account is recorded if the store does not hold it
        yet. With ``previous`` (what the day held when the caller planned this write,
        ``None`` for nothing), the write is refused if another writer changed the day since:
        replacing it would drop that writer's records.

        Raises:
            ValueError: The window is not within one UTC day, a record lies outside it, a
                record's tokens are not in ``[0, 2**63)``, or the account's name is taken.
            StoreConflictError: ``previous`` no longer matches the stored day.
        """
        _check_account(account)
        day = day_start(start)
        if not day <= start <= end <= day + DAY:
            raise ValueError(f"window [{start}, {end}) is not within one UTC day")
        for index, r in enumerate(records):
            if not 0 <= r.tokens < _TOKENS_LIMIT:
                raise ValueError(
                    f"record {index} of window [{start}, {end}) has {r.tokens} tokens; a usage "
                    "store holds 0 <= tokens < 2**63"
                )
            if not start <= r.timestamp < end:
                raise ValueError(
                    f"record {index} (timestamp {r.timestamp}) lies outside its window "
                    f"[{start}, {end})"
                )
        tokens = sum(r.tokens for r in records)
        stored_tokens = tokens if tokens < _TOKENS_LIMIT else None
        with self._lock, self._unusable_is_store_error():
            self._conn()
            db = self._write_connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                account_id = self._account_id(db, account, write=True)
                if not isinstance(previous, _Unchecked):
                    row = db.execute(
                        "SELECT start, end, status, fetched_at FROM windows "
                        "WHERE account = ? AND scope = ? AND day = ?",
                        (account_id, scope, day),
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
                            "written: run the backfill again",
                            path=self._path,
                        )
                db.execute(
                    "DELETE FROM records WHERE account = ? AND scope = ? AND day = ?",
                    (account_id, scope, day),
                )
                db.executemany(
                    "INSERT INTO records (account, scope, day, seq, timestamp, model, tokens) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        (account_id, scope, day, seq, r.timestamp, r.model, r.tokens)
                        for seq, r in enumerate(records)
                    ),
                )
                db.execute(
                    "INSERT OR REPLACE INTO windows (account, scope, day, start, end, status, "
                    "fetched_at, request_id, record_count, tokens) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        account_id,
                        scope,
                        day,
                        start,
                        end,
                        status,
                        fetched_at,
                        request_id,
                        len(records),
                        stored_tokens,
                    ),
                )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    # -- plumbing -------------------------------------------------------------------------------

    def _bounds(
        self,
        start: TimeLike | None,
        end: TimeLike | None,
        user_id: str | int | None,
        account: str | None,
    ) -> tuple[str, int, int, dict[int, str]]:
        scope = check_user_id(user_id) or ""
        lo, hi = to_half_open(start, end, open_ends=True)
        with self._lock, self._unusable_is_store_error():
            ids = self._account_ids(self._conn(), account)
        return scope, lo, hi, ids

    def _totals(
        self,
        keys: str,
        start: TimeLike | None,
        end: TimeLike | None,
        user_id: str | int | None,
        account: str | None,
    ) -> dict[tuple[Any, ...], int]:
        scope, lo, hi, ids = self._bounds(start, end, user_id, account)
        where, params = _where(ids, scope, lo, hi)
        with self._lock, self._unusable_is_store_error():
            db = self._conn()
            try:
                rows = db.execute(
                    f"SELECT {keys}, sum(tokens) FROM records WHERE {where} GROUP BY {keys}",
                    params,
                ).fetchall()
                return {tuple(row[:-1]): row[-1] for row in rows}
            except sqlite3.OperationalError as exc:
                if "integer overflow" not in str(exc):
                    raise
            # A total beyond 64 bits, which SQLite's sum() cannot hold: add up in Python.
            totals: dict[tuple[Any, ...], int] = {}
            for *key, tokens in db.execute(
                f"SELECT {keys}, tokens FROM records WHERE {where}", params
            ):
                group = tuple(key)
                totals[group] = totals.get(group, 0) + tokens
            return totals

    def _rows(
        self,
        start: TimeLike | None,
        end: TimeLike | None,
        user_id: str | int | None,
        account: str | None,
    ) -> Iterator[tuple[int, str, int, str, str]]:
        scope, lo, hi, ids = self._bounds(start, end, user_id, account)
        return self._read_rows(ids, scope, lo, hi)

    def _read_rows(
        self, ids: dict[int, str], scope: str, lo: int, hi: int
    ) -> Iterator[tuple[int, str, int, str, str]]:
        # One read transaction on a connection of its own: the rows come from one snapshot
        # even while a backfill replaces days (in WAL mode a reader never blocks the writer).
        with self._unusable_is_store_error():
            reader = self._connect_ro()
            try:
                reader.execute("BEGIN")
                # Names as of this snapshot (a later backfill may have renamed an account).
                labels = dict(
                    reader.execute("SELECT id, coalesce(name, fingerprint) FROM accounts")
                )
                for account_id in ids:
                    label = labels[account_id]
                    cursor = reader.execute(
                        "SELECT timestamp, model, tokens FROM records "
                        "WHERE account = ? AND scope = ? AND day >= ? AND day < ? "
                        "AND timestamp >= ? AND timestamp < ? ORDER BY day, seq",
                        (account_id, scope, day_start(lo), hi, lo, hi),
                    )
                    while batch := cursor.fetchmany(_BATCH):
                        for timestamp, model, tokens in batch:
                            yield timestamp, model, tokens, label, scope
            finally:
                reader.close()


def _check_account(account: object) -> None:
    if not isinstance(account, Account):
        raise TypeError(f"account must be an Account, not {type(account).__name__}")
    check_account_name(account.name)


def _where(ids: Iterable[int], scope: str, lo: int, hi: int) -> tuple[str, tuple[Any, ...]]:
    """The WHERE clause of a read: accounts, scope and ``[lo, hi)``, on the primary key."""
    accounts = tuple(ids)
    marks = ", ".join("?" * len(accounts))
    clause = (
        f"account IN ({marks}) AND scope = ? AND day >= ? AND day < ? "
        "AND timestamp >= ? AND timestamp < ?"
    )
    return clause, (*accounts, scope, day_start(lo), hi, lo, hi)


def _batched(rows: Iterable[tuple[Any, ...]], size: int = _BATCH) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
