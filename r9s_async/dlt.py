"""A dlt source of r9s usage and balances, for loading them into any warehouse dlt supports.

Needs the ``dlt`` extra (``pip install 'r9s_async[dlt]'``). Built only on the public client
(:class:`r9s_async.Client`), so loads get its day windows, exact merging, retries and
throttling.

* ``usage``: one row per usage record. A UTC day of one account and member is the unit of
  loading: loading a day again replaces every row of that day (``merge`` with the
  ``delete-insert`` strategy on ``day_key``), and a day that now has no records is emptied by a
  tombstone row (flagged ``day_cleared``, a dlt ``hard_delete`` column) that deletes the day's
  old rows and is itself never inserted.
* ``balance``: one appended snapshot per account and run, amounts as exact decimals.

Example::

    import dlt
    from r9s_async.dlt import r9s_source

    pipeline = dlt.pipeline("r9s_usage", destination="postgres", dataset_name="r9s")
    pipeline.run(r9s_source(start="2025-01-01"))
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dlt
from dlt.common.typing import TSecretValue
from dlt.sources import DltResource

from r9s_async import Account, Client  # the public client only, as users would

__all__ = ["USAGE_COLUMNS", "r9s_source"]

_DAY = 86_400

USAGE_COLUMNS: dict[str, dict[str, Any]] = {
    "day_key": {"data_type": "text", "nullable": False, "merge_key": True},
    "day": {"data_type": "date", "nullable": False},
    "account": {"data_type": "text", "nullable": False},
    "user_id": {"data_type": "text", "nullable": True},
    "seq": {"data_type": "bigint", "nullable": True},
    "timestamp": {"data_type": "timestamp", "nullable": True, "timezone": True},
    "model": {"data_type": "text", "nullable": True},
    "tokens": {"data_type": "bigint", "nullable": True},
    "day_cleared": {"data_type": "bool", "nullable": True, "hard_delete": True},
}
"""The ``usage`` table's columns as dlt column hints."""

_BALANCE_COLUMNS: dict[str, dict[str, Any]] = {
    "taken_at": {"data_type": "timestamp", "nullable": False, "timezone": True},
    "account": {"data_type": "text", "nullable": False},
    "balance": {"data_type": "decimal", "nullable": False},
    "coupon_balance": {"data_type": "decimal", "nullable": False},
    "credit_limit": {"data_type": "decimal", "nullable": False},
    "total_coupon_amount": {"data_type": "decimal", "nullable": False},
    "currency": {"data_type": "text", "nullable": False},
}


class _Keys:
    """The management keys, out of every repr, so no dlt trace or log line can show one."""

    __slots__ = ("_keys",)

    def __init__(self, keys: Sequence[str | None]) -> None:
        self._keys = tuple(keys)

    def __repr__(self) -> str:
        return f"<{len(self._keys)} r9s key(s), redacted>"

    def __len__(self) -> int:
        return len(self._keys)

    def client(self, index: int, base_url: str | None) -> Client:
        return Client(self._keys[index], base_url=base_url)


def _to_day(value: date | datetime | str, name: str) -> date:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{name} must be timezone-aware, or a date")
        return value.astimezone(UTC).date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{name} must be an ISO date like 2025-01-01, not {value!r}") from None
    raise TypeError(f"{name} must be a date, an aware datetime or an ISO date string")


