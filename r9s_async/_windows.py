"""Window planning and exact merging: pure functions over plain data.

The server's ``end_time`` may be inclusive or exclusive, and daily records sit exactly on
UTC midnights. Each window therefore *owns* the half-open span ``[start, end)`` (the last
window also owns ``end`` itself) and keeps only the records it owns. A record on a split
point is then counted by exactly one window, whichever way the server treats ``end_time``,
and the merge equals what one unsplit call would answer.

:func:`report_window` turns one window's decoded answer into its report, and logs (at WARNING)
what the answer got wrong: records that do not add up to its declared total, records outside
the asked range.
"""

from __future__ import annotations

import logging
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from itertools import islice
from operator import attrgetter, le

from attrs import frozen

from ._models import UsageRecord, UsageReport
from ._times import DAY

__all__ = [
    "Window",
    "count_windows",
    "merge_windows",
    "owned_records",
    "plan_windows",
    "report_window",
]

logger = logging.getLogger("r9s_async")


@frozen
class Window:
    """One request of a split range: asks ``start_time=start, end_time=end``.

    Attributes:
        start: First owned second.
        end: The ``end_time`` to ask for.
        last: Whether this window ends the range, and so also owns ``end`` itself.
    """

    start: int
    end: int
    last: bool

    def owns(self, timestamp: int) -> bool:
        """Whether a record at ``timestamp`` belongs to this window."""
        return self.start <= timestamp < self.end or (self.last and timestamp == self.end)


def plan_windows(start: int, end: int, *, span: int = DAY) -> Iterator[Window]:
    """Split ``[start, end]`` at every multiple of ``span`` (UTC midnights by default).

    Windows are produced lazily, so a ten-year range costs nothing up front.
    A range inside one UTC day is a single window.
    """
    if end < start:
        raise ValueError(f"end ({end}) is before start ({start})")
    if span <= 0:
        raise ValueError("span must be positive")
    cut = (start // span + 1) * span
    while cut < end:
        yield Window(start, cut, last=False)
        start, cut = cut, cut + span
    yield Window(start, end, last=True)


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
    """:func:`owned_records`, and how many records lie outside ``[start, end]`` (strays)."""
    lo, hi, last = window.start, window.end, window.last
    stamps = list(map(_timestamp_of, records))
    if all(map(le, stamps, islice(stamps, 1, None))):
        # The usual case: already in order, so what the window owns is one slice.
        first = bisect_left(stamps, lo)
        stop = bisect_right(stamps, hi) if last else bisect_left(stamps, hi)
        if (first, stop) == (0, len(records)):
            return records, 0
        # A record on ``end`` of a window that does not own it is the next one's, not a stray.
        after = len(records) - (stop if last else bisect_right(stamps, hi, lo=stop))
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
        if not (lo <= t < hi or (last and t == hi)):
            all_owned = False
            if not lo <= t <= hi:
                stray += 1
    kept = records if all_owned else [r for r in records if window.owns(r.timestamp)]
    if not in_order:
        kept = sorted(kept, key=_timestamp_of)  # stable: server order kept within a second
    return kept, stray


def report_window(
    window: Window, records: list[UsageRecord], declared_total: int, request_id: str
) -> UsageReport:
    """The report of one window from its decoded answer: the records it owns, in order.

    The report is ``consistent`` only if the answer's records add up to ``declared_total``.
    A mismatch, and records outside the asked range, are logged at WARNING with the request id.
    """
    returned_tokens = sum(map(_tokens_of, records))
    consistent = returned_tokens == declared_total
    label = f"[{window.start}, {window.end}]"
    if not consistent:
        logger.warning(
            "window %s: records add up to %d tokens but the answer declares total_tokens=%d "
            "(request id %s); the answer may be cut off or inconsistent",
            label,
            returned_tokens,
            declared_total,
            request_id,
        )
    owned, stray = _own(window, records)
    if stray:
        logger.warning(
            "window %s: dropped %d records outside the asked range (request id %s)",
            label,
            stray,
            request_id,
        )
    tokens = returned_tokens if owned is records else sum(map(_tokens_of, owned))
    return UsageReport(
        owned,
        tokens,
        window.start,
        window.end,
        request_ids=(request_id,),
        consistent=consistent,
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
