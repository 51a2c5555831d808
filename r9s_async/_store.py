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

The class is assembled from parts, one concern each, over one ``StoreFile`` (``_store_file.py``:
identity, connections, schema, errors): accounts (``_store_accounts.py``), reads
(``_store_reads.py``), exports (``_store_exports.py``), the backfill's writes
(``_store_windows.py``) and the money tables (``_store_money.py``).
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Self

from ._store_accounts import check_account_name
from ._store_exports import RecordExports
from ._store_file import SCHEMA_VERSION, StoreFile
from ._store_money import MoneyTables
from ._store_windows import BackfillWrites, Status, StoredWindow

__all__ = ["SCHEMA_VERSION", "Status", "StoredWindow", "UsageStore", "check_account_name"]


class UsageStore(RecordExports, BackfillWrites, MoneyTables):
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
        self._file = StoreFile(path, create=create)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, create: bool = True) -> Self:
        """Open (or create) the store at ``path``; the same as ``UsageStore(path)``."""
        return cls(path, create=create)

    @property
    def path(self) -> str:
        """The database file."""
        return self._file.path

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._file.closed

    def __repr__(self) -> str:
        state = "closed" if self._file.closed else "open"
        return f"UsageStore({self._file.path!r}, {state})"

    def __enter__(self) -> Self:
        self._file.reader()
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
        self._file.close()
