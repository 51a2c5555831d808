"""What ``r9s-usage report`` and ``check`` compute from a store: totals, costs, burn, runway.

Reads only; every figure is exact (``Decimal`` money, ``int`` tokens) and rounded only by
whoever shows it. ``build_report()`` is the one place a report's data comes from, so another
output (an HTML page) can be built from the same ``StoreReport``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, localcontext
from typing import Literal

from attrs import frozen

from ._budget import (
    BURN_DAYS,
    SPIKE_BASELINE_DAYS,
    CheckResult,
    burn_rate_from_balances,
    burn_rate_from_costs,
    check_max_daily_cost,
    check_max_daily_tokens,
    check_min_balance,
    check_min_runway_days,
    check_spike_factor,
    runway_days,
    spike,
)
from ._html_report import BalancePoint, DayUsage, MemberUsage, ModelUsage, ReportData
from ._models import Account, BalanceSnapshot
from ._prices import _EXACT, PriceTable
from ._store import StoredWindow, UsageStore
from ._times import to_unix, utc_day

__all__ = [
    "GROUPS",
    "Burn",
    "CheckLimits",
    "FigureUnavailable",
    "ReportRow",
    "StoreReport",
    "build_report",
    "report_data",
    "resolve_account",
    "run_checks",
]

GROUPS = ("model", "day", "month", "account")
"""What ``--by`` may name."""

Cells = dict[tuple[str, str | None, date, str], int]  # (label, user_id, day, model) -> tokens


class FigureUnavailable(Exception):
    """A figure a check needs cannot be computed from the store (the message says what to do)."""


@frozen
class ReportRow:
    """One group of a report.

    Attributes:
        key: One value per grouping column (``None`` for the organisation's ``user_id``).
        tokens: Its tokens.
        cost: The estimated cost of its priced tokens; ``None`` without a price table or when
            none of its tokens is priced.
        unpriced_tokens: Its tokens that no price covers.
    """

    key: tuple[str | None, ...]
    tokens: int
    cost: Decimal | None = None
    unpriced_tokens: int = 0


@frozen
class Burn:
    """A burn rate and where it came from.

    Attributes:
        per_day: The spending per day; ``None`` when unknown.
        source: ``"prices"`` (estimated costs of stored usage) or ``"balances"`` (decreases
            between stored balance snapshots).
        first_day: The first of the 7 complete UTC days it averages.
        last_day: The last of them.
        currency: The currency of ``per_day``, when known.
    """

    per_day: Decimal | None
    source: Literal["prices", "balances"]
    first_day: date
    last_day: date
    currency: str | None


@frozen
class StoreReport:
    """Everything ``r9s-usage report`` shows.

    Attributes:
        start: First second of ``[start, end)``; ``None`` for the earliest stored.
        end: First second not included.
        columns: The grouping columns, in order.
        rows: One per group, in key order.
        total_tokens: Tokens of every row.
        currency: The price table's currency; ``None`` without one.
        total_cost: Estimated cost of the priced tokens; ``None`` without a price table.
        unpriced_by_model: Unpriced tokens per model.
        account: The one account reported on, else ``None`` (burn and runway are per account).
        balance: That account's latest balance snapshot, if any.
        burn: Its burn rate, when there is one account.
        runway_days: Days of runway; ``None`` when there is none to show (see ``runway_note``).
        runway_note: Why the runway is not a number, or ``None`` when it is.
    """

    start: int | None
    end: int
    columns: tuple[str, ...]
    rows: tuple[ReportRow, ...]
    total_tokens: int
    currency: str | None
    total_cost: Decimal | None
    unpriced_by_model: dict[str, int]
    account: str | None
    balance: BalanceSnapshot | None
    burn: Burn | None
    runway_days: Decimal | None
    runway_note: str | None

    @property
    def unpriced_tokens(self) -> int:
        """Tokens no price covers."""
        return sum(self.unpriced_by_model.values())


def resolve_account(store: UsageStore, account: str | None) -> list[Account]:
    """The accounts a read covers: the one named (by name or fingerprint), or all.

    Raises:
        ValueError: No such account in the store.
    """
    held = store.accounts()
    if account is None:
        return held
    chosen = [a for a in held if account in (a.name, a.fingerprint)]
    if not chosen:
        names = ", ".join(a.label for a in held) or "none"
        raise ValueError(f"no account {account!r} in {store.path} (accounts held: {names})")
    return chosen


def _cells(
    store: UsageStore,
    accounts: Sequence[Account],
    start: int | None,
    end: int,
    user_id: str | None,
) -> Cells:
    cells: Cells = {}
    for account in accounts:
        found = store.tokens_by_day_and_model(
            start, end, user_id=user_id, account=account.fingerprint
        )
        for (day, model), tokens in found.items():
            cells[(account.label, user_id, day, model)] = tokens
    return cells


_KEYS: dict[str, Callable[[str, str | None, date, str], tuple[str | None, ...]]] = {
    "model": lambda label, uid, day, model: (model,),
    "day": lambda label, uid, day, model: (day.isoformat(),),
    "month": lambda label, uid, day, model: (f"{day:%Y-%m}",),
    "account": lambda label, uid, day, model: (label, uid),
}


def columns_of(by: Sequence[str]) -> tuple[str, ...]:
    """The grouping columns of ``--by`` values (``account`` gives ``account`` and ``user_id``)."""
    columns: list[str] = []
    for name in by:
        columns += ["account", "user_id"] if name == "account" else [name]
    return tuple(columns)


def build_report(
    store: UsageStore,
    *,
    start: int | None,
    end: int,
    by: Sequence[str] = (),
    account: str | None = None,
    user_id: str | None = None,
    prices: PriceTable | None = None,
    today: date,
) -> StoreReport:
    """Totals of ``[start, end)`` grouped by ``by``, with costs, burn rate and runway.

    Args:
        store: The store to read.
        start: First second; ``None`` for the earliest stored.
        end: First second not included.
        by: Grouping, any of ``GROUPS`` in order; none gives one total row.
        account: An account's name or fingerprint; ``None`` for every account.
        user_id: A member's backfill; ``None`` for the organisation's own rows.
        prices: Adds estimated costs, and makes the burn rate come from prices.
        today: The current UTC day (the burn rate averages the 7 days before it).

    Raises:
        ValueError: No such account, or an unknown grouping.
    """
    unknown = [name for name in by if name not in GROUPS]
    if unknown:
        raise ValueError(f"cannot group by {unknown[0]!r}; choose from {', '.join(GROUPS)}")
    accounts = resolve_account(store, account)
    cells = _cells(store, accounts, start, end, user_id)
    tokens_of: dict[tuple[str | None, ...], int] = {}
    cost_of: dict[tuple[str | None, ...], Decimal] = {}
    left_of: dict[tuple[str | None, ...], int] = {}
    unpriced: dict[str, int] = {}
    total_cost = None if prices is None else Decimal(0)
    groups = list(dict.fromkeys(by))
    with localcontext(_EXACT):  # sums of exact costs stay exact
        for (label, uid, day, model), tokens in cells.items():
            key: tuple[str | None, ...] = ()
            for name in groups:
                key += _KEYS[name](label, uid, day, model)
            tokens_of[key] = tokens_of.get(key, 0) + tokens
            if prices is None or total_cost is None:
                continue
            cost = prices.cost(model, tokens, day)
            if cost is None:
                left_of[key] = left_of.get(key, 0) + tokens
                unpriced[model] = unpriced.get(model, 0) + tokens
            else:
                cost_of[key] = cost_of.get(key, Decimal(0)) + cost
                total_cost += cost
    rows = tuple(
        ReportRow(key, tokens_of[key], cost_of.get(key), left_of.get(key, 0))
        for key in sorted(tokens_of, key=_sortable)
    )
    one = accounts[0] if len(accounts) == 1 else None
    balance: BalanceSnapshot | None = None
    burn: Burn | None = None
    runway: Decimal | None = None
    note: str | None = "burn rate and runway are per account: choose one with --account"
    if one is not None:
        balance, burn = latest_balance(store, one), burn_rate(store, one, prices, today=today)
        runway, note = runway_of(balance, burn)
    elif not accounts:
        note = "the store holds no account yet"
    return StoreReport(
        start=start,
        end=end,
        columns=columns_of(groups),
        rows=rows,
        total_tokens=sum(cells.values()),
        currency=None if prices is None else prices.currency,
        total_cost=total_cost,
        unpriced_by_model=dict(sorted(unpriced.items())),
        account=None if one is None else one.label,
        balance=balance,
        burn=burn,
        runway_days=runway,
        runway_note=note if runway is None else None,
    )


def _sortable(key: tuple[str | None, ...]) -> tuple[str, ...]:
    return tuple("" if value is None else value for value in key)


def latest_balance(store: UsageStore, account: Account) -> BalanceSnapshot | None:
    """The account's most recent balance snapshot, if the store holds any."""
    history = store.balance_history(account=account.fingerprint)
    return history[-1] if history else None


def burn_rate(
    store: UsageStore, account: Account, prices: PriceTable | None, *, today: date
) -> Burn:
    """The burn rate of the organisation's usage of ``account`` over the 7 days before today.

    From ``prices`` when given (estimated costs of the stored usage), else from the decreases
    between stored balance snapshots.
    """
    first, last = today - timedelta(days=BURN_DAYS), today - timedelta(days=1)
    if prices is not None:
        cells = store.tokens_by_day_and_model(
            to_unix(first, "start"), to_unix(today, "end"), account=account.fingerprint
        )
        per_day = burn_rate_from_costs(prices.costs(cells).by_day(), today=today)
        return Burn(per_day, "prices", first, last, prices.currency)
    history = store.balance_history(account=account.fingerprint)
    points = [(s.taken_at, s.balance) for s in history]
    currency = history[-1].currency if history else None
    return Burn(burn_rate_from_balances(points, today=today), "balances", first, last, currency)


def runway_of(balance: BalanceSnapshot | None, burn: Burn) -> tuple[Decimal | None, str | None]:
    """Days of runway, or ``None`` and why there is no number."""
    if balance is None:
        return None, "no balance stored: run `r9s-usage balance --db FILE` (or check --refresh)"
    if burn.per_day is None:
        return None, (
            "burn rate unknown: fewer than two balance snapshots around the last 7 days; "
            "give --prices, or store balances daily"
        )
    if burn.currency is not None and burn.currency != balance.currency:
        return None, (
            f"the price table is in {burn.currency} and the balance in {balance.currency}"
        )
    runway = runway_days(balance.balance, balance.credit_limit, burn.per_day)
    return (runway, None) if runway is not None else (None, "no recent usage")


@frozen
class CheckLimits:
    """The thresholds ``r9s-usage check`` was given (``None``: that check is not run)."""

    min_balance: Decimal | None = None
    min_runway_days: Decimal | None = None
    max_daily_tokens: int | None = None
    max_daily_cost: Decimal | None = None
    spike_factor: Decimal | None = None

    @property
    def any(self) -> bool:
        """Whether any check is asked for."""
        return any(
            value is not None
            for value in (
                self.min_balance,
                self.min_runway_days,
                self.max_daily_tokens,
                self.max_daily_cost,
                self.spike_factor,
            )
        )


def run_checks(
    store: UsageStore,
    account: Account,
    limits: CheckLimits,
    *,
    prices: PriceTable | None,
    today: date,
) -> list[CheckResult]:
    """Every check asked for in ``limits``, on the organisation's usage of ``account``.

    Daily checks look at the last complete UTC day (``today - 1``).

    Raises:
        FigureUnavailable: A balance check with no balance stored, a runway check whose burn
            rate is unknown, or a cost check without ``prices``.
    """
    results: list[CheckResult] = []
    balance = latest_balance(store, account)
    needs_balance = limits.min_balance is not None or limits.min_runway_days is not None
    if needs_balance and balance is None:
        raise FigureUnavailable(
            f"no balance of account {account.label} is stored in {store.path}: run "
            f"`r9s-usage balance --db {store.path}` first, or pass --refresh"
        )
    if limits.min_balance is not None and balance is not None:
        results.append(
            check_min_balance(
                balance.balance, limits.min_balance, day=balance.day, currency=balance.currency
            )
        )
    if limits.min_runway_days is not None and balance is not None:
        burn = burn_rate(store, account, prices, today=today)
        runway, note = runway_of(balance, burn)
        if runway is None and note != "no recent usage":
            raise FigureUnavailable(f"--min-runway-days: {note}")
        results.append(check_min_runway_days(runway, limits.min_runway_days, day=balance.day))
    yesterday = today - timedelta(days=1)
    if limits.max_daily_tokens is not None:
        tokens = _day_tokens(store, account, yesterday, yesterday + timedelta(days=1))
        results.append(
            check_max_daily_tokens(tokens.get(yesterday, 0), limits.max_daily_tokens, day=yesterday)
        )
    if limits.max_daily_cost is not None:
        if prices is None:
            raise FigureUnavailable("--max-daily-cost needs --prices FILE")
        cells = store.tokens_by_day_and_model(
            to_unix(yesterday, "start"), to_unix(today, "end"), account=account.fingerprint
        )
        costs = prices.costs(cells)
        results.append(
            check_max_daily_cost(
                costs.total,
                limits.max_daily_cost,
                day=yesterday,
                currency=prices.currency,
                unpriced_tokens=costs.unpriced_tokens,
            )
        )
    if limits.spike_factor is not None:
        first = today - timedelta(days=SPIKE_BASELINE_DAYS + 1)
        daily = _day_tokens(store, account, first, today)
        results.append(check_spike_factor(spike(daily, today=today, factor=limits.spike_factor)))
    return results


def _day_tokens(store: UsageStore, account: Account, first: date, end: date) -> dict[date, int]:
    return store.tokens_by_day(
        to_unix(first, "start"), to_unix(end, "end"), account=account.fingerprint
    )


# -- the HTML report --------------------------------------------------------------------------


def report_data(
    store: UsageStore,
    *,
    start: int | None,
    end: int | None,
    account: str | None = None,
    user_id: str | None = None,
    prices: PriceTable | None = None,
) -> ReportData:
    """The HTML report's figures for ``[start, end)``, from the same ``build_report()`` as the
    table, and nothing but the store: the same store gives the same page.

    Args:
        store: The store to read.
        start: First second; ``None`` for the first stored day.
        end: First second not included; ``None`` for the end of the last stored day (not
            "now", which would change the page every day).
        account: An account's name or fingerprint; ``None`` for every account.
        user_id: A member's backfill; ``None`` for the organisation's own rows.
        prices: Adds estimated costs, and makes the burn rate come from prices.

    Returns:
        The figures, "as of" the newest day stored: the runway counts from that day.

    Raises:
        ValueError: No such account, or no stored day in the range.
    """
    accounts = resolve_account(store, account)
    windows = [
        w
        for a in accounts
        for w in store.windows(user_id=user_id, account=a.fingerprint)
        if (start is None or w.end > start) and (end is None or w.start < end)
    ]
    if not windows:
        raise ValueError(f"{store.path} holds no stored day in that range: run a backfill first")
    first = start if start is not None else min(w.start for w in windows)
    last = end if end is not None else max(w.end for w in windows)
    as_of = _as_of(store, accounts, windows)

    def figures(by: Sequence[str]) -> StoreReport:
        return build_report(
            store,
            start=first,
            end=last,
            by=by,
            account=account,
            user_id=user_id,
            prices=prices,
            today=as_of.date(),
        )

    whole, per_model = figures(()), figures(("model",))
    recent = {w.day for w in windows if w.status == "recent"}
    days: dict[date, dict[str, int]] = {}
    for row in figures(("day", "model")).rows:
        day_text, model = (str(value) for value in row.key)
        days.setdefault(date.fromisoformat(day_text), {})[model] = row.tokens
    one = accounts[0] if len(accounts) == 1 else None
    history = [] if one is None else store.balance_history(account=one.fingerprint)
    if len(history) < 2:  # one reading draws no line; the headline shows it
        history = []
    balance = whole.balance
    return ReportData(
        title=f"Usage of {one.label}" if one is not None else f"Usage of {len(accounts)} accounts",
        start=utc_day(first),
        end=utc_day(last - 1) + timedelta(days=1),
        as_of=as_of,
        currency=whole.currency or (balance.currency if balance is not None else None),
        total_tokens=whole.total_tokens,
        estimated_cost=whole.total_cost,
        unpriced_tokens=whole.unpriced_tokens,
        balance=None if balance is None else balance.balance,
        credit_limit=None if balance is None else balance.credit_limit,
        runway_days=whole.runway_days,
        runway_note=_runway_note(whole),
        days=[DayUsage(day, tokens, day in recent) for day, tokens in days.items()],
        # A model none of whose tokens is priced has no cost: the page says "unpriced".
        models=[ModelUsage(str(row.key[0]), row.tokens, row.cost) for row in per_model.rows],
        members=[
            MemberUsage(str(row.key[0]), row.key[1], row.tokens, row.cost, row.unpriced_tokens)
            for row in figures(("account",)).rows
        ],
        balance_history=[
            BalancePoint(datetime.fromtimestamp(s.taken_at, tz=UTC), s.balance) for s in history
        ],
    )


def _as_of(
    store: UsageStore, accounts: Sequence[Account], windows: Sequence[StoredWindow]
) -> datetime:
    """The newest time a stored day was fetched or a balance read: what the page is "as of"."""
    newest = max(w.fetched_at for w in windows)
    for a in accounts:
        newest = max([newest, *(s.taken_at for s in store.balance_history(account=a.fingerprint))])
    return datetime.fromtimestamp(newest, tz=UTC)


def _runway_note(report: StoreReport) -> str | None:
    if report.runway_days is None:
        return report.runway_note
    burn = report.burn
    if burn is None or burn.per_day is None:
        return None
    source = "estimated costs" if burn.source == "prices" else "balance snapshots"
    return f"at the burn rate of {burn.first_day} to {burn.last_day}, from {source}"
