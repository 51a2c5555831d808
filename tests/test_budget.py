"""Budgets: burn rate, runway, spikes, and the checks cron acts on, from plain figures."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from r9s_async._budget import (
    EXIT_CHECK_FAILED,
    CheckResult,
    Spike,
    _median,
    burn_rate_from_balances,
    burn_rate_from_costs,
    check_max_daily_cost,
    check_max_daily_tokens,
    check_min_balance,
    check_min_runway_days,
    check_spike_factor,
    checks_document,
    exit_code,
    failure_text,
    runway_days,
    spike,
    webhook_payload,
)
from r9s_async._prices import Price, PriceTable

D = Decimal
TODAY = date(2025, 3, 10)


def day(back: int) -> date:
    """The UTC day ``back`` days before TODAY."""
    return TODAY - timedelta(days=back)


def at(back: int, hour: int = 0) -> datetime:
    """``hour`` o'clock UTC on the day ``back`` days before TODAY."""
    d = day(back)
    return datetime(d.year, d.month, d.day, hour, tzinfo=UTC)


# -- Burn rate from costs ------------------------------------------------------------------------


def test_burn_rate_is_the_average_of_the_seven_complete_days_before_today() -> None:
    costs = {day(back): D(back) for back in range(1, 8)}  # 1 + 2 + ... + 7 = 28

    assert D(4) == burn_rate_from_costs(costs, today=TODAY)


def test_burn_rate_ignores_today_and_days_before_the_seven_and_counts_missing_days_as_zero() -> (
    None
):
    costs = {TODAY: D(1000), day(8): D(1000), day(3): D("7.00")}

    assert D(1) == burn_rate_from_costs(costs, today=TODAY)


def test_burn_rate_without_costs_is_zero() -> None:
    assert D(0) == burn_rate_from_costs({}, today=TODAY)


def test_burn_rate_keeps_28_significant_digits_of_a_division_by_seven() -> None:
    assert D("0.1428571428571428571428571429") == burn_rate_from_costs({day(1): D(1)}, today=TODAY)


def test_burn_rate_from_a_price_table_breakdown() -> None:
    table = PriceTable("USD", [Price("m", D("0.50"))])
    breakdown = table.costs({(day(1), "m"): 7_000_000, (day(2), "m"): 7_000_000})

    assert D(1) == burn_rate_from_costs(breakdown.by_day(), today=TODAY)


def test_burn_rate_refuses_a_datetime_for_today() -> None:
    with pytest.raises(TypeError, match="today"):
        burn_rate_from_costs({}, today=at(0))


# -- Burn rate from balance snapshots ------------------------------------------------------------


def test_balance_burn_sums_the_decreases_and_ignores_top_ups() -> None:
    snapshots = [
        (at(7), D(100)),
        (at(5), D(93)),  # spent 7
        (at(4), D(193)),  # topped up 100: not spending
        (at(2), D(179)),  # spent 14
        (at(0), D(179)),
    ]

    assert D(3) == burn_rate_from_balances(snapshots, today=TODAY)


def test_balance_snapshots_may_come_in_any_order_and_as_unix_seconds() -> None:
    snapshots = [(int(at(0).timestamp()), D(79)), (int(at(7).timestamp()), D(100))]

    assert D(3) == burn_rate_from_balances(snapshots, today=TODAY)


def test_an_interval_straddling_the_window_counts_only_its_part_inside() -> None:
    # 9 days from day(8) to day(-1) lose 90 evenly: 70 of it within the 7 days.
    snapshots = [(at(8), D(190)), (at(-1), D(100))]

    assert D(10) == burn_rate_from_balances(snapshots, today=TODAY)


def test_a_daily_cron_sees_seven_full_days_once_todays_snapshot_is_in() -> None:
    # 09:00 every day, 2 spent a day: the part of day(1) after 09:00 is seen only today.
    snapshots = [(at(back, 9), D(100) - 2 * (8 - back)) for back in range(8, -1, -1)]

    assert D("12.75") / 7 == burn_rate_from_balances(snapshots[:-1], today=TODAY)

    assert D(2) == burn_rate_from_balances(snapshots, today=TODAY)


def test_fewer_than_two_snapshots_is_an_unknown_burn_not_a_zero_one() -> None:
    assert None is burn_rate_from_balances([], today=TODAY)
    assert None is burn_rate_from_balances([(at(3), D(5))], today=TODAY)


def test_snapshots_that_never_span_part_of_the_window_give_an_unknown_burn() -> None:
    before = [(at(20), D(10)), (at(9), D(5))]
    touching = [(at(9), D(10)), (at(7), D(5))]  # ends exactly where the window starts
    after = [(at(0, 1), D(10)), (at(0, 5), D(5))]  # today: not complete

    assert None is burn_rate_from_balances(before, today=TODAY)
    assert None is burn_rate_from_balances(touching, today=TODAY)
    assert None is burn_rate_from_balances(after, today=TODAY)


def test_steady_snapshots_give_a_zero_burn_which_is_known() -> None:
    assert D(0) == burn_rate_from_balances([(at(6), D(5)), (at(1), D(5))], today=TODAY)


