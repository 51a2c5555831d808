"""Budgets without I/O: burn rate, runway, spikes, and the checks that cron and CI act on.

Days are UTC days. "The last 7 complete days" before ``today`` are ``today - 7`` up to and
including ``today - 1``: ``today`` itself is still running, so it is never counted.
Divisions (a 7-day average, a runway) are rarely exact: they are computed to 28 significant
digits, half to even, whatever the caller's decimal context is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Context, Decimal, localcontext
from itertools import pairwise
from typing import Any

from attrs import frozen

from ._prices import _EXACT, display_amount

__all__ = [
    "BURN_DAYS",
    "EXIT_CHECK_FAILED",
    "SPIKE_BASELINE_DAYS",
    "CheckResult",
    "Spike",
    "burn_rate_from_balances",
    "burn_rate_from_costs",
    "check_max_daily_cost",
    "check_max_daily_tokens",
    "check_min_balance",
    "check_min_runway_days",
    "check_spike_factor",
    "checks_document",
    "exit_code",
    "failure_text",
    "runway_days",
    "spike",
    "webhook_payload",
]

BURN_DAYS = 7
"""The burn rate averages this many complete UTC days."""

SPIKE_BASELINE_DAYS = 28
"""A spike compares the last complete day with the median of this many days before it."""

EXIT_CHECK_FAILED = 3
"""The exit status of ``r9s-usage check`` when any check fails (0 when all pass)."""

_DIVIDE = Context(prec=28, rounding=ROUND_HALF_EVEN)
_DAY_SECONDS = 86_400


def _require_day(day: date, name: str) -> None:
    if not isinstance(day, date) or isinstance(day, datetime):
        raise TypeError(f"{name} must be a datetime.date, got {type(day).__name__}")


def burn_rate_from_costs(daily_costs: Mapping[date, Decimal], *, today: date) -> Decimal:
    """The average daily cost over the 7 complete UTC days before ``today``.

    A day missing from ``daily_costs`` counts as zero; days outside the 7 are ignored. Give it
    ``CostBreakdown.by_day()``; the result inherits its caveats (a blended-price estimate,
    unpriced tokens not counted).

    Args:
        daily_costs: Cost per UTC day.
        today: The current UTC day (not counted: it is not complete).

    Returns:
        The sum of the costs of ``today - 7`` to ``today - 1``, divided by 7.
    """
    _require_day(today, "today")
    first = today - timedelta(days=BURN_DAYS)
    with localcontext(_EXACT):
        spent = sum((c for day, c in daily_costs.items() if first <= day < today), Decimal(0))
    with localcontext(_DIVIDE):
        return spent / BURN_DAYS


def _seconds(when: datetime | int) -> int | Decimal:
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise ValueError("snapshot times must be timezone-aware (UTC) datetimes")
        delta = when - datetime(1970, 1, 1, tzinfo=UTC)
        return delta.days * _DAY_SECONDS + delta.seconds + Decimal(delta.microseconds).scaleb(-6)
    if isinstance(when, bool) or not isinstance(when, int):
        raise TypeError(f"a snapshot time must be a datetime or Unix seconds, got {when!r}")
    return when


def burn_rate_from_balances(
    snapshots: Iterable[tuple[datetime | int, Decimal]], *, today: date
) -> Decimal | None:
    """The average daily spending over the 7 complete UTC days before ``today``, from balances.

    Spending is the sum of the *decreases* between consecutive snapshots (in time order);
    an increase is a top-up, not negative spending. The balance is taken to move linearly
    between two snapshots, so an interval that straddles the start or the end of the 7 days
    counts only the part of its decrease that falls inside them. The sum is divided by 7.

    Edge cases:

    - Fewer than two snapshots, or no two consecutive snapshots around any part of the 7
      days: ``None``, the burn is unknown (not zero).
    - Snapshots that cover only part of the 7 days: spending outside what they cover is not
      seen, so the rate is an underestimate.
    - A top-up and spending between the same two snapshots net out: only a net decrease is
      seen.
    - Two snapshots at the same second: a drop between them counts when that second is in the
      7 days.

    Args:
        snapshots: ``(time, balance)`` pairs in any order; a time is an aware
            :class:`~datetime.datetime` or Unix seconds.
        today: The current UTC day (not counted).

    Returns:
        The spending per day, or ``None`` when it is unknown.

    Raises:
        ValueError: A naive ``datetime``.
        TypeError: A time that is neither a ``datetime`` nor an ``int``.
    """
    _require_day(today, "today")
    end = (today.toordinal() - date(1970, 1, 1).toordinal()) * _DAY_SECONDS
    start = end - BURN_DAYS * _DAY_SECONDS
    points = sorted(((_seconds(t), balance) for t, balance in snapshots), key=lambda p: p[0])
    spent = Decimal(0)
    seen = False
    with localcontext(_DIVIDE):
        for (t0, b0), (t1, b1) in pairwise(points):
            if t1 < start or t0 >= end:
                continue
            if t0 == t1:
                seen = True
                spent += max(b0 - b1, Decimal(0))
                continue
            overlap = min(t1, end) - max(t0, start)
            if overlap <= 0:
                continue  # touches the 7 days at one instant only
            seen = True
            drop = b0 - b1
            if drop > 0:
                spent += drop * Decimal(overlap) / Decimal(t1 - t0)
        if not seen:
            return None
        return spent / BURN_DAYS


def runway_days(balance: Decimal, credit_limit: Decimal, burn: Decimal) -> Decimal | None:
    """Days until ``balance + credit_limit`` reaches zero when spending ``burn`` a day.

    Args:
        balance: The current balance.
        credit_limit: How far below zero the account may go (``0`` for none).
        burn: The spending per day (a burn rate).

    Returns:
        ``(balance + credit_limit) / burn`` in days; ``Decimal("0")`` when nothing is left;
        ``None`` when ``burn`` is zero: no recent usage, so no end in sight.

    Raises:
        ValueError: ``burn`` is negative.
    """
    if burn < 0:
        raise ValueError(f"a burn rate cannot be negative, got {burn}")
    if burn == 0:
        return None
    with localcontext(_DIVIDE):
        available = balance + credit_limit
        if available <= 0:
            return Decimal(0)
        return available / burn


@frozen
class Spike:
    """The last complete day's tokens against the median of the 28 days before it.

    Attributes:
        day: The last complete UTC day (``today - 1``).
        tokens: Its tokens.
        median: The median of the daily tokens of the 28 days before ``day`` (a day without
            usage counts as 0); a ``Decimal`` since the median of an even count may be a half.
        factor: The factor asked for.
        spiked: ``tokens > factor * median``; always ``False`` when the median is 0, since
            there is no baseline to compare with (catch usage of a quiet account with a
            maximum of daily tokens instead).
    """

    day: date
    tokens: int
    median: Decimal
    factor: Decimal
    spiked: bool


def _median(values: Sequence[int]) -> Decimal:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return Decimal(ordered[middle])
    return (Decimal(ordered[middle - 1]) + Decimal(ordered[middle])) / 2  # exact: x.5 at most


def spike(daily_tokens: Mapping[date, int], *, today: date, factor: Decimal | int) -> Spike:
    """Compare the last complete UTC day with the median of the 28 days before it.

    Args:
        daily_tokens: Tokens per UTC day (missing days count as 0).
        today: The current UTC day; the last complete day is ``today - 1``, and the baseline
            is ``today - 29`` to ``today - 2``.
        factor: How many times the median counts as a spike; greater than zero.

    Returns:
        The comparison.

    Raises:
        ValueError: ``factor`` is not greater than zero.
        TypeError: ``factor`` is a float (not exact) or ``today`` is not a date.
    """
    _require_day(today, "today")
    if isinstance(factor, bool) or not isinstance(factor, Decimal | int):
        raise TypeError(f"factor must be a Decimal or an int, got {type(factor).__name__}")
    exact_factor = Decimal(factor)
    if not exact_factor.is_finite() or exact_factor <= 0:
        raise ValueError(f"factor must be greater than zero, got {factor}")
    day = today - timedelta(days=1)
    baseline = [
        daily_tokens.get(day - timedelta(days=back), 0)
        for back in range(1, SPIKE_BASELINE_DAYS + 1)
    ]
    median = _median(baseline)
    tokens = daily_tokens.get(day, 0)
    spiked = median > 0 and tokens > exact_factor * median
    return Spike(day, tokens, median, exact_factor, spiked)


Figure = Decimal | int
"""A check's figure or threshold: exact amounts are ``Decimal``, token counts ``int``."""


