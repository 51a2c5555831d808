"""The SQLite file under a ``UsageStore``: its identity, its two connections, its schema.

A file is identified (``application_id``, ``user_version``, its tables) through a read-only
connection before anything writes to it, so a file that is not a store is refused unchanged.
The writable connection is opened (and the schema created) at the first write. SQLite's "not a
database" and "corrupt" errors become one :class:`StoreError` that names the file.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterator

from ._exceptions import StoreError

__all__ = ["SCHEMA_VERSION", "StoreFile", "StorePart"]

SCHEMA_VERSION = 2
_APPLICATION_ID = 0x72397375  # "r9su": marks the file as ours
_TABLES = frozenset({"accounts", "windows", "records"})
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


class StoreFile:
    """One store file: checked on opening, read through one connection, written through another.

    Calls are serialised by :attr:`lock`. See ``UsageStore`` for the arguments and errors.
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool) -> None:
        self.path = os.fspath(path)
        if not isinstance(self.path, str):
            raise TypeError("path must be a str or os.PathLike[str]")
        if self.path in ("", ":memory:"):
            raise ValueError(
                f"a usage store needs a file, not {self.path!r}: its reads open a second "
                "connection to the same path, which an in-memory database does not have"
            )
        exists = os.path.exists(self.path)
        if not create and not exists:
            raise FileNotFoundError(f"no usage store at {self.path!r}")
        self.lock = threading.RLock()
        self.closed = False
        self._reader: sqlite3.Connection | None = None
        self._writer: sqlite3.Connection | None = None
        try:
            with self.unusable_is_store_error():
                empty = True
                if exists:
                    self._reader = self.connect_read_only()
                    empty = self._identify(self._reader)
                if empty:
                    if not create:
                        raise StoreError(
                            f"{self.path!r} is an empty file, not a usage store; run a "
                            "backfill into it first",
                            path=self.path,
                        )
                    self.writer()  # creates the schema
                    if self._reader is not None:
                        self._reader.close()  # opened on the empty file: start afresh
                    self._reader = self.connect_read_only()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close both connections. Safe to call twice."""
        with self.lock:
            self.closed = True
            reader, self._reader = self._reader, None
            writer, self._writer = self._writer, None
        # The writer last: the last connection to close checkpoints the WAL into the file.
        for db in (reader, writer):
            if db is not None:
                db.close()

    def reader(self) -> sqlite3.Connection:
        """The read connection; raises ``ValueError`` once the store is closed."""
        if self.closed or self._reader is None:
            raise ValueError("this UsageStore is closed")
        return self._reader

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """The read connection, under the lock, with unusable files as :class:`StoreError`."""
        with self.lock, self.unusable_is_store_error():
            yield self.reader()

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction under the lock: committed at the end, rolled back on any error."""
        with self.lock, self.unusable_is_store_error():
            self.reader()
            db = self.writer()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def connect_read_only(self) -> sqlite3.Connection:
        """A new read-only connection to the file (a snapshot reader, or the identity check)."""
        uri = f"file:{urllib.parse.quote(self.path)}?mode=ro"
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
        path = self.path
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

    def writer(self) -> sqlite3.Connection:
        """The writable connection, opened (and the schema created) at the first write."""
        if self._writer is not None:
            return self._writer
        # Created only by the constructor; a store whose file vanished is not made again.
        mode = "rwc" if self._reader is None else "rw"
        db = sqlite3.connect(
            f"file:{urllib.parse.quote(self.path)}?mode={mode}",
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
    def unusable_is_store_error(self) -> Iterator[None]:
        """SQLite's "not a database" and "corrupt" errors raised as :class:`StoreError`."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if exc.sqlite_errorcode & 0xFF not in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
                raise
            raise StoreError(
                f"{self.path!r} cannot be used as a usage store: {exc} (it is not an SQLite "
                "database, or it is corrupt); move it aside and run the backfill again into a "
                "new file",
                path=self.path,
            ) from exc


class StorePart:
    """A part of ``UsageStore`` (its accounts, reads, backfill writes, money tables): the
    parts are mixed into ``UsageStore`` and share its one :class:`StoreFile`."""

    _file: StoreFile
