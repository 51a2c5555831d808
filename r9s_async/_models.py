"""The data users get back: small attrs classes with no knowledge of JSON."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime
from decimal import Decimal
from itertools import islice
from typing import TYPE_CHECKING

from attrs import field, frozen

from ._optional import import_optional
from ._times import utc_day

if TYPE_CHECKING:
    # Only for the annotation: pandas stays an optional extra. With pandas-stubs installed,
    # mypy users get the real DataFrame type; without them, the ignore keeps --strict quiet.
    import pandas  # type: ignore[import-untyped, import-not-found, unused-ignore]

    from ._prices import CostBreakdown, PriceTable

_MODELS_SHOWN = 3
_MODELS_SCANNED = 1000

__all__ = ["Account", "Balance", "BalanceSnapshot", "UsageRecord", "UsageReport"]


@frozen
class Account:
    """Whose numbers these are: an API root and a fingerprint of the key used there.

    Attributes:
        base_url: The API root, for example the public endpoint or a staging one.
        fingerprint: 16 hex digits derived from the base URL and the key; the key cannot be
            recovered from it.
        name: A readable name the user gave the account, if any.
    """

    base_url: str
    fingerprint: str
    name: str | None = None

    @property
    def label(self) -> str:
        """What reports and exports show (the name when there is one, else the fingerprint)."""
        return self.name or self.fingerprint


@frozen(weakref_slot=False)  # millions of them are held: 8 bytes each is worth it
class UsageRecord:
    """One usage record as the API reports it.

    Attributes:
        timestamp: Unix seconds (UTC).
        tokens: Tokens used.
        model: Model name, for example ``"gpt-4o-mini"``.
    """

    timestamp: int
    tokens: int
    model: str

    @property
    def datetime(self) -> datetime:
        """The timestamp as a timezone-aware UTC :class:`~datetime.datetime`."""
        return datetime.fromtimestamp(self.timestamp, tz=UTC)


@frozen
class UsageReport:
    """Usage for the closed range ``[start, end]`` (or one window of it).

    ``records`` are in timestamp order, the server's order kept within a timestamp.
    Identical records are distinct usage and are all kept.

    Attributes:
        records: The usage records.
        total_tokens: The sum of ``records[].tokens``.
        start: First second of the range, Unix seconds.
        end: ``end_time`` as asked, Unix seconds.
        request_ids: The ``meta.request_id`` of every answer the report was built from.
        consistent: ``False`` when an answer's records did not add up to the
            ``total_tokens`` it declared (a sign it was cut off; logged as a WARNING too).
    """

    records: list[UsageRecord]
    total_tokens: int
    start: int
    end: int
    request_ids: tuple[str, ...] = field(default=(), kw_only=True)
    consistent: bool = field(default=True, kw_only=True)

    def __repr__(self) -> str:
        # A summary, not the records: a REPL or notebook shows it whole, and asyncio formats
        # a task's result into messages (CPython gh-112559), so it must stay small and quick.
        models: list[str] = []
        seen: set[str] = set()
        # The first records only: asyncio formats a returned report twice (gh-112559), and a
        # walk over millions of records there costs tens of milliseconds each time.
        for record in islice(self.records, _MODELS_SCANNED):
            if record.model not in seen:
                seen.add(record.model)
                if len(models) < _MODELS_SHOWN:
                    models.append(record.model)
        shown = [repr(m if len(m) <= 40 else m[:39] + "…") for m in models]
        if len(seen) > len(models):
            shown.append(f"+{len(seen) - len(models)} more")
        if len(self.records) > _MODELS_SCANNED:
            shown.append("...")
        return (
            f"UsageReport(start={_iso(self.start)}, end={_iso(self.end)}, "
            f"records=<{len(self.records)} records>, total_tokens={self.total_tokens}, "
            f"models=[{', '.join(shown)}], consistent={self.consistent})"
        )

    def tokens_by_model(self) -> dict[str, int]:
        """Tokens per model, largest first."""
        totals: Counter[str] = Counter()
        for record in self.records:
            totals[record.model] += record.tokens
        return dict(totals.most_common())

    def tokens_by_day(self) -> dict[date, int]:
        """Tokens per UTC day, in day order."""
        totals: dict[date, int] = {}
        for record in self.records:
            day = utc_day(record.timestamp)
            totals[day] = totals.get(day, 0) + record.tokens
        return dict(sorted(totals.items()))

    def tokens_by_day_and_model(self) -> dict[tuple[date, str], int]:
        """Tokens per (UTC day, model), in day order then model order."""
        totals: dict[tuple[date, str], int] = {}
        for record in self.records:
            key = (utc_day(record.timestamp), record.model)
            totals[key] = totals.get(key, 0) + record.tokens
        return dict(sorted(totals.items()))

    def costs(self, prices: PriceTable) -> CostBreakdown:
        """Estimated costs per (UTC day, model), each day at the price in force then.

        The same as ``prices.costs(report.tokens_by_day_and_model())``: estimates from a
        blended price, with unpriced models kept apart (never costed as zero).

        Args:
            prices: The price table.
        """
        return prices.costs(self.tokens_by_day_and_model())

    def to_pandas(self) -> pandas.DataFrame:
        """The records as a :class:`pandas.DataFrame`; needs the ``pandas`` extra.

        Columns: ``timestamp`` (``datetime64[s, UTC]``), ``model`` and ``tokens`` (int64),
        one row per record in report order.
        """
        pd = import_optional("pandas", "pandas")
        records = self.records
        frame: pandas.DataFrame = pd.DataFrame(
            {
                "timestamp": pd.to_datetime(
                    [r.timestamp for r in records], unit="s", utc=True
                ).as_unit("s"),
                "model": pd.array([r.model for r in records], dtype="string"),
                "tokens": pd.array([r.tokens for r in records], dtype="int64"),
            }
        )
        return frame


def _iso(seconds: int) -> str:
    try:
        return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return str(seconds)  # beyond datetime's years


@frozen
class Balance:
    """The account balance. Amounts are exact :class:`~decimal.Decimal` values.

    Attributes:
        balance: The balance, taken from ``balance_str`` when the API sends it.
        currency_code: ISO currency code, for example ``"USD"``.
        coupon_balance: Remaining coupon credit.
        credit_limit: Credit limit.
        total_coupon_amount: Coupon credit granted in total.
        request_id: ``meta.request_id`` of the answer.
    """

    balance: Decimal
    currency_code: str
    coupon_balance: Decimal
    credit_limit: Decimal
    total_coupon_amount: Decimal
    request_id: str | None = None


@frozen
class BalanceSnapshot:
    """A balance as read at one moment and kept in a :class:`UsageStore`.

    Amounts are exact :class:`~decimal.Decimal` values (stored as decimal text).

    Attributes:
        taken_at: When it was read, Unix seconds (UTC).
        account: The account's name when it has one, else its fingerprint.
        balance: The balance.
        credit_limit: How far below zero the account may go.
        coupon_balance: Remaining coupon credit.
        currency: ISO currency code, for example ``"USD"``.
        request_id: ``meta.request_id`` of the answer it came from.
    """

    taken_at: int
    account: str
    balance: Decimal
    credit_limit: Decimal
    coupon_balance: Decimal
    currency: str
    request_id: str | None = None

    @property
    def day(self) -> date:
        """The UTC day it was read."""
        return utc_day(self.taken_at)
