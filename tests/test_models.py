"""The models users get back: record times in UTC, and the report's totals by model and day."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import assert_type
from unittest import mock

import attrs
import pandas
import pytest
from _helpers import DAY

from r9s_async import Balance, UsageRecord, UsageReport

JAN1 = 1_735_689_600  # 2025-01-01T00:00:00Z


def report(records: list[UsageRecord]) -> UsageReport:
    return UsageReport(records, sum(r.tokens for r in records), JAN1, JAN1 + 3 * DAY)


TWINS_AND_MIDNIGHTS = [
    UsageRecord(JAN1, 100, "gpt-4o-mini"),
    UsageRecord(JAN1, 7, "gpt-4o"),
    UsageRecord(JAN1 + 3600, 100, "gpt-4o-mini"),
    UsageRecord(JAN1 + 3600, 100, "gpt-4o-mini"),  # an identical twin: counted twice
    UsageRecord(JAN1 + DAY - 1, 1, "gpt-4o"),
    UsageRecord(JAN1 + DAY, 50, "gpt-4o"),  # on the next midnight: the next day
    UsageRecord(JAN1 + 2 * DAY + 5, 2000, "claude-sonnet-4"),
]


def test_record_datetime_is_aware_utc() -> None:
    when = UsageRecord(JAN1 + 3661, 1, "m").datetime

    assert datetime(2025, 1, 1, 1, 1, 1, tzinfo=UTC) == when
    assert UTC == when.tzinfo


def test_tokens_by_model_counts_twins_and_puts_the_largest_first() -> None:
    expected = {"claude-sonnet-4": 2000, "gpt-4o-mini": 300, "gpt-4o": 58}

    by_model = report(TWINS_AND_MIDNIGHTS).tokens_by_model()

    assert expected == by_model
    assert list(expected) == list(by_model)


def test_tokens_by_day_puts_midnight_records_in_the_day_they_start() -> None:
    expected = {date(2025, 1, 1): 308, date(2025, 1, 2): 50, date(2025, 1, 3): 2000}

    by_day = report(TWINS_AND_MIDNIGHTS).tokens_by_day()

    assert expected == by_day
    assert list(expected) == list(by_day)


def test_tokens_by_day_is_in_day_order_even_for_a_handmade_unsorted_report() -> None:
    by_day = report(list(reversed(TWINS_AND_MIDNIGHTS))).tokens_by_day()

    assert [date(2025, 1, 1), date(2025, 1, 2), date(2025, 1, 3)] == list(by_day)


def test_tokens_by_day_and_model_is_in_day_then_model_order() -> None:
    expected = {
        (date(2025, 1, 1), "gpt-4o"): 8,
        (date(2025, 1, 1), "gpt-4o-mini"): 300,
        (date(2025, 1, 2), "gpt-4o"): 50,
        (date(2025, 1, 3), "claude-sonnet-4"): 2000,
    }

    by_day_and_model = report(list(reversed(TWINS_AND_MIDNIGHTS))).tokens_by_day_and_model()

    assert expected == by_day_and_model
    assert list(expected) == list(by_day_and_model)


def test_an_empty_report_has_empty_totals() -> None:
    empty = report([])

    assert ({}, {}, {}) == (
        empty.tokens_by_model(),
        empty.tokens_by_day(),
        empty.tokens_by_day_and_model(),
    )


def test_reports_compare_by_value_and_default_to_no_request_ids() -> None:
    assert () == report([]).request_ids
    assert report(TWINS_AND_MIDNIGHTS) == report(list(TWINS_AND_MIDNIGHTS))


def test_models_are_frozen() -> None:
    record = UsageRecord(JAN1, 1, "m")

    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        record.tokens = 2  # type: ignore[misc]


def test_balance_holds_decimals_and_an_optional_request_id() -> None:
    balance = Balance(Decimal("1.10"), "USD", Decimal(0), Decimal(0), Decimal(0))

    assert (Decimal("1.10"), None) == (balance.balance, balance.request_id)


# -- a report you can look at -----------------------------------------------------------------


def big_report(n: int) -> UsageReport:
    models = ["gpt-4o-mini", "gpt-4o", "claude-sonnet-4", "deepseek-chat", "o3"]
    records = [UsageRecord(1_714_521_600 + i, 7, models[i % 5]) for i in range(n)]
    return UsageReport(records, 7 * n, 1_714_521_600, 1_717_200_000, request_ids=("a",) * 31)


def test_the_repr_of_a_report_is_a_short_summary() -> None:
    expected = (
        "UsageReport(start=2024-05-01T00:00:00Z, end=2024-06-01T00:00:00Z, "
        "records=<827 records>, total_tokens=5789, "
        "models=['gpt-4o-mini', 'gpt-4o', 'claude-sonnet-4', +2 more], consistent=True)"
    )

    assert expected == repr(big_report(827))


def test_the_repr_of_a_large_report_names_the_models_of_its_first_thousand_records() -> None:
    records = [UsageRecord(i, 1, "gpt-4o") for i in range(1000)] + [UsageRecord(1000, 1, "o1")]
    report = UsageReport(records, 1001, 0, 2000)

    assert "models=['gpt-4o', ...]" in repr(report)


def test_the_repr_of_an_empty_or_inconsistent_report() -> None:
    report = UsageReport([], 0, 0, 86_400, consistent=False)

    assert (
        "UsageReport(start=1970-01-01T00:00:00Z, end=1970-01-02T00:00:00Z, "
        "records=<0 records>, total_tokens=0, models=[], consistent=False)"
    ) == repr(report)


def test_a_report_returned_by_asyncio_run_is_formatted_only_as_a_summary() -> None:
    # CPython gh-112559: on 3.11, asyncio.run's cleanup formats the main task, result
    # included, through repr (twice). A report's repr must stay small whatever its size.
    report = big_report(100_000)
    shown: list[str] = []
    original = UsageReport.__repr__

    def counting_repr(self: UsageReport) -> str:
        text = original(self)
        shown.append(text)
        return text

    async def main() -> UsageReport:
        return report

    with mock.patch.object(UsageReport, "__repr__", counting_repr):
        assert report is asyncio.run(main())

    if sys.version_info[:2] == (3, 11):
        assert shown  # the bug is there: the report was formatted
    assert [] == [text for text in shown if len(text) > 300]


def test_to_pandas_is_typed_as_a_data_frame() -> None:
    # assert_type is checked by mypy (with pandas-stubs, in the test extra): Any would fail it.
    frame = assert_type(big_report(3).to_pandas(), pandas.DataFrame)

    assert ["timestamp", "model", "tokens"] == list(frame.columns)
