"""Window planning, healing decisions and exact merging: UTC-midnight splits, half-open
ownership, halves, stable order."""

from __future__ import annotations

import logging
from itertools import pairwise

import pytest
from _helpers import DAY
from hypothesis import given, settings
from hypothesis import strategies as st

from r9s_async import UsageRecord, UsageReport
from r9s_async._windows import (
    Window,
    count_windows,
    halves_add_records,
    merge_parts,
    merge_windows,
    owned_records,
    plan_windows,
    report_window,
)

D = 20_000 * DAY  # a UTC midnight (2024-10-04)


def test_a_range_inside_one_utc_day_is_one_window() -> None:
    assert [Window(D + 10, D + 500)] == list(plan_windows(D + 10, D + 500))


def test_midnight_to_next_midnight_is_one_window() -> None:
    assert [Window(D, D + DAY)] == list(plan_windows(D, D + DAY))


@pytest.mark.parametrize(("start", "end"), [(D, D), (D + 1, D)])
def test_an_empty_range_is_refused(start: int, end: int) -> None:
    with pytest.raises(ValueError, match="is empty"):
        list(plan_windows(start, end))


def test_ranges_split_at_utc_midnights_and_the_last_window_asks_up_to_end() -> None:
    expected = [
        Window(D + 100, D + DAY),
        Window(D + DAY, D + 2 * DAY),
        Window(D + 2 * DAY, D + 2 * DAY + 7),
    ]

    assert expected == list(plan_windows(D + 100, D + 2 * DAY + 7))


def test_a_range_ending_one_second_past_midnight_gets_a_one_second_last_window() -> None:
    expected = [Window(D, D + DAY), Window(D + DAY, D + DAY + 1)]

    assert expected == list(plan_windows(D, D + DAY + 1))


def test_planning_is_lazy_so_a_century_costs_nothing_up_front() -> None:
    plan = plan_windows(0, 100 * 365 * DAY)

    assert Window(0, DAY) == next(plan)
    assert 36_500 == count_windows(0, 100 * 365 * DAY)


@settings(max_examples=300, deadline=None)
@given(
    start=st.integers(min_value=0, max_value=40 * DAY),
    length=st.one_of(
        st.integers(min_value=1, max_value=12 * DAY),
        st.integers(min_value=1, max_value=12).map(lambda days: days * DAY),
    ),
    on_midnight=st.booleans(),
)
def test_windows_tile_the_range_exactly(start: int, length: int, on_midnight: bool) -> None:
    if on_midnight:
        start -= start % DAY
    end = start + length

    windows = list(plan_windows(start, end))

    assert start == windows[0].start
    assert end == windows[-1].end
    assert all(a.end == b.start for a, b in pairwise(windows))
    assert all(w.end % DAY == 0 for w in windows[:-1])
    assert all(w.start < w.end for w in windows)
    assert len(windows) == count_windows(start, end)
    # every second of [start, end) is owned by exactly one window, and end by none
    for t in {start, *(w.start for w in windows), *(w.end - 1 for w in windows)}:
        assert 1 == sum(w.owns(t) for w in windows)
    assert 0 == sum(w.owns(end) for w in windows)


def test_a_window_owns_its_start_but_not_its_end() -> None:
    window = Window(D, D + DAY)

    assert (True, True, False, False) == (
        window.owns(D),
        window.owns(D + DAY - 1),
        window.owns(D + DAY),
        window.owns(D - 1),
    )


def rec(t: int, tokens: int = 1, model: str = "m") -> UsageRecord:
    return UsageRecord(t, tokens, model)


def test_owned_records_drop_the_next_windows_midnight_record() -> None:
    window = Window(D, D + DAY)
    records = [rec(D, 1), rec(D + 5, 2), rec(D + DAY, 3)]

    assert [rec(D, 1), rec(D + 5, 2)] == owned_records(window, records)


def test_no_window_keeps_records_on_its_end() -> None:
    window = Window(D, D + DAY)
    records = [rec(D, 1), rec(D + DAY, 3)]

    assert [rec(D, 1)] == owned_records(window, records)


