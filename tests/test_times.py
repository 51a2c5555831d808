"""Time arguments: what ``usage``/``iter_usage`` accept, the one half-open conversion, and what
they refuse before any request."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from _helpers import DAY

from r9s_async import AsyncClient
from r9s_async._times import UNBOUNDED, to_half_open, to_unix
from r9s_async.testing import FakeR9sAPI

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("seconds", [0, 1, 1_735_689_600])
def test_int_seconds_are_taken_as_they_are(seconds: int) -> None:
    assert seconds == to_unix(seconds, "start")


@pytest.mark.parametrize(
    "tz",
    [UTC, timezone(timedelta(hours=9)), timezone(timedelta(hours=-5, minutes=-30))],
    ids=["utc", "plus9", "minus5h30"],
)
def test_an_aware_datetime_in_any_offset_is_the_same_instant(tz: timezone) -> None:
    instant = datetime(2025, 1, 1, 12, 30, 5, tzinfo=UTC)

    assert 1_735_734_605 == to_unix(instant.astimezone(tz), "start")


def test_a_date_is_utc_midnight() -> None:
    assert 1_735_689_600 == to_unix(date(2025, 1, 1), "start")
    assert 0 == to_unix(date(1970, 1, 1), "start")


@pytest.mark.parametrize("value", [True, False, "1735689600", 1735689600.0, None, [0]], ids=repr)
def test_other_types_are_a_type_error(value: object) -> None:
    with pytest.raises(TypeError, match="start must be int Unix seconds"):
        to_unix(value, "start")


def test_a_naive_datetime_is_a_value_error_that_says_to_add_a_timezone() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        to_unix(datetime(2025, 1, 1), "end")


@pytest.mark.parametrize("value", [-1, date(1969, 12, 31), datetime(1969, 1, 1, tzinfo=UTC)])
def test_times_before_the_epoch_are_a_value_error(value: object) -> None:
    with pytest.raises(ValueError, match=">= 0"):
        to_unix(value, "start")


def test_end_before_start_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"is empty: end \(9\) is before start \(10\)"):
        to_half_open(10, 9)


def test_end_equal_to_start_is_an_empty_range_and_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"\[start, end\) is empty: end \(10\) equals start"):
        to_half_open(10, 10)


def test_a_one_second_range_holds_its_start_only() -> None:
    assert (10, 11) == to_half_open(10, 11)


def test_both_fractional_bounds_round_up() -> None:
    # t >= 100.000001 iff t >= 101, and t < 200.999999 iff t < 201, for whole seconds t
    start = EPOCH + timedelta(seconds=100, microseconds=1)
    end = EPOCH + timedelta(seconds=200, microseconds=999_999)

    assert (101, 201) == to_half_open(start, end)


def test_whole_second_datetimes_are_not_rounded() -> None:
    assert (100, 200) == to_half_open(
        EPOCH + timedelta(seconds=100), EPOCH + timedelta(seconds=200)
    )


def test_a_fractional_range_without_a_whole_second_says_so() -> None:
    start = EPOCH + timedelta(seconds=10, microseconds=300_000)
    end = EPOCH + timedelta(seconds=10, microseconds=700_000)

    with pytest.raises(ValueError, match="holds no whole second"):
        to_half_open(start, end)


def test_mixed_types_make_one_range() -> None:
    assert (DAY, 2 * DAY + 5) == to_half_open(date(1970, 1, 2), 2 * DAY + 5)


def test_no_end_is_now_to_the_end_of_the_current_second() -> None:
    before = int(time.time())
    _, end = to_half_open(0, None)
    after = int(time.time())

    assert before + 1 <= end <= after + 1


def test_open_ends_are_the_earliest_and_unbounded_for_the_store() -> None:
    assert (0, UNBOUNDED) == to_half_open(None, None, open_ends=True)
    assert (5, UNBOUNDED) == to_half_open(5, None, open_ends=True)


BAD_RANGES: list[tuple[object, object, type[Exception]]] = [
    (True, 10, TypeError),
    ("0", 10, TypeError),
    (0.0, 10, TypeError),
    (None, 10, TypeError),
    (0, "10", TypeError),
    (datetime(2025, 1, 1), 10, ValueError),
    (-1, 10, ValueError),
    (10, 9, ValueError),
    (10, 10, ValueError),
    (date(2024, 10, 4), date(2024, 10, 4), ValueError),
]


@pytest.mark.parametrize(("start", "end", "error"), BAD_RANGES)
async def test_usage_refuses_bad_times_before_any_request(
    api: FakeR9sAPI, client: AsyncClient, start: object, end: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        await client.usage(start, end)  # type: ignore[arg-type]

    assert [] == api.requests


@pytest.mark.parametrize(("start", "end", "error"), BAD_RANGES)
async def test_iter_usage_refuses_bad_times_before_any_request(
    api: FakeR9sAPI, client: AsyncClient, start: object, end: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        client.iter_usage(start, end)  # type: ignore[arg-type]

    assert [] == api.requests


async def test_usage_asks_for_the_rounded_whole_seconds(
    api: FakeR9sAPI, client: AsyncClient
) -> None:
    start = EPOCH + timedelta(days=3, seconds=100, microseconds=500_000)
    end = EPOCH + timedelta(days=3, seconds=900, microseconds=500_000)

    report = await client.usage(start, end)

    assert [{"start_time": str(3 * DAY + 101), "end_time": str(3 * DAY + 901)}] == [
        dict(r.query) for r in api.requests
    ]
    assert (3 * DAY + 101, 3 * DAY + 901) == (report.start, report.end)


def test_times_after_the_year_9999_are_a_value_error() -> None:
    with pytest.raises(ValueError, match="after 9999-12-31"):
        to_unix(253_402_300_800, "end")
    assert 253_402_300_799 == to_unix(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), "end")


def test_an_end_before_a_date_start_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"end \(86399\) is before start \(86400\)"):
        to_half_open(date(1970, 1, 2), 86_399)


async def test_usage_without_an_end_asks_up_to_the_end_of_the_current_second(
    api: FakeR9sAPI, client: AsyncClient
) -> None:
    start = int(time.time()) - 10
    before = int(time.time())

    report = await client.usage(start)

    assert start == report.start
    assert before + 1 <= report.end <= int(time.time()) + 1
    asked = [(r.query["start_time"], r.query["end_time"]) for r in api.requests]
    assert asked[-1][1] == str(report.end)
