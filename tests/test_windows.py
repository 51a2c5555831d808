"""Window planning and exact merging: UTC-midnight splits, ownership, stable order."""

from __future__ import annotations

from itertools import pairwise

import pytest
from _helpers import DAY
from hypothesis import given, settings
from hypothesis import strategies as st

from r9s_async import UsageRecord, UsageReport
from r9s_async._windows import (
    Window,
    count_windows,
    merge_windows,
    owned_records,
    plan_windows,
)

D = 20_000 * DAY  # a UTC midnight (2024-10-04)


def test_a_range_inside_one_utc_day_is_one_window() -> None:
    assert [Window(D + 10, D + 500, last=True)] == list(plan_windows(D + 10, D + 500))


def test_midnight_to_next_midnight_is_one_window() -> None:
    assert [Window(D, D + DAY, last=True)] == list(plan_windows(D, D + DAY))


def test_a_zero_length_range_is_one_window() -> None:
    assert [Window(D, D, last=True)] == list(plan_windows(D, D))


def test_ranges_split_at_utc_midnights_and_the_last_window_asks_up_to_end() -> None:
    expected = [
        Window(D + 100, D + DAY, last=False),
        Window(D + DAY, D + 2 * DAY, last=False),
        Window(D + 2 * DAY, D + 2 * DAY + 7, last=True),
    ]

    assert expected == list(plan_windows(D + 100, D + 2 * DAY + 7))


def test_a_range_ending_one_second_past_midnight_gets_a_one_second_last_window() -> None:
    expected = [Window(D, D + DAY, last=False), Window(D + DAY, D + DAY + 1, last=True)]

    assert expected == list(plan_windows(D, D + DAY + 1))


def test_planning_is_lazy_so_a_century_costs_nothing_up_front() -> None:
    plan = plan_windows(0, 100 * 365 * DAY)

    assert Window(0, DAY, last=False) == next(plan)
    assert 36_500 == count_windows(0, 100 * 365 * DAY)


def test_plan_refuses_end_before_start() -> None:
    with pytest.raises(ValueError, match="before start"):
        list(plan_windows(10, 9))


@settings(max_examples=300, deadline=None)
@given(
    start=st.integers(min_value=0, max_value=40 * DAY),
    length=st.one_of(
        st.integers(min_value=0, max_value=12 * DAY),
        st.integers(min_value=0, max_value=12).map(lambda days: days * DAY),
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
    assert [False] * (len(windows) - 1) + [True] == [w.last for w in windows]
    assert all(a.end == b.start for a, b in pairwise(windows))
    assert all(w.end % DAY == 0 for w in windows[:-1])
    assert all(w.start < w.end for w in windows[:-1])
    assert len(windows) == count_windows(start, end)
    # every second of [start, end] is owned by exactly one window
    for t in {start, end, *(w.start for w in windows), *(w.end for w in windows)}:
        assert 1 == sum(w.owns(t) for w in windows)


def test_a_window_owns_its_start_but_not_its_end_unless_it_is_the_last() -> None:
    inner = Window(D, D + DAY, last=False)
    last = Window(D, D + DAY, last=True)

    assert (True, False, False) == (inner.owns(D), inner.owns(D + DAY), inner.owns(D - 1))
    assert (True, True, False) == (last.owns(D), last.owns(D + DAY), last.owns(D + DAY + 1))


def rec(t: int, tokens: int = 1, model: str = "m") -> UsageRecord:
    return UsageRecord(t, tokens, model)


def test_owned_records_drop_the_next_windows_midnight_record() -> None:
    window = Window(D, D + DAY, last=False)
    records = [rec(D, 1), rec(D + 5, 2), rec(D + DAY, 3)]

    assert [rec(D, 1), rec(D + 5, 2)] == owned_records(window, records)


def test_the_last_window_keeps_records_on_its_end() -> None:
    window = Window(D, D + DAY, last=True)
    records = [rec(D, 1), rec(D + DAY, 3)]

    assert records == owned_records(window, records)


def test_owned_records_drop_records_before_the_window() -> None:
    window = Window(D, D + DAY, last=True)

    assert [rec(D)] == owned_records(window, [rec(D - 1), rec(D)])


def test_out_of_order_records_are_sorted_stably_by_timestamp() -> None:
    window = Window(D, D + DAY, last=True)
    records = [rec(D + 9, 1, "b"), rec(D + 1, 2), rec(D + 9, 3, "a"), rec(D + 1, 4)]

    expected = [rec(D + 1, 2), rec(D + 1, 4), rec(D + 9, 1, "b"), rec(D + 9, 3, "a")]
    assert expected == owned_records(window, records)


def test_identical_twins_are_all_kept() -> None:
    window = Window(D, D + DAY, last=False)
    twin = rec(D + 60, 500, "gpt-4o")
    records = [twin, rec(D + 60, 500, "gpt-4o"), rec(D + 60, 500, "gpt-4o")]

    assert 3 == len(owned_records(window, records))


def test_nothing_to_drop_or_reorder_returns_the_same_list() -> None:
    window = Window(D, D + DAY, last=False)
    records = [rec(D), rec(D), rec(D + 3)]

    assert records is owned_records(window, records)


def test_owned_records_never_change_the_list_passed_in() -> None:
    window = Window(D, D + DAY, last=False)
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
    st.booleans(),
)
def test_owned_records_is_a_stable_sort_of_the_owned_ones(
    records: list[UsageRecord], last: bool
) -> None:
    window = Window(D, D + DAY, last=last)

    expected = sorted((r for r in records if window.owns(r.timestamp)), key=lambda r: r.timestamp)
    assert expected == owned_records(window, records)


def test_merge_windows_concatenates_records_totals_and_request_ids() -> None:
    first = UsageReport([rec(D, 5)], 5, D, D + DAY, request_ids=("a",))
    second = UsageReport([rec(D + DAY, 7), rec(D + DAY, 7)], 14, D + DAY, D + DAY + 9)
    third = UsageReport([], 0, D + DAY + 9, D + DAY + 9, request_ids=("c",))

    merged = merge_windows(D, D + DAY + 9, [first, second, third])

    expected = UsageReport(
        [rec(D, 5), rec(D + DAY, 7), rec(D + DAY, 7)], 19, D, D + DAY + 9, request_ids=("a", "c")
    )
    assert expected == merged


def test_merging_no_windows_is_an_empty_report() -> None:
    assert UsageReport([], 0, D, D) == merge_windows(D, D, [])


@pytest.mark.parametrize("span", [0, -DAY])
def test_plan_refuses_a_span_that_is_not_positive(span: int) -> None:
    with pytest.raises(ValueError, match="span must be positive"):
        list(plan_windows(0, DAY, span=span))


def test_plan_splits_at_multiples_of_a_custom_span() -> None:
    expected = [Window(5, 10, last=False), Window(10, 20, last=False), Window(20, 23, last=True)]

    assert expected == list(plan_windows(5, 23, span=10))
    assert 3 == count_windows(5, 23, span=10)
