"""The store's money side: balance snapshots, costs of stored usage, sent alerts."""

from __future__ import annotations

import sqlite3
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from _helpers import ALPHA, BETA, PRICES_TOML

from r9s_async import (
    Account,
    Balance,
    BalanceSnapshot,
    PriceTable,
    UsageRecord,
    UsageReport,
    UsageStore,
)
from r9s_async._times import to_unix

PRICES = PriceTable.from_string(PRICES_TOML)


def balance(amount: str, *, limit: str = "0", request_id: str = "r1") -> Balance:
    return Balance(Decimal(amount), "USD", Decimal("1.5"), Decimal(limit), Decimal(0), request_id)


def day(text: str) -> int:
    return to_unix(date.fromisoformat(text), "day")


def store_day(
    store: UsageStore, account: Account, when: str, records: list[tuple[int, str]]
) -> None:
    start = day(when)
    rows = [UsageRecord(start + i, tokens, model) for i, (tokens, model) in enumerate(records)]
    store.replace_window(
        account,
        "",
        start,
        start + 86_400,
        rows,
        status="complete",
        fetched_at=start + 2 * 86_400,
        request_id=None,
    )


def fill(store: UsageStore) -> None:
    """Three days, two accounts, a price change on 2025-03-02, patterns, an unpriced model."""
    store_day(store, ALPHA, "2025-03-01", [(1_000_000, "gpt-4o"), (333_333, "claude-sonnet-4")])
    store_day(store, ALPHA, "2025-03-02", [(1_000_000, "gpt-4o"), (7, "mystery")])
    store_day(store, BETA, "2025-03-02", [(123_457, "claude-haiku"), (2_000_001, "gpt-4o")])
    store_day(store, BETA, "2025-03-03", [(10, "claude-sonnet-4")])


def by_hand(tokens: int, per_million: str) -> Decimal:
    return Decimal(tokens) * Decimal(per_million) / Decimal(1_000_000)


def test_a_balance_is_kept_exactly_and_listed_with_its_account_label(tmp_path: Path) -> None:
    with UsageStore(tmp_path / "u.db") as store:
        kept = store.record_balance(ALPHA, balance("470.010481", limit="50"), taken_at=1_000)
        store.record_balance(BETA, balance("12.30"), taken_at=900)

        history = store.balance_history()
        alpha_only = store.balance_history(account="alpha")

    expected_alpha = BalanceSnapshot(
        1_000, "alpha", Decimal("470.010481"), Decimal("50"), Decimal("1.5"), "USD", "r1"
    )
    assert expected_alpha == kept
    assert [900, 1_000] == [s.taken_at for s in history]
    assert [BETA.fingerprint, "alpha"] == [s.account for s in history]
    assert [expected_alpha] == alpha_only
    assert "470.010481" == str(history[1].balance)


def test_amounts_are_stored_as_decimal_text_not_floats(tmp_path: Path) -> None:
    path = tmp_path / "u.db"
    with UsageStore(path) as store:
        store.record_balance(ALPHA, balance("0.1000000000000000000000000001"), taken_at=1)

    db = sqlite3.connect(path)
    try:
        row = db.execute("SELECT balance, typeof(balance) FROM balances").fetchone()
    finally:
        db.close()
    assert ("0.1000000000000000000000000001", "text") == row


def test_a_store_without_the_balances_table_lists_no_balances_and_gains_it_on_write(
    tmp_path: Path,
) -> None:
    path = tmp_path / "u.db"
    with UsageStore(path) as store:
        store.register_account(ALPHA)
        before = store.balance_history()
        store.record_balance(ALPHA, balance("1"), taken_at=5)
        after = store.balance_history()

    assert [] == before
    assert [5] == [s.taken_at for s in after]


def test_record_balance_refuses_what_is_not_a_balance(tmp_path: Path) -> None:
    with UsageStore(tmp_path / "u.db") as store:
        with pytest.raises(TypeError, match="Balance"):
            store.record_balance(ALPHA, Decimal(1), taken_at=1)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="taken_at"):
            store.record_balance(ALPHA, balance("1"), taken_at=1.5)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="unknown"):
            store.balance_history(account="unknown")


def test_store_costs_equal_a_hand_computation_with_price_changes_patterns_and_unpriced(
    tmp_path: Path,
) -> None:
    with UsageStore(tmp_path / "u.db") as store:
        fill(store)
        everyone = store.costs(PRICES)
        alpha = store.costs(PRICES, day("2025-03-01"), day("2025-03-03"), account="alpha")

    expected_total = (
        by_hand(1_000_000, "2.50")  # alpha, before the price change
        + by_hand(333_333, "9.99")  # the longer pattern wins
        + by_hand(1_000_000, "3.75")  # alpha, after the change
        + by_hand(123_457, "15")  # only claude-* matches
        + by_hand(2_000_001, "3.75")
        + by_hand(10, "9.99")
    )
    assert expected_total == everyone.total
    assert {"mystery": 7} == everyone.unpriced_by_model()
    expected_alpha = by_hand(1_000_000, "2.50") + by_hand(333_333, "9.99")
    expected_alpha += by_hand(1_000_000, "3.75")
    assert expected_alpha == alpha.total
    assert 7 == alpha.unpriced_tokens


def test_a_report_costs_what_prices_costs_of_its_cells() -> None:
    records = [UsageRecord(day("2025-03-01"), 10, "gpt-4o"), UsageRecord(day("2025-03-02"), 4, "x")]
    report = UsageReport(records, 14, day("2025-03-01"), day("2025-03-03"))

    costs = report.costs(PRICES)

    assert by_hand(10, "2.50") == costs.total
    assert {"x": 4} == costs.unpriced_by_model()


def test_sent_alerts_are_remembered_per_check_account_and_day(tmp_path: Path) -> None:
    key = ("min_balance", ALPHA.fingerprint, "2025-03-01")
    other_day = ("min_balance", ALPHA.fingerprint, "2025-03-02")
    with UsageStore(tmp_path / "u.db") as store:
        store.register_account(ALPHA)
        before = store.alerts_sent([key])
        store.record_alerts_sent([key], sent_at=10)
        after = store.alerts_sent([key, other_day])
        with pytest.raises(ValueError, match="no account"):
            store.record_alerts_sent([("x", "ffffffffffffffff", "2025-03-01")], sent_at=1)

    assert set() == before
    assert {key} == after
