"""Window planning, healing decisions and exact merging: pure functions over plain data.

Every range is half-open, ``[start, end)``. The server's ``end_time`` may be inclusive or
exclusive, and daily records sit exactly on UTC midnights. Each window therefore *owns* the
half-open span ``[start, end)`` it asks for (``start_time=start, end_time=end``) and keeps only
the records it owns. A record on a split point is then counted by exactly one window, whichever
way the server treats ``end_time``, and the merge equals the half-open truth.

:func:`report_window` turns one window's decoded answer into a :class:`WindowAnswer`, and logs
(at WARNING) records outside the asked range. An answer whose records add up to less than its
declared total may have been cut off: :meth:`Window.halves` and :func:`halves_add_records`
decide how it is healed by splitting, and :func:`merge_parts` merges the parts and warns about
those that could not be healed.
"""

from __future__ import annotations

import logging
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from operator import attrgetter, le

from attrs import frozen

from ._models import UsageRecord, UsageReport
from ._times import DAY

__all__ = [
    "DEFAULT_SPLIT_FLOOR",
    "Window",
    "WindowAnswer",
    "count_windows",
    "halves_add_records",
    "merge_parts",
    "merge_windows",
    "owned_records",
    "plan_windows",
    "report_window",
]

logger = logging.getLogger("r9s_async")

DEFAULT_SPLIT_FLOOR = 60
"""Seconds below which a cut-off window is not split further (the client's ``split_floor``)."""


@frozen
class Window:
    """One request of a split range: asks ``start_time=start, end_time=end``, owns
    ``[start, end)``.

    Attributes:
        start: First owned second.
        end: The ``end_time`` to ask for; the first second not owned.
    """

    start: int
    end: int

    def owns(self, timestamp: int) -> bool:
        """Whether a record at ``timestamp`` belongs to this window."""
        return self.start <= timestamp < self.end

    @property
    def label(self) -> str:
        """``[start, end)``, for messages."""
        return f"[{self.start}, {self.end})"

    def can_split(self, floor: int) -> bool:
        """Whether the window is at least ``floor`` seconds long and has two halves."""
        length = self.end - self.start
        return length >= floor and length >= 2

    def halves(self) -> tuple[Window, Window]:
        """``[start, m)`` and ``[m, end)`` with ``m = (start + end) // 2``: together they own
        what this window owns, each second once."""
        middle = (self.start + self.end) // 2
        return Window(self.start, middle), Window(middle, self.end)