def test_a_drop_between_two_snapshots_at_the_same_second_counts_inside_the_window() -> None:
    inside = [(at(3), D(20)), (at(3), D(13))]
    outside = [(at(0), D(20)), (at(0), D(13))]

    assert D(1) == burn_rate_from_balances(inside, today=TODAY)
    assert None is burn_rate_from_balances(outside, today=TODAY)


def test_balance_burn_refuses_naive_and_odd_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        burn_rate_from_balances([(datetime(2025, 3, 1), D(1))], today=TODAY)
    with pytest.raises(TypeError, match="Unix seconds"):
        burn_rate_from_balances([(1.5, D(1))], today=TODAY)  # type: ignore[list-item]


@given(
    st.lists(
        st.tuples(
            st.integers(int(at(12).timestamp()), int(at(-2).timestamp())),
            st.integers(0, 10_000).map(D),
        ),
        min_size=2,
    )
)
def test_balance_burn_is_never_negative_and_never_more_than_all_the_drops(
    snapshots: list[tuple[int, Decimal]],
) -> None:
    burn = burn_rate_from_balances(snapshots, today=TODAY)

    ordered = sorted(snapshots, key=lambda s: s[0])
    all_drops = sum(max(a[1] - b[1], D(0)) for a, b in pairwise(ordered))
    assert burn is None or D(0) <= burn * 7 <= all_drops + D("1E-20")


# -- Runway --------------------------------------------------------------------------------------


def test_runway_is_balance_plus_credit_over_the_burn() -> None:
    assert D(15) == runway_days(D(100), D(50), D(10))
    assert D("2.5") == runway_days(D(5), D(0), D(2))


def test_no_burn_means_no_recent_usage_not_an_infinite_number() -> None:
    assert None is runway_days(D(100), D(0), D(0))


def test_an_exhausted_balance_has_no_runway_left() -> None:
    assert D(0) == runway_days(D(-30), D(20), D(1))


def test_runway_refuses_a_negative_burn() -> None:
    with pytest.raises(ValueError, match="negative"):
        runway_days(D(1), D(0), D(-1))


# -- Spikes --------------------------------------------------------------------------------------


def baseline(tokens: int) -> dict[date, int]:
    """The same tokens on each of the 28 days before the last complete day."""
    return {day(back): tokens for back in range(2, 30)}


def test_a_spike_is_the_last_complete_day_above_factor_times_the_baseline_median() -> None:
    daily = baseline(1_000) | {day(1): 3_001, TODAY: 10**9}

    assert Spike(day(1), 3_001, D(1_000), D(3), True) == spike(daily, today=TODAY, factor=3)


def test_exactly_factor_times_the_median_is_not_a_spike() -> None:
    daily = baseline(1_000) | {day(1): 3_000}

    assert not spike(daily, today=TODAY, factor=D(3)).spiked


def test_the_median_counts_missing_days_as_zero_and_ignores_older_days() -> None:
    # 15 days with 100 and 13 missing: the 14th and 15th smallest of 28 are 100.
    daily = {day(back): 100 for back in range(2, 17)} | {day(30): 10**9, day(1): 250}

    result = spike(daily, today=TODAY, factor=D(2))

    assert (D(100), True) == (result.median, result.spiked)


def test_an_even_count_median_may_be_a_half() -> None:
    daily = {day(back): 1 for back in range(2, 16)} | {day(back): 2 for back in range(16, 30)}

    assert D("1.5") == spike(daily, today=TODAY, factor=2).median


def test_the_median_of_an_odd_count_is_the_middle_value() -> None:
    assert D(2) == _median([3, 1, 2])


def test_with_a_zero_median_there_is_no_baseline_and_no_spike() -> None:
    result = spike({day(1): 10**9}, today=TODAY, factor=2)

    assert (D(0), False) == (result.median, result.spiked)


@pytest.mark.parametrize("factor", [0, D(-1), D("NaN")])
def test_spike_refuses_a_factor_that_is_not_positive(factor: Decimal | int) -> None:
    with pytest.raises(ValueError, match="greater than zero"):
        spike({}, today=TODAY, factor=factor)


def test_spike_refuses_a_float_factor() -> None:
    with pytest.raises(TypeError, match="Decimal or an int"):
        spike({}, today=TODAY, factor=2.5)  # type: ignore[arg-type]


# -- Checks --------------------------------------------------------------------------------------


def test_min_balance_passes_at_the_threshold_and_fails_below() -> None:
    passing = check_min_balance(D("20.00"), D(20), day=TODAY, currency="USD")
    failing = check_min_balance(D("19.994"), D(20), day=TODAY, currency="USD")

    assert passing.passed
    assert (
        CheckResult(
            "min_balance",
            False,
            D("19.994"),
            D(20),
            TODAY,
            "min_balance: balance 19.99 USD is below 20.00 USD on 2025-03-10",
        )
        == failing
    )


