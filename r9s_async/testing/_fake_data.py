"""The fake API's data: deterministic records for any UTC day, in the shape of the real API."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from typing import Any, Literal

__all__ = ["DAY", "DEFAULT_MODELS", "FakeData"]

DAY = 86_400
DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o", "claude-sonnet-4", "deepseek-chat")


class FakeData:
    """The records a fake answers, made from its settings; mixed into ``FakeR9sAPI``."""

    # Set by FakeR9sAPI.__init__.
    mode: Literal["daily", "events"]
    end_inclusive: bool
    models: tuple[str, ...]
    events_per_day: int
    seed: int
    _day_records: Callable[[int], tuple[dict[str, Any], ...]]

    def records(self, start: int, end: int) -> list[dict[str, Any]]:
        """Every record one ``/usage`` call for ``start_time=start, end_time=end`` covers, in
        answer order: ``[start, end]`` or ``[start, end)`` as ``end_inclusive`` says. An answer
        holds them all unless ``record_cap`` cuts it off; ``total_tokens`` is always their sum.
        """
        out: list[dict[str, Any]] = []
        for day in range(start // DAY, end // DAY + 1):
            for record in self._day_records(day):
                t = record["timestamp"]
                if start <= t < end or (self.end_inclusive and t == end):
                    out.append(record)
        return out

    def records_in(self, start: int, end: int) -> list[dict[str, Any]]:
        """The half-open truth: the records with ``start <= timestamp < end``, in answer order.

        What :meth:`r9s_async.AsyncClient.usage` must answer for ``[start, end)``, whichever
        way the fake treats ``end_time`` and whatever its ``record_cap``.
        """
        return [r for r in self.records(start, end) if r["timestamp"] < end]

    def _generate_day(self, day: int) -> tuple[dict[str, Any], ...]:
        digest = hashlib.blake2b(f"{self.seed}:{self.mode}:{day}".encode(), digest_size=8)
        rng = random.Random(int.from_bytes(digest.digest(), "big"))
        midnight = day * DAY
        if self.mode == "daily":
            return tuple(
                {"timestamp": midnight, "tokens": rng.randint(1, 2_000_000), "model": model}
                for model in self.models
            )
        count = max(self.events_per_day, 4)
        seconds = [0, DAY - 1] + [rng.randrange(DAY) for _ in range(count - 2)]
        records: list[dict[str, Any]] = []
        for second in seconds:
            record = {
                "timestamp": midnight + second,
                "tokens": rng.randint(1, 50_000),
                "model": rng.choice(self.models),
            }
            records.append(record)
            if rng.random() < 0.1:
                records.append(dict(record))  # an identical twin: real, distinct usage
        records.sort(key=lambda r: r["timestamp"])
        return tuple(records)
