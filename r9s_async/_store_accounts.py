"""The accounts of a ``UsageStore``: which API roots and keys (by fingerprint) its data is of.

One row per account: the API root (``base_url``), the key's ``fingerprint`` (never the key)
and an optional readable ``name``, unique within the file.
"""

from __future__ import annotations

import re
import sqlite3
import time

from ._models import Account
from ._store_file import StorePart

__all__ = ["AccountTables", "account_id", "account_ids", "check_account", "check_account_name"]

_FINGERPRINT = re.compile(r"[0-9a-f]{16}")


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


def check_account(account: object) -> None:
    """Raise unless ``account`` is an :class:`Account` with a valid name."""
    if not isinstance(account, Account):
        raise TypeError(f"account must be an Account, not {type(account).__name__}")
    check_account_name(account.name)


def account_id(db: sqlite3.Connection, account: Account, *, write: bool, path: str) -> int | None:
    """The row id of ``account`` (``None`` if the file lacks it and ``write`` is false); with
    ``write``, the account is added, or given its new name.

    Raises:
        ValueError: Another account of the file (at ``path``) has the name.
    """
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
                f"the account name {account.name!r} is already used in {path!r} by "
                f"another account (fingerprint {other[0]}); choose another name"
            )
    if row is None:
        if not write:
            return None
        cursor = db.execute(
            "INSERT INTO accounts (base_url, fingerprint, name, created_at) VALUES (?, ?, ?, ?)",
            (account.base_url, account.fingerprint, account.name, int(time.time())),
        )
        return int(cursor.lastrowid or 0)
    if write and account.name is not None and account.name != row[1]:
        db.execute("UPDATE accounts SET name = ? WHERE id = ?", (account.name, row[0]))
    return int(row[0])


def account_ids(db: sqlite3.Connection, account: object, *, path: str) -> dict[int, str]:
    """The accounts a read covers, id to label: one by name or fingerprint, or all."""
    if account is not None and not isinstance(account, str):
        raise TypeError(
            f"account must be a name or a fingerprint (str), not {type(account).__name__}"
        )
    rows = db.execute("SELECT id, coalesce(name, fingerprint) FROM accounts ORDER BY id").fetchall()
    labels: dict[int, str] = dict(rows)
    if account is None:
        return labels
    found = db.execute(
        "SELECT id FROM accounts WHERE name = ? OR fingerprint = ?", (account, account)
    ).fetchone()
    if found is None:
        held = ", ".join(labels.values()) or "none"
        raise ValueError(
            f"no account {account!r} in the usage store {path!r} (accounts held: {held})"
        )
    return {found[0]: labels[found[0]]}


class AccountTables(StorePart):
    """The accounts a store holds; mixed into ``UsageStore``."""

    def accounts(self) -> list[Account]:
        """The accounts whose data the store holds, in the order they were first stored."""
        with self._file.read() as db:
            rows = db.execute("SELECT base_url, fingerprint, name FROM accounts ORDER BY id")
            return [Account(*row) for row in rows.fetchall()]

    def register_account(self, account: Account) -> None:
        """Record ``account`` in the store (a backfill does so before it fetches anything).

        An account is known by its fingerprint. A ``name`` given is recorded, replacing the
        account's earlier name; ``name=None`` keeps the name it has.

        Raises:
            TypeError: ``account`` is not an :class:`Account`.
            ValueError: The name is not a valid account name, or another account of this
                store already has it.
        """
        check_account(account)
        with self._file.write() as db:
            account_id(db, account, write=True, path=self._file.path)