@frozen
class CheckResult:
    """The outcome of one check.

    Attributes:
        name: The check: ``"min_balance"``, ``"min_runway_days"``, ``"max_daily_tokens"``,
            ``"max_daily_cost"`` or ``"spike_factor"``.
        passed: Whether it passed.
        figure: What was measured, exact; ``None`` when there was nothing to measure (a runway
            with no recent usage).
        threshold: The limit it was compared with.
        day: The UTC day the figure is for: the last complete day for daily checks, the day of
            the balance for balance and runway checks.
        message: One human-readable sentence: the check, the figure, the threshold and the day.
    """

    name: str
    passed: bool
    figure: Figure | None
    threshold: Figure
    day: date
    message: str

    @property
    def text(self) -> str:
        """One line for a terminal or a chat message, ``FAIL`` or ``ok`` then the message."""
        return f"{'ok' if self.passed else 'FAIL'} {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form: amounts as exact decimal strings, token counts as ints, the day
        as ``YYYY-MM-DD``."""
        return {
            "name": self.name,
            "passed": self.passed,
            "figure": _json_figure(self.figure),
            "threshold": _json_figure(self.threshold),
            "day": self.day.isoformat(),
            "message": self.message,
        }

    def dedupe_key(self, account: str) -> tuple[str, str, str]:
        """What identifies "the same check for the same period" so a failure is sent once.

        Args:
            account: The account's fingerprint (several accounts can share one store).

        Returns:
            ``(name, account, day)``, the day as ``YYYY-MM-DD``. A balance that stays low thus
            fires once per day, and a daily figure once for its day.
        """
        return (self.name, account, self.day.isoformat())


def _json_figure(value: Figure | None) -> str | int | None:
    if isinstance(value, Decimal):
        return str(value)
    return value


def _money(amount: Decimal, currency: str | None) -> str:
    shown = display_amount(amount)
    return f"{shown} {currency}" if currency else shown


def check_min_balance(
    balance: Decimal, threshold: Decimal, *, day: date, currency: str | None = None
) -> CheckResult:
    """Fails when the balance is below ``threshold``.

    Args:
        balance: The balance (without the credit limit).
        threshold: The lowest acceptable balance.
        day: The UTC day of the balance snapshot.
        currency: Shown after amounts in the message.
    """
    passed = balance >= threshold
    relation = "at least" if passed else "below"
    message = (
        f"min_balance: balance {_money(balance, currency)} is {relation} "
        f"{_money(threshold, currency)} on {day.isoformat()}"
    )
    return CheckResult("min_balance", passed, balance, threshold, day, message)


def check_min_runway_days(
    runway: Decimal | None, threshold: Decimal | int, *, day: date
) -> CheckResult:
    """Fails when the runway is shorter than ``threshold`` days.

    Args:
        runway: Days of runway from ``runway_days()``; ``None`` (no recent usage) passes.
            The message shows it rounded down to a tenth, so it never looks longer than it is.
        threshold: The fewest acceptable days.
        day: The UTC day of the balance the runway was computed from.
    """
    if runway is None:
        message = (
            f"min_runway_days: no recent usage, so no end in sight "
            f"(threshold {threshold} days) on {day.isoformat()}"
        )
        return CheckResult("min_runway_days", True, None, threshold, day, message)
    passed = runway >= threshold
    relation = "at least" if passed else "below"
    shown = display_amount(runway, 1, rounding=ROUND_DOWN)
    message = (
        f"min_runway_days: runway {shown} days is {relation} {threshold} days on {day.isoformat()}"
    )
    return CheckResult("min_runway_days", passed, runway, threshold, day, message)


def check_max_daily_tokens(tokens: int, threshold: int, *, day: date) -> CheckResult:
    """Fails when ``day`` used more than ``threshold`` tokens.

    Args:
        tokens: The tokens of ``day``.
        threshold: The most acceptable tokens in a day.
        day: The last complete UTC day.
    """
    passed = tokens <= threshold
    relation = "within" if passed else "above"
    message = (
        f"max_daily_tokens: {tokens:,} tokens is {relation} {threshold:,} on {day.isoformat()}"
    )
    return CheckResult("max_daily_tokens", passed, tokens, threshold, day, message)


def check_max_daily_cost(
    cost: Decimal,
    threshold: Decimal,
    *,
    day: date,
    currency: str | None = None,
    unpriced_tokens: int = 0,
) -> CheckResult:
    """Fails when ``day`` cost more than ``threshold``.

    Args:
        cost: The estimated cost of ``day`` (priced tokens only).
        threshold: The most acceptable cost in a day.
        day: The last complete UTC day.
        currency: Shown after amounts in the message.
        unpriced_tokens: Tokens of ``day`` no price covered; the message says the cost leaves
            them out (so it may be low).
    """
    passed = cost <= threshold
    relation = "within" if passed else "above"
    message = (
        f"max_daily_cost: estimated cost {_money(cost, currency)} is {relation} "
        f"{_money(threshold, currency)} on {day.isoformat()}"
    )
    if unpriced_tokens:
        message += f" (leaves out {unpriced_tokens:,} unpriced tokens)"
    return CheckResult("max_daily_cost", passed, cost, threshold, day, message)


def check_spike_factor(result: Spike) -> CheckResult:
    """Fails when ``spike()`` found the last complete day above ``factor`` times the median.

    The figure is the day's tokens; the threshold is ``factor * median`` tokens.

    Args:
        result: The comparison from ``spike()``.
    """
    threshold = result.factor * result.median
    day = result.day.isoformat()
    if result.median == 0:
        message = (
            f"spike_factor: {result.tokens:,} tokens on {day}; no baseline "
            f"(the median of the {SPIKE_BASELINE_DAYS} days before is 0)"
        )
    else:
        relation = "above" if result.spiked else "within"
        message = (
            f"spike_factor: {result.tokens:,} tokens is {relation} {result.factor} x the "
            f"median {result.median:,} of the {SPIKE_BASELINE_DAYS} days before "
            f"({threshold:,}) on {day}"
        )
    return CheckResult(
        "spike_factor", not result.spiked, result.tokens, threshold, result.day, message
    )


def exit_code(results: Iterable[CheckResult]) -> int:
    """0 when every check passed, ``EXIT_CHECK_FAILED`` (3) when any failed."""
    return 0 if all(r.passed for r in results) else EXIT_CHECK_FAILED


def failure_text(results: Iterable[CheckResult]) -> str:
    """One line per failed check (the check, the figure, the threshold, the day); ``""`` when
    all passed."""
    return "".join(f"{r.text}\n" for r in results if not r.passed)


def checks_document(results: Iterable[CheckResult], *, account: str) -> dict[str, Any]:
    """The ``--format json`` document: every check, and whether all passed.

    Args:
        results: The checks, in the order they ran.
        account: The account's label (its name, else its fingerprint).
    """
    listed = list(results)
    return {
        "account": account,
        "passed": all(r.passed for r in listed),
        "checks": [r.to_dict() for r in listed],
    }


def webhook_payload(results: Iterable[CheckResult], *, account: str) -> dict[str, Any]:
    """The JSON body posted on failure: ``checks_document()`` plus a ``text`` field.

    ``text`` is the failure lines under a heading naming the account, so a Slack incoming
    webhook shows it as it is.

    Args:
        results: The checks (passing ones are kept in ``checks``, not in ``text``).
        account: The account's label.
    """
    listed = list(results)
    document = checks_document(listed, account=account)
    failed = failure_text(listed)
    document["text"] = f"r9s-usage check failed for {account}:\n{failed}".rstrip("\n")
    return document
