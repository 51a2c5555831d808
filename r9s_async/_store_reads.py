"""The reads of a ``UsageStore``: its windows, its records in order, and token totals.

Reads default to every account and to the organisation's own rows (``user_id=None``); a range
is half-open, ``[start, end)``, and is read on the records' primary key.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from datetime import date
from typing import Any

from ._config import check_user_id
from ._models import UsageRecord
from ._store_accounts import AccountTables, account_ids
from ._store_windows import WINDOW_COLUMNS, StoredWindow, stored_window
from ._times import TimeLike, day_start, to_half_open, utc_day

__all__ = ["BATCH", "RecordReads"]

BATCH = 5_000


class RecordReads(AccountTables):
    """Stored windows, records and totals; mixed into ``UsageStore``."""

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
        with self._file.read() as db:
            for account_id, label in account_ids(db, account, path=self._file.path).items():
                rows = db.execute(
                    f"SELECT {WINDOW_COLUMNS} FROM windows "
                    "WHERE account = ? AND scope = ? ORDER BY day",
                    (account_id, scope),
                ).fetchall()
                out += [stored_window(db, account_id, label, uid, row) for row in rows]
        return out

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
        with self._file.read() as db:
            row = db.execute(f"SELECT count(*) FROM records WHERE {where}", params)
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

    def _bounds(
        self,
        start: TimeLike | None,
        end: TimeLike | None,
        user_id: str | int | None,
        account: str | None,
    ) -> tuple[str, int, int, dict[int, str]]:
        scope = check_user_id(user_id) or ""
        lo, hi = to_half_open(start, end, open_ends=True)
        with self._file.read() as db:
            ids = account_ids(db, account, path=self._file.path)
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
        with self._file.read() as db:
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
        with self._file.unusable_is_store_error():
            reader = self._file.connect_read_only()
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
                    while batch := cursor.fetchmany(BATCH):
                        for timestamp, model, tokens in batch:
                            yield timestamp, model, tokens, label, scope
            finally:
                reader.close()


def _where(ids: Iterable[int], scope: str, lo: int, hi: int) -> tuple[str, tuple[Any, ...]]:
    """The WHERE clause of a read: accounts, scope and ``[lo, hi)``, on the primary key."""
    accounts = tuple(ids)
    marks = ", ".join("?" * len(accounts))
    clause = (
        f"account IN ({marks}) AND scope = ? AND day >= ? AND day < ? "
        "AND timestamp >= ? AND timestamp < ?"
    )
    return clause, (*accounts, scope, day_start(lo), hi, lo, hi)