def _midnight(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def _label(account: Account, names: Sequence[str] | None, index: int) -> str:
    return names[index] if names else account.label


@dlt.source(name="r9s_async")
def r9s_source(
    api_key: TSecretValue = None,
    start: date | datetime | str | None = None,
    end: date | datetime | str | None = None,
    user_ids: Sequence[str | int | None] | None = None,
    account_names: Sequence[str] | None = None,
    recent_days: int = 2,
    base_url: str | None = None,
    external_schedule: bool = False,
) -> Sequence[DltResource]:
    """The r9s source: the ``usage`` and ``balance`` resources.

    Args:
        api_key: A management key, or a list of keys (one account each). Read by dlt from
            ``[sources.r9s_async] api_key`` in ``secrets.toml`` (or
            ``SOURCES__R9S_ASYNC__API_KEY``); when absent, the client reads ``R9S_API_KEY``.
        start: First UTC day to load on the first run (a ``date``, an aware ``datetime`` or
            an ISO date string); later runs continue from dlt's state. Defaults to 90 days
            before today.
        end: Exclusive last UTC day, for a backfill of a fixed range (a scheduler's
            partition): such a run neither reads nor moves the incremental state. ``None``
            loads up to today included.
        user_ids: Members to load (organisation admin keys only); ``None`` in the list (the
            default ``[None]``) is the organisation's own usage.
        account_names: Labels for the ``account`` column, one per key; default the key's
            fingerprint (:attr:`r9s_async.Account.label`).
        recent_days: Days before the last day loaded that are fetched again on each run,
            because recent usage may still change.
        base_url: The API root, as :class:`r9s_async.Client` takes it.
        external_schedule: Take the range from the scheduler running the pipeline (an
            Airflow task's data interval, or dlt's ``DLT_INTERVAL_START`` and
            ``DLT_INTERVAL_END``): dlt's ``allow_external_schedulers``. Such a run is a
            backfill of that range, like one with ``end``.

    Returns:
        The ``usage`` and ``balance`` resources.

    Raises:
        ValueError: A bad range, ``recent_days`` or ``account_names`` (checked before anything
            is fetched).
        TypeError: An argument of the wrong type.
    """
    raw = [api_key] if api_key is None or isinstance(api_key, str) else list(api_key)
    keys = _Keys(raw)
    del api_key, raw  # never a local of this frame in a traceback
    if not isinstance(recent_days, int) or isinstance(recent_days, bool) or recent_days < 0:
        raise ValueError("recent_days must be a whole number of days, 0 or more")
    if account_names is not None and len(account_names) != len(keys):
        raise ValueError("account_names must name every key, in order")
    members = [None] if user_ids is None else list(user_ids)
    today = datetime.now(UTC).date()
    first = _to_day(start, "start") if start is not None else today - timedelta(days=90)
    last = _to_day(end, "end") if end is not None else None
    if last is not None and last < first:
        raise ValueError(f"end ({last}) is before start ({first})")

    def usage(
        day: dlt.sources.incremental[date] = dlt.sources.incremental(  # noqa: B008 - dlt binds it
            "day",
            initial_value=first,
            end_value=last,
            lag=recent_days,
            range_start="closed",
            range_end="open",
            primary_key=(),  # no row-hash dedup: identical records are distinct usage
            allow_external_schedulers=external_schedule,
        ),
    ) -> Iterator[dict[str, Any]]:
        lo = day.start_value or first
        hi = day.end_value or datetime.now(UTC).date() + timedelta(days=1)
        if hi <= lo:
            return
        for index in range(len(keys)):
            with keys.client(index, base_url) as client:
                account = client.account
                label = _label(account, account_names, index)
                for member in members:
                    uid = None if member is None else str(member)
                    yield from _usage_rows(client, account, label, uid, lo, hi)

    def balance() -> Iterator[dict[str, Any]]:
        for index in range(len(keys)):
            with keys.client(index, base_url) as client:
                snapshot = client.balance()
                yield {
                    "taken_at": datetime.now(UTC),
                    "account": _label(client.account, account_names, index),
                    "balance": snapshot.balance,
                    "coupon_balance": snapshot.coupon_balance,
                    "credit_limit": snapshot.credit_limit,
                    "total_coupon_amount": snapshot.total_coupon_amount,
                    "currency": snapshot.currency_code,
                }

    return [
        dlt.resource(
            usage,
            name="usage",
            write_disposition={"disposition": "merge", "strategy": "delete-insert"},
            columns=USAGE_COLUMNS,
        ),
        dlt.resource(
            balance,
            name="balance",
            write_disposition="append",
            columns=_BALANCE_COLUMNS,
        ),
    ]


def _usage_rows(
    client: Client, account: Account, label: str, uid: str | None, lo: date, hi: date
) -> Iterator[dict[str, Any]]:
    """The rows of the days ``[lo, hi)`` of one account and member, a tombstone for each
    day without records."""
    for report in client.iter_usage(_midnight(lo), _midnight(hi), user_id=uid):
        day_first = report.start - report.start % _DAY
        day = datetime.fromtimestamp(day_first, tz=UTC).date()
        day_key = f"{account.fingerprint}|{uid or ''}|{day.isoformat()}"
        common = {"day_key": day_key, "day": day, "account": label, "user_id": uid}
        # Half-open days: a server whose end_time is inclusive also answers the next
        # midnight. Harmless once usage() is half-open itself.
        records = [r for r in report.records if day_first <= r.timestamp < day_first + _DAY]
        if not records:
            yield {**common, "day_cleared": True}
            continue
        for seq, record in enumerate(records):
            yield {
                **common,
                "seq": seq,
                "timestamp": record.datetime,
                "model": record.model,
                "tokens": record.tokens,
            }
