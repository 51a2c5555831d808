"""The headline property: a range fetched in UTC-day windows and merged equals the half-open
truth ``[start, end)`` (``start <= timestamp < end``), whether the server's ``end_time`` is
inclusive or exclusive, whether its answers are cut off after a record cap or not, with daily
records on midnights and with many records a day including boundary seconds and identical twins.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Literal

import pytest
from _helpers import DAY
from attrs import frozen
from hypothesis import given, settings
from hypothesis import strategies as st

from r9s_async import AsyncClient, Client, UsageRecord
from r9s_async._windows import count_windows, plan_windows
from r9s_async.testing import TEST_API_KEY, FakeR9sAPI

pytestmark = pytest.mark.usefixtures("decoder")  # both decoders of /usage answers

D0 = 20_000 * DAY  # a UTC midnight (2024-10-04); the property ranges over the ~10 days after it

Mode = Literal["daily", "events"]


@frozen
class Served:
    api: FakeR9sAPI
    client: Client


SETUPS: list[tuple[Mode, bool, int | None]] = [
    ("daily", True, None),
    ("daily", False, None),
    ("events", True, None),
    ("events", False, None),
    ("events", True, 7),
    ("events", False, 7),
]


@pytest.fixture(
    scope="module",
    params=SETUPS,
    ids=[
        f"{m}-{'inclusive' if i else 'exclusive'}" + ("" if c is None else f"-cap{c}")
        for m, i, c in SETUPS
    ],
)
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    """One fake server and one pooled client per setup, shared by every example."""
    mode, inclusive, cap = request.param
    api = FakeR9sAPI(mode=mode, end_inclusive=inclusive, record_cap=cap)
    with api.serve_in_thread() as base_url, Client(TEST_API_KEY, base_url=base_url) as client:
        yield Served(api, client)


def unsplit(api: FakeR9sAPI, start: int, end: int) -> list[UsageRecord]:
    """The half-open truth: the records with ``start <= timestamp < end`` that one uncapped
    call would answer, stably sorted by timestamp."""
    answer = sorted(api.records_in(start, end), key=lambda r: r["timestamp"])
    return [UsageRecord(**r) for r in answer]


# Starts and ends fall on midnights, one second either side of them, or anywhere.
offsets = st.one_of(st.sampled_from([0, 1, DAY - 1]), st.integers(min_value=0, max_value=DAY - 1))


@st.composite
def ranges(draw: st.DrawFn) -> tuple[int, int]:
    start = D0 + draw(st.integers(min_value=0, max_value=9)) * DAY + draw(offsets)
    kind = draw(st.sampled_from(["one-second", "midnight", "near-midnight", "any"]))
    if kind == "one-second":
        return start, start + 1
    first_midnight = -(-start // DAY) * DAY
    midnight = first_midnight + draw(st.integers(min_value=0, max_value=10)) * DAY
    if kind == "midnight":
        end = midnight
    elif kind == "near-midnight":
        end = midnight + draw(st.sampled_from([-1, 1]))
    else:
        end = start + draw(st.integers(min_value=1, max_value=10 * DAY))
    return start, max(start + 1, end)


@settings(max_examples=100, deadline=None)
@given(ranges())
def test_split_and_merged_equals_the_half_open_truth(
    served: Served, bounds: tuple[int, int]
) -> None:
    start, end = bounds
    api, client = served.api, served.client
    asked_before = len(api.requests)

    report = client.usage(start, end)

    expected = unsplit(api, start, end)
    assert expected == report.records
    assert sum(r.tokens for r in expected) == report.total_tokens
    assert (start, end, True) == (report.start, report.end, report.consistent)
    asked = [
        (int(r.query["start_time"]), int(r.query["end_time"])) for r in api.requests[asked_before:]
    ]
    windows = {(w.start, w.end) for w in plan_windows(start, end)}
    assert windows <= set(asked)
    if api.record_cap is None:
        assert count_windows(start, end) == len(asked)
        assert sorted(windows) == sorted(asked)
    assert len(asked) == len(report.request_ids)


def test_iter_usage_windows_concatenate_to_the_unsplit_answer(served: Served) -> None:
    start, end = D0 + 3600, D0 + 4 * DAY

    windows = list(served.client.iter_usage(start, end))

    assert [(w.start, w.end) for w in plan_windows(start, end)] == [
        (w.start, w.end) for w in windows
    ]
    assert unsplit(served.api, start, end) == [r for w in windows for r in w.records]
    assert all(w.total_tokens == sum(r.tokens for r in w.records) for w in windows)
    assert all(w.consistent for w in windows)


@pytest.mark.parametrize("inclusive", [True, False], ids=["inclusive", "exclusive"])
async def test_midnight_to_midnight_never_gets_the_end_midnight_records(
    inclusive: bool,
) -> None:
    api = FakeR9sAPI(mode="daily", end_inclusive=inclusive)
    start, end = D0, D0 + 3 * DAY
    async with api.serve() as base_url, AsyncClient(TEST_API_KEY, base_url=base_url) as client:
        report = await client.usage(start, end)

    assert [D0, D0 + DAY, D0 + 2 * DAY] == sorted({r.timestamp for r in report.records})
    assert unsplit(api, start, end) == report.records
    # the midnights inside the range were each asked twice (as a window's end and the next
    # window's start) but are counted once
    assert 1 == Counter(r.timestamp for r in report.records)[D0 + DAY] // len(api.models)


async def test_identical_twin_records_are_all_kept() -> None:
    api = FakeR9sAPI(mode="events", end_inclusive=True)
    start, end = D0, D0 + 5 * DAY
    expected = Counter(unsplit(api, start, end))
    twins = {record: n for record, n in expected.items() if n > 1}
    assert twins, "the fake's events mode should serve identical twins in five days"

    async with api.serve() as base_url, AsyncClient(TEST_API_KEY, base_url=base_url) as client:
        report = await client.usage(start, end)

    assert twins == {record: n for record, n in Counter(report.records).items() if n > 1}
    assert sum(expected.values()) == len(report.records)


async def test_boundary_second_records_are_counted_once() -> None:
    api = FakeR9sAPI(mode="events", end_inclusive=True)
    start, end = D0, D0 + 2 * DAY
    async with api.serve() as base_url, AsyncClient(TEST_API_KEY, base_url=base_url) as client:
        report = await client.usage(start, end)

    seconds = Counter(r.timestamp for r in report.records)
    expected = Counter(r.timestamp for r in unsplit(api, start, end))
    assert all(expected[t] == seconds[t] for t in (D0, D0 + DAY - 1, D0 + DAY, D0 + 2 * DAY))
    assert expected[D0 + DAY] >= 1
