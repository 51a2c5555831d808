"""A realistic fake of the r9s Manager API (aiohttp.web) on loopback, for tests and demos.

``FakeR9sAPI`` holds the settings and answers requests; its data (``_fake_data.py``), the
choice of each request's fault (``_fault_choice.py``) and serving (``_serving.py``) are parts
mixed into it.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import gzip
import json
import random
import re
import string
from collections.abc import Callable, Mapping
from typing import Any, Literal

from aiohttp import web
from attrs import frozen

from ._fake_data import DAY, DEFAULT_MODELS, FakeData
from ._fault_choice import FaultChoice, Script
from ._faults import FaultPlan, RateLimit, RateLimiter
from ._serving import Serving

__all__ = ["DEFAULT_MODELS", "TEST_API_KEY", "FakeR9sAPI", "RecordedRequest"]

TEST_API_KEY = "sk_mg_" + "0123456789abcdef" * 4
"""A well-formed management key that the fake accepts by default."""

_KEY_FORMAT = re.compile(r"sk_mg_[0-9a-f]{64}")
_ID_ALPHABET = string.ascii_letters + string.digits


@frozen
class RecordedRequest:
    """What the fake saw of one request (never the key itself).

    Attributes:
        path: The path below ``base_path``: ``"/usage"`` or ``"/balance"``.
        query: The query parameters, for example ``{"start_time": "0", "end_time": "86400"}``.
        authorized: Whether the request carried the key the fake accepts.
        peer: The client's address and port, which tells connections apart.
        headers: The request headers, without ``Authorization``.
        fault: The fault this request met, if any: a :class:`FaultPlan` kind,
            ``"rate_limit"`` for a 429 of the :class:`RateLimit`, or the ``kind`` of a
            scripted :class:`Fault`.
        received_at: When it arrived, in seconds of the serving event loop's clock
            (``time.monotonic()`` for the default loop).
    """

    path: str
    query: Mapping[str, str]
    authorized: bool
    peer: tuple[Any, ...] | None
    headers: Mapping[str, str]
    fault: str | None = None
    received_at: float = 0.0


class FakeR9sAPI(FakeData, FaultChoice, Serving):
    """The fake API. Deterministic: the same settings always serve the same records.

    Args:
        api_key: The key the fake accepts.
        mode: ``"daily"``: one record per model at each UTC midnight (the seed page's shape).
            ``"events"``: ``events_per_day`` records per day, including the first and last second
            of the day and identical twins.
        end_inclusive: Whether ``end_time`` is inclusive (``[start, end]``) or exclusive.
        models: Model names to use.
        events_per_day: Records per day in ``"events"`` mode.
        latency: Seconds to wait before each answer.
        latency_per_day: Extra seconds per day of range asked (a server that scans rows).
        seed: Changes every generated value.
        base_path: Path prefix, like the real ``/api/v1/portal/management``.
        fault_plan: Seeded faults injected into requests (after any scripted fault is used).
        rate_limit: A per-key request rate enforced before anything else, with 429 answers.
        record_cap: The most records one ``/usage`` answer holds (``None``: no cap). A longer
            answer is cut off after the first ``record_cap`` records, in answer order, while
            its ``total_tokens`` still declares the sum of all of them, as a paged listing's
            first page would.

    Attributes:
        requests: A :class:`RecordedRequest` for every request received, in arrival order.
        in_flight: Requests being answered right now.
        peak_in_flight: The most requests that were being answered at once.
        fault_plan: As given; may be replaced between requests.
        rate_limit: As given; replacing it starts with full buckets.
    """

    def __init__(
        self,
        *,
        api_key: str = TEST_API_KEY,
        mode: Literal["daily", "events"] = "daily",
        end_inclusive: bool = True,
        models: tuple[str, ...] = DEFAULT_MODELS,
        events_per_day: int = 24,
        latency: float = 0.0,
        latency_per_day: float = 0.0,
        seed: int = 0,
        base_path: str = "/api/v1/portal/management",
        fault_plan: FaultPlan | None = None,
        rate_limit: RateLimit | None = None,
        record_cap: int | None = None,
    ) -> None:
        if mode not in ("daily", "events"):
            raise ValueError(f"mode must be 'daily' or 'events', not {mode!r}")
        if record_cap is not None and (isinstance(record_cap, bool) or record_cap < 0):
            raise ValueError(f"record_cap must be None or >= 0, not {record_cap!r}")
        self.api_key = api_key
        self.mode = mode
        self.end_inclusive = end_inclusive
        self.models = tuple(models)
        self.events_per_day = events_per_day
        self.latency = latency
        self.latency_per_day = latency_per_day
        self.seed = seed
        self.base_path = base_path.rstrip("/")
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self.fault_plan = fault_plan
        self.rate_limit = rate_limit
        self.record_cap = record_cap
        self._limiter: RateLimiter | None = None
        self._window_attempts: collections.Counter[str] = collections.Counter()
        self._servers: list[web.Server] = []
        self._scripts: list[Script] = []
        self._ids = random.Random(seed)
        self._day_records = functools.lru_cache(maxsize=4096)(self._generate_day)

    # -- HTTP -----------------------------------------------------------------------------------

    @property
    def connections(self) -> int:
        """How many distinct TCP connections have sent requests."""
        return len({r.peer for r in self.requests})

    def make_app(self) -> web.Application:
        """The aiohttp application, for embedding in your own server."""
        app = web.Application()
        app.router.add_get(self.base_path + "/usage", self._usage)
        app.router.add_get(self.base_path + "/balance", self._balance)
        return app

    def _request_id(self) -> str:
        return "".join(self._ids.choices(_ID_ALPHABET, k=32))

    def _envelope(self, status: int, code: int, message: str, data: Any) -> web.Response:
        body = {
            "meta": {"code": code, "message": message, "request_id": self._request_id()},
            "data": data,
        }
        return web.json_response(body, status=status, dumps=json.dumps)

    async def _guard(
        self,
        request: web.Request,
        path: str,
        answer: Callable[[], web.StreamResponse],
        *,
        delay: float = 0.0,
    ) -> web.StreamResponse:
        # Recorded and counted in flight on arrival, so latency overlaps show in peak_in_flight
        # and a request waiting out its latency is visible in ``requests``.
        auth = request.headers.get("Authorization", "")
        authorized = auth == "Bearer " + self.api_key
        transport = request.transport
        peer = transport.get_extra_info("peername") if transport else None
        shown = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        received_at = asyncio.get_running_loop().time()
        fault, fault_name, announced = self._choose_fault(request, path, auth, received_at)
        self.requests.append(
            RecordedRequest(
                path, dict(request.query), authorized, peer, shown, fault_name, received_at
            )
        )
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if delay > 0:
                await asyncio.sleep(delay)
            if fault is not None:
                if fault.kind == "stall":
                    await asyncio.sleep(fault.seconds)
                elif fault.kind == "reset":
                    if transport is not None:
                        transport.abort()
                    return web.Response(status=500)
                elif fault.kind == "reset_after_headers":
                    response = web.StreamResponse(status=200)
                    response.content_type = "application/json"
                    response.content_length = 1000
                    await response.prepare(request)
                    await response.write(b'{"meta": {"code": 200, ')
                    if transport is not None:
                        transport.abort()
                    return response
                elif fault.kind in ("truncated", "truncated_gzip"):
                    return await self._truncated(
                        request, answer(), gzipped=fault.kind != "truncated"
                    )
                else:
                    headers = {**announced, **fault.headers}
                    return web.Response(status=fault.status, body=fault.body, headers=headers)
            if not authorized:
                scheme, _, token = auth.partition(" ")
                known_format = scheme == "Bearer" and _KEY_FORMAT.fullmatch(token) is not None
                message = "API key not found" if known_format else "Invalid API key format"
                return self._envelope(401, 401, message, None)
            response = answer()
            if not response.prepared:
                response.headers.update(announced)
            return response
        finally:
            self.in_flight -= 1

    async def _truncated(
        self, request: web.Request, full: web.StreamResponse, *, gzipped: bool
    ) -> web.StreamResponse:
        body = full.body if isinstance(full, web.Response) else None
        raw = body if isinstance(body, bytes) else b"{}"
        response = web.StreamResponse(status=full.status)
        response.content_type = "application/json"
        if gzipped:
            # A well-framed message whose gzip stream stops halfway: only the decompressor
            # can tell.
            compressed = gzip.compress(raw)
            response.headers["Content-Encoding"] = "gzip"
            response.content_length = len(compressed) // 2
            await response.prepare(request)
            await response.write(compressed[: len(compressed) // 2])
            await response.write_eof()
            return response
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(raw[: max(1, len(raw) // 2)])
        if request.transport is not None:
            request.transport.abort()
        return response

    async def _usage(self, request: web.Request) -> web.StreamResponse:
        try:
            start = _parse_time(request.query.get("start_time"))
            end = _parse_time(request.query.get("end_time"))
        except ValueError:
            start = end = -1
        days = max(end - start, 0) / DAY
        delay = self.latency + self.latency_per_day * days

        def answer() -> web.StreamResponse:
            if start < 0 or end < 0:
                return self._envelope(400, 400, "start_time and end_time must be integers", None)
            if end < start:
                return self._envelope(400, 400, "end_time must not be before start_time", None)
            records = self.records(start, end)
            total = sum(r["tokens"] for r in records)
            if self.record_cap is not None:
                records = records[: self.record_cap]  # cut off, but the total tells
            return self._envelope(200, 200, "success", {"records": records, "total_tokens": total})

        return await self._guard(request, "/usage", answer, delay=delay)

    async def _balance(self, request: web.Request) -> web.StreamResponse:
        def answer() -> web.StreamResponse:
            return self._envelope(
                200,
                0,
                "",
                {
                    "balance": 470.010481,
                    "balance_str": "470.010481",
                    "coupon_balance": 0,
                    "currency_code": "USD",
                    "credit_limit": 0,
                    "total_coupon_amount": 0,
                },
            )

        return await self._guard(request, "/balance", answer, delay=self.latency)


def _parse_time(value: str | None) -> int:
    if value is None or not value.isdigit():
        raise ValueError(value)
    return int(value)
