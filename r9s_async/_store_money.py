"""The money side of a ``UsageStore``: balance snapshots, costs of stored usage, sent alerts.

A part of ``UsageStore`` (it builds on the reads, for costs, and on the accounts). Two tables
join schema version 2, created by the first write that needs them (so a schema-2 file written
before they existed gains them then, and reads of such a file see none):

- ``balances``: one row per balance read: ``account``, ``taken_at`` (Unix seconds),
  ``balance``, ``credit_limit``, ``coupon_balance`` (exact decimal text), ``currency`` and
  ``request_id``.
- ``alerts_sent``: which failed checks a webhook already reported: ``account``,
  ``check_name``, ``period`` (the UTC day, ``YYYY-MM-DD``) and ``sent_at``.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import TYPE_CHECKING

from ._models import Account, Balance, BalanceSnapshot
from ._store_accounts import account_id, account_ids
from ._store_reads import RecordReads
from ._times import TimeLike

if TYPE_CHECKING:
    from ._prices import CostBreakdown, PriceTable

__all__ = ["AlertKey", "MoneyTables"]

AlertKey = tuple[str, str, str]
"""``(check, account fingerprint, period)``, as ``CheckResult.dedupe_key()`` gives it."""

_MONEY_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS balances (
    account        INTEGER NOT NULL REFERENCES accounts (id),
    taken_at       INTEGER NOT NULL,  -- Unix seconds
    balance        TEXT    NOT NULL,  -- exact decimal text, never a float
    credit_limit   TEXT    NOT NULL,
    coupon_balance TEXT    NOT NULL,
    currency       TEXT    NOT NULL,
    request_id     TEXT
)""",
    "CREATE INDEX IF NOT EXISTS balances_by_time ON balances (account, taken_at)",
    """CREATE TABLE IF NOT EXISTS alerts_sent (
    account    INTEGER NOT NULL REFERENCES accounts (id),
    check_name TEXT    NOT NULL,
    period     TEXT    NOT NULL,  -- the UTC day the failure is about, YYYY-MM-DD
    sent_at    INTEGER NOT NULL,  -- Unix seconds
    PRIMARY KEY (account, check_name, period)
) WITHOUT ROWID""",
)


class MoneyTables(RecordReads):
    """Balance history, costs and sent alerts; mixed into ``UsageStore``."""

    def record_balance(
        self, account: Account, balance: Balance, *, taken_at: int
    ) -> BalanceSnapshot:
        """Keep a balance read at ``taken_at`` for ``account`` (recorded if new to the store).

        Args:
            account: Whose balance it is (``AsyncClient.account``).
            balance: What ``balance()`` returned.
            taken_at: When it was read, Unix seconds.

        Returns:
            The snapshot as :meth:`balance_history` will list it.

        Raises:
            TypeError: ``account`` is not an :class:`~r9s_async.Account`, ``balance`` not a
                :class:`~r9s_async.Balance`, or ``taken_at`` not an ``int``.
            ValueError: The account's name is taken by another account of the store.
        """
        if not isinstance(balance, Balance):
            raise TypeError(f"balance must be a Balance, not {type(balance).__name__}")
        if isinstance(taken_at, bool) or not isinstance(taken_at, int):
            raise TypeError(f"taken_at must be Unix seconds (int), not {taken_at!r}")
        self.register_account(account)  # checks it, and its name
        amounts = (balance.balance, balance.credit_limit, balance.coupon_balance)
        with self._write() as db:
            found = account_id(db, account, write=True, path=self._file.path)
            db.execute(
                "INSERT INTO balances (account, taken_at, balance, credit_limit, "
                "coupon_balance, currency, request_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    found,
                    taken_at,
                    *map(str, amounts),
                    balance.currency_code,
                    balance.request_id,
                ),
            )
            label = db.execute(
                "SELECT coalesce(name, fingerprint) FROM accounts WHERE id = ?", (found,)
            ).fetchone()[0]
        return BalanceSnapshot(taken_at, label, *amounts, balance.currency_code, balance.request_id)

    def balance_history(self, *, account: str | None = None) -> list[BalanceSnapshot]:
        """The stored balance snapshots, oldest first (in the order stored within a second).

        Args:
            account: An account's name or fingerprint; ``None`` for every account.

        Raises:
            ValueError: No such account in the store.
        """
        with self._file.read() as db:
            ids = account_ids(db, account, path=self._file.path)
            if not ids or not _has_table(db, "balances"):
                return []
            marks = ", ".join("?" * len(ids))
            rows = db.execute(
                "SELECT account, taken_at, balance, credit_limit, coupon_balance, currency, "
                f"request_id FROM balances WHERE account IN ({marks}) ORDER BY taken_at, rowid",
                tuple(ids),
            ).fetchall()
        return [
            BalanceSnapshot(
                taken_at, ids[owner], Decimal(b), Decimal(limit), Decimal(coupon), cur, rid
            )
            for owner, taken_at, b, limit, coupon, cur, rid in rows
        ]

    def costs(
        self,
        prices: PriceTable,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        user_id: str | int | None = None,
        account: str | None = None,
    ) -> CostBreakdown:
        """Estimated costs of the stored usage in ``[start, end)`` per (UTC day, model).

        The same as ``prices.costs(store.tokens_by_day_and_model(...))``: each day is costed at
        the price in force then; estimates from a blended price, unpriced models kept apart.
        ``user_id`` and ``account`` select as in :meth:`iter_records` (the accounts read
        summed).

        Args:
            prices: The price table.
            start: First second; ``None`` for the earliest stored.
            end: Exclusive end; ``None`` for no end.
            user_id: The member whose backfill to read; ``None`` for the organisation's own.
            account: An account's name or fingerprint; ``None`` for every account.
        """
        cells = self.tokens_by_day_and_model(start, end, user_id=user_id, account=account)
        return prices.costs(cells)

    def alerts_sent(self, keys: Iterable[AlertKey]) -> set[AlertKey]:
        """Which of ``keys`` (``CheckResult.dedupe_key()``) were already reported."""
        wanted = set(keys)
        with self._file.read() as db:
            if not wanted or not _has_table(db, "alerts_sent"):
                return set()
            rows = db.execute(
                "SELECT check_name, fingerprint, period FROM alerts_sent "
                "JOIN accounts ON accounts.id = alerts_sent.account"
            ).fetchall()
        return wanted & {(check, fingerprint, period) for check, fingerprint, period in rows}

    def record_alerts_sent(self, keys: Iterable[AlertKey], *, sent_at: int) -> None:
        """Remember that the failures ``keys`` were reported at ``sent_at`` (Unix seconds).

        Raises:
            ValueError: A key names an account the store does not hold.
        """
        with self._write() as db:
            for check, fingerprint, period in keys:
                row = db.execute(
                    "SELECT id FROM accounts WHERE fingerprint = ?", (fingerprint,)
                ).fetchone()
                if row is None:
                    raise ValueError(f"no account with fingerprint {fingerprint!r} in the store")
                db.execute(
                    "INSERT OR REPLACE INTO alerts_sent (account, check_name, period, sent_at) "
                    "VALUES (?, ?, ?, ?)",
                    (row[0], check, period, sent_at),
                )

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, the money tables created first if the file lacks them."""
        with self._file.write() as db:
            for statement in _MONEY_SCHEMA:
                db.execute(statement)
            yield db


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    found = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return found is not None