def test_min_runway_days_fails_below_and_passes_with_no_recent_usage() -> None:
    passing = check_min_runway_days(D(100) / D(7), 14, day=TODAY)
    failing = check_min_runway_days(D("13.96"), 14, day=TODAY)
    idle = check_min_runway_days(None, 14, day=TODAY)

    assert "ok min_runway_days: runway 14.2 days is at least 14 days on 2025-03-10" == passing.text
    assert "FAIL min_runway_days: runway 13.9 days is below 14 days on 2025-03-10" == failing.text
    assert (True, None) == (idle.passed, idle.figure)
    assert "no recent usage" in idle.message


def test_max_daily_tokens_passes_at_the_threshold_and_fails_above() -> None:
    assert check_max_daily_tokens(1_000, 1_000, day=day(1)).passed
    failing = check_max_daily_tokens(1_000_001, 1_000_000, day=day(1))

    assert (
        "FAIL max_daily_tokens: 1,000,001 tokens is above 1,000,000 on 2025-03-09" == failing.text
    )


def test_max_daily_cost_says_when_unpriced_tokens_are_left_out() -> None:
    assert check_max_daily_cost(D(5), D(5), day=day(1)).passed
    failing = check_max_daily_cost(
        D("5.001"), D(5), day=day(1), currency="USD", unpriced_tokens=12_345
    )

    assert (
        "max_daily_cost: estimated cost 5.00 USD is above 5.00 USD on 2025-03-09 "
        "(leaves out 12,345 unpriced tokens)"
    ) == failing.message
    assert not failing.passed


def test_spike_factor_check_reports_the_tokens_against_factor_times_the_median() -> None:
    failing = check_spike_factor(spike(baseline(1_000) | {day(1): 5_000}, today=TODAY, factor=3))
    passing = check_spike_factor(spike(baseline(1_000) | {day(1): 500}, today=TODAY, factor=3))
    no_baseline = check_spike_factor(spike({day(1): 5}, today=TODAY, factor=3))

    assert (
        "FAIL spike_factor: 5,000 tokens is above 3 x the median 1,000 of the 28 days before "
        "(3,000) on 2025-03-09"
    ) == failing.text
    assert (5_000, D(3_000), day(1)) == (failing.figure, failing.threshold, failing.day)
    assert passing.passed
    assert no_baseline.passed
    assert "no baseline" in no_baseline.message


def results() -> list[CheckResult]:
    return [
        check_min_balance(D("470.010481"), D(20), day=TODAY, currency="USD"),
        check_max_daily_tokens(2_000_000, 1_000_000, day=day(1)),
        check_min_runway_days(D("9.5"), 14, day=TODAY),
    ]


def test_exit_code_is_zero_when_all_pass_and_three_when_any_fails() -> None:
    assert 0 == exit_code(results()[:1])
    assert 0 == exit_code([])
    assert 3 == EXIT_CHECK_FAILED == exit_code(results())


def test_failure_text_is_one_line_per_failed_check() -> None:
    assert (
        "FAIL max_daily_tokens: 2,000,000 tokens is above 1,000,000 on 2025-03-09\n"
        "FAIL min_runway_days: runway 9.5 days is below 14 days on 2025-03-10\n"
    ) == failure_text(results())
    assert "" == failure_text(results()[:1])


def test_the_json_document_keeps_amounts_exact_and_round_trips_through_json() -> None:
    document = checks_document(results(), account="prod")

    assert document == json.loads(json.dumps(document))
    assert {
        "name": "min_balance",
        "passed": True,
        "figure": "470.010481",
        "threshold": "20",
        "day": "2025-03-10",
        "message": "min_balance: balance 470.01 USD is at least 20.00 USD on 2025-03-10",
    } == document["checks"][0]
    assert 2_000_000 == document["checks"][1]["figure"]
    assert ("prod", False) == (document["account"], document["passed"])


def test_the_webhook_payload_has_a_text_field_a_slack_webhook_shows_as_is() -> None:
    payload = webhook_payload(results(), account="prod")

    assert (
        "r9s-usage check failed for prod:\n"
        "FAIL max_daily_tokens: 2,000,000 tokens is above 1,000,000 on 2025-03-09\n"
        "FAIL min_runway_days: runway 9.5 days is below 14 days on 2025-03-10"
    ) == payload["text"]
    assert 3 == len(payload["checks"])
    assert payload == json.loads(json.dumps(payload))


def test_the_same_check_for_the_same_day_and_account_has_the_same_dedupe_key() -> None:
    first = check_max_daily_tokens(2_000_000, 1_000_000, day=day(1))
    later = check_max_daily_tokens(2_500_000, 1_000_000, day=day(1))
    next_day = check_max_daily_tokens(2_000_000, 1_000_000, day=TODAY)

    assert ("max_daily_tokens", "ab12", "2025-03-09") == first.dedupe_key("ab12")
    assert first.dedupe_key("ab12") == later.dedupe_key("ab12")
    assert first.dedupe_key("ab12") != next_day.dedupe_key("ab12")
    assert first.dedupe_key("ab12") != first.dedupe_key("cd34")
