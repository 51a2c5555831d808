"""A realistic report for the HTML tests and the docs' screenshots: 90 days, 4 models (one
without a price), 2 accounts (one with two members), a balance read daily with one top-up."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from r9s_async._html_report import (
    BalancePoint,
    DayUsage,
    MemberUsage,
    ModelUsage,
    ReportData,
)

START = date(2025, 1, 1)
DAYS = 90
RECENT_DAYS = 3

# Blended prices per million tokens; "qwen-max" has none, so it shows as unpriced.
PRICES = {
    "gpt-4o-mini": Decimal("0.30"),
    "claude-3-5-sonnet": Decimal("6.00"),
    "deepseek-chat": Decimal("0.50"),
}
# Mean tokens on a weekday at the start of the range; usage grows through the quarter.
BASE = {
    "gpt-4o-mini": 1_800_000,
    "claude-3-5-sonnet": 420_000,
    "deepseek-chat": 650_000,
    "qwen-max": 150_000,
}
# Who used what share: (account, member).
MEMBERS = {
    ("production", "u-1042"): 0.55,
    ("production", "u-2201"): 0.30,
    ("staging", None): 0.15,
}


def cost_of(model: str, tokens: int) -> Decimal | None:
    price = PRICES.get(model)
    return None if price is None else price * tokens / 1_000_000


def sample_report() -> ReportData:
    """The same report on every call (a seeded generator, no clock)."""
    rng = random.Random(16)
    days: list[DayUsage] = []
    for offset in range(DAYS):
        day = START + timedelta(days=offset)
        weekend = day.weekday() >= 5
        growth = 1 + offset / DAYS * 0.6
        tokens = {
            model: int(base * growth * (0.35 if weekend else 1) * rng.uniform(0.7, 1.3))
            for model, base in BASE.items()
        }
        days.append(DayUsage(day, tokens, recent=offset >= DAYS - RECENT_DAYS))
    by_model = {model: sum(d.tokens_by_model[model] for d in days) for model in BASE}
    models = [
        ModelUsage(model, tokens, cost_of(model, tokens)) for model, tokens in by_model.items()
    ]
    total = sum(by_model.values())
    priced = [m.estimated_cost for m in models if m.estimated_cost is not None]
    cost = sum(priced, Decimal(0))
    unpriced = sum(m.tokens for m in models if m.estimated_cost is None)

    members = []
    left = dict(by_model)
    for (account, member), share in MEMBERS.items():
        last = (account, member) == list(MEMBERS)[-1]
        member_tokens = {
            model: left[model] if last else int(total_of_model * share)
            for model, total_of_model in by_model.items()
        }
        for model, used in member_tokens.items():
            left[model] -= used
        member_cost = sum(
            (c for model, t in member_tokens.items() if (c := cost_of(model, t)) is not None),
            Decimal(0),
        )
        member_unpriced = sum(t for model, t in member_tokens.items() if model not in PRICES)
        members.append(
            MemberUsage(
                account,
                member,
                sum(member_tokens.values()),
                member_cost.quantize(Decimal("0.000001")),
                member_unpriced,
            )
        )

    balance = Decimal("800.00")
    history = []
    daily_costs = []
    for usage in days:
        spent = sum(
            (
                c
                for model, t in usage.tokens_by_model.items()
                if (c := cost_of(model, t)) is not None
            ),
            Decimal(0),
        )
        daily_costs.append(spent)
        if usage.day == date(2025, 2, 14):
            balance += Decimal("500.00")  # a top-up
        balance -= spent
        moment = datetime.combine(usage.day, time(23, 50), UTC)
        history.append(BalancePoint(moment, balance.quantize(Decimal("0.000001"))))
    rate = sum(daily_costs[-7:], Decimal(0)) / 7
    return ReportData(
        title="Usage, Q1 2025",
        start=START,
        end=START + timedelta(days=DAYS),
        as_of=datetime(2025, 3, 31, 23, 55, tzinfo=UTC),
        currency="USD",
        total_tokens=total,
        estimated_cost=cost.quantize(Decimal("0.000001")),
        unpriced_tokens=unpriced,
        balance=history[-1].balance,
        credit_limit=Decimal("0"),
        runway_days=history[-1].balance / rate,
        runway_note="at the last 7 days' average estimated spend",
        days=days,
        models=models,
        members=members,
        balance_history=history,
    )