def test_owned_records_drop_records_before_the_window() -> None:
    window = Window(D, D + DAY)

    assert [rec(D)] == owned_records(window, [rec(D - 1), rec(D)])


def test_out_of_order_records_are_sorted_stably_by_timestamp() -> None:
    window = Window(D, D + DAY)
    records = [rec(D + 9, 1, "b"), rec(D + 1, 2), rec(D + 9, 3, "a"), rec(D + 1, 4)]

    expected = [rec(D + 1, 2), rec(D + 1, 4), rec(D + 9, 1, "b"), rec(D + 9, 3, "a")]
    assert expected == owned_records(window, records)


def test_identical_twins_are_all_kept() -> None:
    window = Window(D, D + DAY)
    twin = rec(D + 60, 500, "gpt-4o")
    records = [twin, rec(D + 60, 500, "gpt-4o"), rec(D + 60, 500, "gpt-4o")]

    assert 3 == len(owned_records(window, records))


def test_nothing_to_drop_or_reorder_returns_the_same_list() -> None:
    window = Window(D, D + DAY)
    records = [rec(D), rec(D), rec(D + 3)]

    assert records is owned_records(window, records)


def test_owned_records_never_change_the_list_passed_in() -> None:
    window = Window(D, D + DAY)
    records = [rec(D + 3), rec(D + DAY), rec(D)]
    before = list(records)

    owned_records(window, records)

    assert before == records


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.builds(
            UsageRecord,
            st.integers(min_value=D - 3, max_value=D + DAY + 3),
            st.integers(min_value=0, max_value=9),
            st.sampled_from(["a", "b"]),
        ),
        max_size=30,
    ),
)
def test_owned_records_is_a_stable_sort_of_the_owned_ones(records: list[UsageRecord]) -> None:
    window = Window(D, D + DAY)

    expected = sorted((r for r in records if window.owns(r.timestamp)), key=lambda r: r.timestamp)
    assert expected == owned_records(window, records)


def test_merge_windows_concatenates_records_totals_and_request_ids() -> None:
    first = UsageReport([rec(D, 5)], 5, D, D + DAY, request_ids=("a",))
    second = UsageReport([rec(D + DAY, 7), rec(D + DAY, 7)], 14, D + DAY, D + DAY + 9)
    third = UsageReport([], 0, D + DAY + 9, D + DAY + 10, request_ids=("c",))

    merged = merge_windows(D, D + DAY + 10, [first, second, third])

    expected = UsageReport(
        [rec(D, 5), rec(D + DAY, 7), rec(D + DAY, 7)], 19, D, D + DAY + 10, request_ids=("a", "c")
    )
    assert expected == merged


def test_merging_no_windows_is_an_empty_report() -> None:
    assert UsageReport([], 0, D, D) == merge_windows(D, D, [])


@pytest.mark.parametrize("span", [0, -DAY])
def test_plan_refuses_a_span_that_is_not_positive(span: int) -> None:
    with pytest.raises(ValueError, match="span must be positive"):
        list(plan_windows(0, DAY, span=span))


def test_plan_splits_at_multiples_of_a_custom_span() -> None:
    expected = [Window(5, 10), Window(10, 20), Window(20, 23)]

    assert expected == list(plan_windows(5, 23, span=10))
    assert 3 == count_windows(5, 23, span=10)


# -- healing decisions ------------------------------------------------------------------------


def test_halves_meet_at_the_middle_and_own_every_second_once() -> None:
    left, right = Window(D, D + DAY).halves()

    assert (Window(D, D + DAY // 2), Window(D + DAY // 2, D + DAY)) == (left, right)
    assert (Window(D, D + 1), Window(D + 1, D + 3)) == Window(D, D + 3).halves()


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=DAY), st.integers(min_value=2, max_value=DAY))
def test_halves_tile_their_window(start: int, length: int) -> None:
    window = Window(start, start + length)

    left, right = window.halves()

    assert (window.start, left.end, window.end) == (left.start, right.start, right.end)
    assert left.start < left.end
    assert right.start < right.end


