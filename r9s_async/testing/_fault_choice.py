"""Which fault a request of the fake API meets: the rate limit, then a scripted fault, then the
seeded plan."""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Mapping

from aiohttp import web
from attrs import define

from ._faults import Fault, FaultPlan, RateLimit, RateLimiter

__all__ = ["Choice", "FaultChoice", "Script"]

Choice = tuple[Fault | None, str | None, dict[str, str]]
"""The fault a request meets, its name, and the rate-limit headers its answer announces."""


@define
class Script:
    """A scripted fault: used by the next ``times`` requests that match."""

    fault: Fault
    times: int
    path: str | None
    start_time: int | None


class FaultChoice:
    """Scripted faults and the choice of each request's fault; mixed into ``FakeR9sAPI``."""

    # Set by FakeR9sAPI.__init__.
    fault_plan: FaultPlan | None
    rate_limit: RateLimit | None
    _limiter: RateLimiter | None
    _window_attempts: collections.Counter[str]
    _scripts: list[Script]

    def add_fault(
        self,
        fault: Fault,
        *,
        times: int = 1,
        path: str | None = None,
        start_time: int | None = None,
    ) -> None:
        """Apply ``fault`` to the next ``times`` requests that match ``path`` (``"/usage"``,
        ``"/balance"``) and ``start_time`` (a window's first second), when given."""
        self._scripts.append(Script(fault, times, path, start_time))

    def clear_faults(self) -> None:
        """Forget every scripted fault not yet used."""
        self._scripts.clear()

    def _take_fault(self, path: str, query: Mapping[str, str]) -> Fault | None:
        for script in self._scripts:
            if script.path is not None and script.path != path:
                continue
            if script.start_time is not None and query.get("start_time") != str(script.start_time):
                continue
            script.times -= 1
            if script.times <= 0:
                self._scripts.remove(script)
            return script.fault
        return None

    def _choose_fault(self, request: web.Request, path: str, auth: str, now: float) -> Choice:
        """The fault this request meets (the rate limit first, a gateway in front; then a
        scripted fault; then the fault plan), its name, and the rate-limit headers to add."""
        announced: dict[str, str] = {}
        if self.rate_limit is not None:
            if self._limiter is None or self._limiter.limit is not self.rate_limit:
                self._limiter = RateLimiter(self.rate_limit)
            # The key only as a digest: the fake keeps no copy of a key it was sent.
            refused, announced = self._limiter.admit(hashlib.blake2b(auth.encode()).digest(), now)
            if refused is not None:
                return refused, "rate_limit", {}
        scripted = self._take_fault(path, request.query)
        if scripted is not None:
            return scripted, scripted.kind, announced
        if self.fault_plan is not None:
            window = request.path_qs
            self._window_attempts[window] += 1
            attempt = self._window_attempts[window]
            planned = self.fault_plan.fault_for(window, attempt)
            if planned is not None:
                return planned, self.fault_plan.kind_for(window, attempt), announced
        return None, None, announced
