"""The stored windows of a ``UsageStore`` and the backfill's side of it: what a day holds
(``coverage``) and replacing one day with its records in one transaction (``replace_window``).

A window is one (account, scope, UTC day) row of ``windows``; its records are the rows of
``records`` with that key, numbered by ``seq`` in server order, so identical records are all
kept.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import date
from typing import Any, Literal

from attrs import frozen

from ._exceptions import StoreConflictError
from ._models import Account, UsageRecord
from ._store_accounts import account_id, check_account
from ._store_file import StorePart
from ._times import DAY, day_start, utc_day

__all__ = ["WINDOW_COLUMNS", "BackfillWrites", "Status", "StoredWindow", "stored_window"]

_TOKENS_LIMIT = 1 << 63  # SQLite integers are signed 64-bit

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


# The columns of ``windows`` that ``stored_window`` reads, in its order.
WINDOW_COLUMNS = "day, start, end, status, fetched_at, request_id, record_count, tokens"


def stored_window(
    db: sqlite3.Connection, account_id: int, label: str, uid: str | None, row: tuple[Any, ...]
) -> StoredWindow:
    """The :class:`StoredWindow` of a ``windows`` row (``WINDOW_COLUMNS``)."""
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


class _Unchecked:
    """Marks a write that does not check what the day held before."""


_UNCHECKED = _Unchecked()


class BackfillWrites(StorePart):
    """What a backfill reads and writes: one day at a time; mixed into ``UsageStore``."""

    def coverage(
        self, account: Account, scope: str, first: int, last: int
    ) -> dict[int, StoredWindow]:
        """Stored windows of ``account`` and ``scope`` whose day meets ``[first, last)``, by
        day. An account the store does not hold has none."""
        check_account(account)
        first_day = day_start(first)
        uid = scope or None
        with self._file.read() as db:
            row = db.execute(
                "SELECT id, coalesce(name, fingerprint) FROM accounts WHERE fingerprint = ?",
                (account.fingerprint,),
            ).fetchone()
            if row is None:
                return {}
            found, label = row
            rows = db.execute(
                f"SELECT {WINDOW_COLUMNS} "
                "FROM windows WHERE account = ? AND scope = ? AND day >= ? AND day < ?",
                (found, scope, first_day, last),
            ).fetchall()
            return {row[0]: stored_window(db, found, label, uid, row) for row in rows}

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
        check_account(account)
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
        path = self._file.path
        with self._file.write() as db:
            key = (account_id(db, account, write=True, path=path), scope, day)
            if not isinstance(previous, _Unchecked):
                row = db.execute(
                    "SELECT start, end, status, fetched_at FROM windows "
                    "WHERE account = ? AND scope = ? AND day = ?",
                    key,
                ).fetchone()
                expected = (
                    None
                    if previous is None
                    else (previous.start, previous.end, previous.status, previous.fetched_at)
                )
                if (tuple(row) if row is not None else None) != expected:
                    raise StoreConflictError(
                        f"another writer changed day {utc_day(day)} of {path!r} while this "
                        "backfill was fetching it; nothing of this day was written: run the "
                        "backfill again",
                        path=path,
                    )
            db.execute("DELETE FROM records WHERE account = ? AND scope = ? AND day = ?", key)
            db.executemany(
                "INSERT INTO records (account, scope, day, seq, timestamp, model, tokens) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                ((*key, seq, r.timestamp, r.model, r.tokens) for seq, r in enumerate(records)),
            )
            db.execute(
                "INSERT OR REPLACE INTO windows (account, scope, day, start, end, status, "
                "fetched_at, request_id, record_count, tokens) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*key, start, end, status, fetched_at, request_id, len(records), stored_tokens),
            )