def test_a_window_is_split_only_down_to_the_floor_and_never_below_two_seconds() -> None:
    assert Window(D, D + 60).can_split(60)
    assert not Window(D, D + 59).can_split(60)
    assert Window(D, D + 2).can_split(1)
    assert not Window(D, D + 1).can_split(1)


def test_an_answer_that_adds_up_is_consistent_and_not_cut_off() -> None:
    answer = report_window(Window(D, D + DAY), [rec(D, 3), rec(D + 9, 4)], 7, "r")

    assert (True, False) == (answer.report.consistent, answer.cut_off)
    assert UsageReport([rec(D, 3), rec(D + 9, 4)], 7, D, D + DAY, request_ids=("r",)) == (
        answer.report
    )


def test_an_answer_short_of_its_total_is_cut_off_and_one_over_it_is_not() -> None:
    short = report_window(Window(D, D + DAY), [rec(D, 3)], 10, "r")
    over = report_window(Window(D, D + DAY), [rec(D, 3)], 2, "r")

    assert (False, True) == (short.report.consistent, short.cut_off)
    assert (False, False) == (over.report.consistent, over.cut_off)


def test_the_declared_total_is_checked_against_every_record_returned_not_only_owned_ones() -> None:
    # An inclusive server sends the record on end; it is in the declared total, not owned.
    answer = report_window(Window(D, D + DAY), [rec(D, 3), rec(D + DAY, 4)], 7, "r")

    assert ([rec(D, 3)], 3, True) == (
        answer.report.records,
        answer.report.total_tokens,
        answer.report.consistent,
    )


def test_halves_that_return_only_what_the_part_did_add_nothing() -> None:
    part = UsageReport([rec(D, 1), rec(D + 50, 2)], 3, D, D + 100)
    left = UsageReport([rec(D, 1)], 1, D, D + 50)
    right = UsageReport([rec(D + 50, 2)], 2, D + 50, D + 100)

    assert not halves_add_records(part, left, right)
    assert not halves_add_records(part, left, UsageReport([], 0, D + 50, D + 100))


def test_halves_add_a_record_the_part_lacked_even_an_identical_twin() -> None:
    part = UsageReport([rec(D, 1)], 1, D, D + 100)
    twin = UsageReport([rec(D, 1), rec(D, 1)], 2, D, D + 50)
    other = UsageReport([rec(D + 60, 5)], 5, D + 50, D + 100)
    empty = UsageReport([], 0, D + 50, D + 100)

    assert halves_add_records(part, twin, empty)
    assert halves_add_records(part, UsageReport([rec(D, 1)], 1, D, D + 50), other)


def test_merged_parts_that_all_add_up_are_consistent_and_carry_every_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    window = Window(D, D + 100)
    parts = [
        report_window(Window(D, D + 50), [rec(D, 1)], 1, "b"),
        report_window(Window(D + 50, D + 100), [rec(D + 70, 2)], 2, "c"),
    ]

    with caplog.at_level(logging.INFO, logger="r9s_async"):
        merged = merge_parts(window, parts, ["a", "b", "c"])

    expected = UsageReport([rec(D, 1), rec(D + 70, 2)], 3, D, D + 100, request_ids=("a", "b", "c"))
    assert expected == merged
    assert [] == [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_part_that_stays_short_is_flagged_and_the_warning_names_its_range_and_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    window = Window(D, D + 100)
    parts = [
        report_window(Window(D, D + 50), [rec(D, 1)], 1, "B" * 32),
        report_window(Window(D + 50, D + 100), [rec(D + 70, 2)], 9, "C" * 32),
    ]

    merged = merge_parts(window, parts, ["A" * 32, "B" * 32, "C" * 32])

    assert not merged.consistent
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"[{D + 50}, {D + 100})" in warning
    assert "C" * 32 in warning
    assert "B" * 32 not in warning
    assert "total_tokens=9" in warning