def plan_windows(start: int, end: int, *, span: int = DAY) -> Iterator[Window]:
    """Split ``[start, end)`` at every multiple of ``span`` (UTC midnights by default).

    Windows are produced lazily, so a ten-year range costs nothing up front.
    A range inside one UTC day is a single window.

    Raises:
        ValueError: An empty range (``end <= start``), or a ``span`` that is not positive.
    """
    if end <= start:
        raise ValueError(f"the range [{start}, {end}) is empty: end must be after start")
    if span <= 0:
        raise ValueError("span must be positive")
    cut = (start // span + 1) * span
    while cut < end:
        yield Window(start, cut)
        start, cut = cut, cut + span
    yield Window(start, end)


def count_windows(start: int, end: int, *, span: int = DAY) -> int:
    """How many windows :func:`plan_windows` produces, without producing them."""
    first_cut = (start // span + 1) * span
    if first_cut >= end:
        return 1
    return 1 + (end - first_cut - 1) // span + 1


def owned_records(window: Window, records: list[UsageRecord]) -> list[UsageRecord]:
    """The records ``window`` owns, in timestamp order (server order kept within a second).

    Returns ``records`` itself when nothing needs dropping or reordering.
    """
    return _own(window, records)[0]


def _own(window: Window, records: list[UsageRecord]) -> tuple[list[UsageRecord], int]:
    """:func:`owned_records`, and how many records lie outside ``[start, end]`` (strays).

    A record on ``end`` is not owned but not a stray either: an inclusive server sends it.
    """
    lo, hi = window.start, window.end
    stamps = list(map(_timestamp_of, records))
    if all(map(le, stamps, islice(stamps, 1, None))):
        # The usual case: already in order, so what the window owns is one slice.
        first = bisect_left(stamps, lo)
        stop = bisect_left(stamps, hi, lo=first)
        if (first, stop) == (0, len(records)):
            return records, 0
        after = len(records) - bisect_right(stamps, hi, lo=stop)
        return records[first:stop], first + after
    previous = lo
    in_order = True
    all_owned = True
    stray = 0
    for record in records:
        t = record.timestamp
        if t < previous:
            in_order = False
        previous = t
        if not lo <= t < hi:
            all_owned = False
            if t != hi:
                stray += 1
    kept = records if all_owned else [r for r in records if lo <= r.timestamp < hi]
    if not in_order:
        kept = sorted(kept, key=_timestamp_of)  # stable: server order kept within a second
    return kept, stray


@frozen
class WindowAnswer:
    """One answered window (or part of one): its report, and how its records compared with
    the total the answer declared.

    Attributes:
        window: The window asked.
        report: The records it owns, in order; ``consistent`` when they added up.
        returned_tokens: The tokens of every record returned, owned or not.
        declared_total: The answer's ``total_tokens``.
    """

    window: Window
    report: UsageReport
    returned_tokens: int
    declared_total: int

    @property
    def cut_off(self) -> bool:
        """Whether the records add up to less than declared, so splitting may heal it."""
        return self.returned_tokens < self.declared_total


def report_window(
    window: Window, records: list[UsageRecord], declared_total: int, request_id: str
) -> WindowAnswer:
    """One window's decoded answer as a :class:`WindowAnswer`: the records it owns, in order.

    The report is ``consistent`` only if the answer's records add up to ``declared_total``;
    :func:`merge_parts` warns about the parts that stay inconsistent. Records outside the asked
    range are dropped and logged at WARNING with the request id.
    """
    returned_tokens = sum(map(_tokens_of, records))
    owned, stray = _own(window, records)
    if stray:
        logger.warning(
            "window %s: dropped %d records outside the asked range (request id %s)",
            window.label,
            stray,
            request_id,
        )
    tokens = returned_tokens if owned is records else sum(map(_tokens_of, owned))
    report = UsageReport(
        owned,
        tokens,
        window.start,
        window.end,
        request_ids=(request_id,),
        consistent=returned_tokens == declared_total,
    )
    return WindowAnswer(window, report, returned_tokens, declared_total)


def halves_add_records(part: UsageReport, left: UsageReport, right: UsageReport) -> bool:
    """Whether the halves of ``part`` together returned a record (as a multiset of
    ``(timestamp, model, tokens)``) that ``part`` itself did not.

    If not, splitting does not help: the part's totals disagree for another reason than a cut
    off answer, and it is not split further.
    """
    found = Counter(left.records)
    found.update(right.records)
    found.subtract(part.records)
    return any(n > 0 for n in found.values())


def merge_parts(
    window: Window, parts: Sequence[WindowAnswer], request_ids: Sequence[str]
) -> UsageReport:
    """One window's report from its parts (in time order, together owning ``window``).

    Args:
        window: The window the parts make up.
        parts: The answers kept: the window's own, or the parts it was healed from.
        request_ids: The id of every answer fetched for the window, superseded ones included.

    Each part whose records still do not add up to its declared total is logged at WARNING
    with its ``[a, b)`` and request id; the report is ``consistent`` only if there is none.
    """
    merged = merge_windows(window.start, window.end, (p.report for p in parts))
    unhealed = [p for p in parts if not p.report.consistent]
    for part in unhealed:
        logger.warning(
            "window %s: records add up to %d tokens but the answer declares total_tokens=%d "
            "(request id %s); %s",
            part.window.label,
            part.returned_tokens,
            part.declared_total,
            ", ".join(part.report.request_ids),
            "the answer may be cut off or inconsistent"
            if part.cut_off
            else "the answer is inconsistent (too much cannot be healed by splitting)",
        )
    if len(parts) > 1 or len(request_ids) > 1:
        logger.info(
            "window %s was cut off; %d requests healed it into %d parts (%d not healed)",
            window.label,
            len(request_ids),
            len(parts),
            len(unhealed),
        )
    return UsageReport(
        merged.records,
        merged.total_tokens,
        window.start,
        window.end,
        request_ids=tuple(request_ids),
        consistent=not unhealed,
    )


_timestamp_of = attrgetter("timestamp")
_tokens_of = attrgetter("tokens")


def merge_windows(start: int, end: int, windows: Iterable[UsageReport]) -> UsageReport:
    """Concatenate per-window reports (already owned and ordered) into one report.

    The result is ``consistent`` only if every window was.
    """
    records: list[UsageRecord] = []
    request_ids: list[str] = []
    total = 0
    consistent = True
    for report in windows:
        records.extend(report.records)
        total += report.total_tokens
        request_ids.extend(report.request_ids)
        consistent = consistent and report.consistent
    return UsageReport(
        records, total, start, end, request_ids=tuple(request_ids), consistent=consistent
    )
