"""What the fake API does wrong: scripted faults, seeded fault plans and a per-key rate limit."""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import format_datetime
from types import MappingProxyType
from typing import Any, ClassVar, Literal, get_args

from attrs import define, field, frozen

__all__ = ["Fault", "FaultKind", "FaultPlan", "RateLimit"]

FaultKind = Literal[
    "rate_limited",
    "rate_limited_date",
    "server_error_json",
    "server_error_html",
    "server_error_empty",
    "reset",
    "reset_after_headers",
    "stall",
    "truncated_body",
    "truncated_gzip",
    "error_in_envelope",
    "malformed_json",
    "wrong_types",
]
"""The name of one kind of fault a :class:`FaultPlan` injects; see :class:`FaultPlan`."""

_SERVER_ERRORS = (500, 502, 503, 504)
_FAKE_REQUEST_ID = "F" * 32


@frozen
class Fault:
    """One scripted misbehaviour, applied to one matching request.

    Build with :meth:`respond`, :meth:`error`, :meth:`reset`, :meth:`stall` or
    :meth:`truncate`.
    """

    kind: Literal["respond", "reset", "reset_after_headers", "stall", "truncated", "truncated_gzip"]
    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(factory=dict)
    seconds: float = 0.0

    @classmethod
    def respond(
        cls,
        status: int,
        body: bytes | str | Any = b"",
        *,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """Answer with ``status`` and ``body`` (bytes or text as is; anything else as JSON,
        sent as ``application/json`` unless ``headers`` say otherwise)."""
        sent = dict(headers or {})
        if isinstance(body, str):
            raw = body.encode()
        elif isinstance(body, bytes):
            raw = body
        else:
            raw = json.dumps(body).encode()
            if not any(name.lower() == "content-type" for name in sent):
                sent["Content-Type"] = "application/json"
        return cls("respond", status=status, body=raw, headers=sent)

    @classmethod
    def error(
        cls,
        status: int,
        message: str = "error",
        *,
        code: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """Answer with the API's JSON error envelope."""
        envelope = {
            "meta": {
                "code": status if code is None else code,
                "message": message,
                "request_id": _FAKE_REQUEST_ID,
            },
            "data": None,
        }
        return cls.respond(status, envelope, headers=headers)

    @classmethod
    def reset(cls, *, after_headers: bool = False) -> Fault:
        """Drop the connection: before any byte, or after the headers and part of the body."""
        return cls("reset_after_headers" if after_headers else "reset")

    @classmethod
    def stall(cls, seconds: float) -> Fault:
        """Say nothing for ``seconds``, then answer normally."""
        return cls("stall", seconds=seconds)

    @classmethod
    def truncate(cls, *, gzip: bool = False) -> Fault:
        """Cut the real answer short.

        Without ``gzip``: a chunked body of which half arrives before the connection drops.
        With ``gzip``: a complete HTTP message whose gzip stream stops halfway, which
        nothing at the HTTP level can notice.
        """
        return cls("truncated_gzip" if gzip else "truncated")


@frozen
class RateLimit:
    """A per-key token bucket, as an API gateway enforces it.

    Each key may send ``rate`` requests per second, and up to ``burst`` at once after a
    quiet spell. A request over the limit is answered 429 with ``Retry-After`` in whole
    seconds (as real servers send it), and does not use up a token.

    Args:
        rate: Requests per second allowed per key.
        burst: The bucket's size.
        headers: Announce the limit on every answer (200s and 429s alike) in both common
            header families: the IETF draft's ``RateLimit-Policy: "default";q=..;w=1`` and
            ``RateLimit: "default";r=..;t=..``, and ``X-RateLimit-Limit``, ``-Remaining``,
            ``-Reset`` (delta seconds).
    """

    rate: float
    burst: int = 1
    headers: bool = False

    def __attrs_post_init__(self) -> None:
        if not (isinstance(self.rate, int | float) and math.isfinite(self.rate) and self.rate > 0):
            raise ValueError(f"rate must be a positive number, got {self.rate!r}")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise ValueError(f"burst must be an int >= 1, got {self.burst!r}")


@define
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """The state of a :class:`RateLimit`: one bucket per key. No I/O; the clock is passed in."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, now: float) -> int | None:
        """``None`` if a request with ``key`` may pass now (a token is used), else the whole
        seconds to send as ``Retry-After`` (at least 1)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.limit.burst), now)
        bucket.tokens = min(
            float(self.limit.burst), bucket.tokens + max(0.0, now - bucket.at) * self.limit.rate
        )
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return max(1, math.ceil((1.0 - bucket.tokens) / self.limit.rate))

    def admit(self, key: bytes, now: float) -> tuple[Fault | None, dict[str, str]]:
        """The 429 for a request with ``key`` at ``now`` (``None`` if it may pass), and the
        rate-limit headers to send with the answer (none unless the limit has ``headers``)."""
        bucket = key.hex()
        wait = self.take(bucket, now)
        announced = self.announce(bucket) if self.limit.headers else {}
        if wait is None:
            return None, announced
        headers = {"Retry-After": str(wait), **announced}
        return Fault.error(429, "rate limit exceeded", headers=headers), announced

    def announce(self, key: str) -> dict[str, str]:
        """The rate-limit headers for ``key`` after its last :meth:`take` (both families)."""
        bucket = self._buckets[key]
        remaining = math.floor(bucket.tokens)
        # Whole seconds until the next token, as servers send it (0 while one is left).
        reset = 0 if remaining >= 1 else max(1, math.ceil((1.0 - bucket.tokens) / self.limit.rate))
        quota = f"{self.limit.rate:g}"
        return {
            "RateLimit-Policy": f'"default";q={quota};w=1',
            "RateLimit": f'"default";r={remaining};t={reset}',
            "X-RateLimit-Limit": quota,
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(reset),
        }


def _frozen_rates(rates: Mapping[FaultKind, float]) -> Mapping[FaultKind, float]:
    return MappingProxyType(dict(rates))


def _check_rates(instance: FaultPlan, attribute: object, rates: Mapping[str, float]) -> None:
    known = FaultPlan.KINDS
    unknown = sorted(set(rates) - set(known))
    if unknown:
        raise ValueError(f"unknown fault kinds {unknown}; known: {list(known)}")
    for kind, rate in rates.items():
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise ValueError(f"the rate of {kind!r} must be a number in [0, 1], got {rate!r}")
    if sum(rates.values()) > 1 + 1e-9:
        raise ValueError(f"the rates add up to {sum(rates.values())}, more than 1")


def _check_attempts(instance: FaultPlan, attribute: object, attempts: int | None) -> None:
    if attempts is not None and (
        isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1
    ):
        raise ValueError(f"attempts must be None or an int >= 1, got {attempts!r}")


def _check_retry_after(instance: FaultPlan, attribute: object, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"retry_after must be whole seconds (an int >= 0), got {value!r}")


def _check_stall(instance: FaultPlan, attribute: object, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"stall must be a number >= 0, got {value!r}")


@frozen
class FaultPlan:
    """Which requests misbehave, and how: a seeded, per-request chance of each fault kind.

    The ``n``-th request the fake receives for one window (one path and query) meets fault
    ``kind`` with probability ``rates[kind]``, decided by a hash of ``(seed, window, n)``.
    The same plan therefore hits the same attempts of the same windows on every run,
    whatever order concurrent requests arrive in. With ``attempts`` set, only the first
    ``attempts`` requests of each window can meet a fault, so a client allowing that many
    retries always gets its answer.

    The kinds, all transient (a well-behaved client retries them) except the last two:

    - ``rate_limited``, ``rate_limited_date``: 429 with ``Retry-After`` in seconds or as an
      HTTP-date.
    - ``server_error_json``, ``server_error_html``, ``server_error_empty``: 500, 502, 503 or
      504 with the JSON error envelope, a gateway's HTML page, or no body (503s carry
      ``Retry-After``).
    - ``reset``, ``reset_after_headers``: the connection drops before the answer, or after
      its headers and part of its body.
    - ``stall``: no answer for ``stall`` seconds (longer than a client's timeout), then the
      real one.
    - ``truncated_body``: a chunked body cut short; ``truncated_gzip``: a complete message
      whose gzip stream stops halfway.
    - ``error_in_envelope``: HTTP 200 whose ``meta.code`` is 500, 502, 503 or 504.
    - ``malformed_json`` and ``wrong_types`` (permanent): a 200 whose body is not JSON, or
      whose records carry strings and floats where the schema has ints.

    Args:
        rates: The chance of each kind, per request; they add up to at most 1.
        seed: Changes which requests are hit.
        attempts: Only this many first requests of each window can be hit (``None``: all).
        retry_after: Whole seconds sent in ``Retry-After`` (429s and 503s).
        stall: Seconds a ``stall`` holds the answer back.
    """

    KINDS: ClassVar[tuple[FaultKind, ...]] = get_args(FaultKind)
    """Every fault kind, in the order rates are laid out."""
    PERMANENT: ClassVar[tuple[FaultKind, ...]] = ("malformed_json", "wrong_types")
    """The kinds no retry can cure."""
    TRANSIENT: ClassVar[tuple[FaultKind, ...]] = tuple(
        kind for kind in get_args(FaultKind) if kind not in ("malformed_json", "wrong_types")
    )
    """The kinds a client should retry."""

    rates: Mapping[FaultKind, float] = field(converter=_frozen_rates, validator=_check_rates)
    seed: int = 0
    attempts: int | None = field(default=None, validator=_check_attempts)
    retry_after: int = field(default=0, validator=_check_retry_after)
    stall: float = field(default=60.0, validator=_check_stall)

    @classmethod
    def transient(
        cls,
        rate: float,
        *,
        seed: int = 0,
        attempts: int | None = None,
        retry_after: int = 0,
        stall: float = 60.0,
    ) -> FaultPlan:
        """A plan that fails ``rate`` of requests, spread evenly over every transient kind."""
        share = rate / len(cls.TRANSIENT)
        return cls(
            dict.fromkeys(cls.TRANSIENT, share),
            seed=seed,
            attempts=attempts,
            retry_after=retry_after,
            stall=stall,
        )

    def _draw(self, window: str, attempt: int) -> tuple[float, random.Random]:
        digest = hashlib.blake2b(f"{self.seed}|{window}|{attempt}".encode(), digest_size=16)
        value = int.from_bytes(digest.digest(), "big")
        return (value >> 64) / 2.0**64, random.Random(value & (2**64 - 1))

    def kind_for(self, window: str, attempt: int) -> FaultKind | None:
        """The fault the ``attempt``-th request (1-based) for ``window`` meets, if any."""
        if self.attempts is not None and attempt > self.attempts:
            return None
        point, _ = self._draw(window, attempt)
        edge = 0.0
        for kind in self.KINDS:
            edge += self.rates.get(kind, 0.0)
            if point < edge:
                return kind
        return None

    def fault_for(self, window: str, attempt: int, *, now: datetime | None = None) -> Fault | None:
        """The :class:`Fault` the ``attempt``-th request for ``window`` meets, if any.

        Args:
            window: What identifies a window: the path and its query.
            attempt: 1 for the first request of that window, and so on.
            now: The time an HTTP-date ``Retry-After`` counts from (default: now).
        """
        kind = self.kind_for(window, attempt)
        if kind is None:
            return None
        _, rng = self._draw(window, attempt)
        return self._build(kind, rng, now or datetime.now(UTC))

    def _build(self, kind: FaultKind, rng: random.Random, now: datetime) -> Fault:
        wait = {"Retry-After": str(self.retry_after)}
        status = rng.choice(_SERVER_ERRORS)
        maybe_wait = wait if status == 503 else {}
        if kind == "rate_limited":
            return Fault.error(429, "rate limit exceeded", headers=wait)
        if kind == "rate_limited_date":
            # An HTTP-date has whole seconds: round a wait up (or it would come out shorter),
            # and "now" down (or it would come out as a wait).
            due = now.timestamp() + self.retry_after
            second = math.ceil(due) if self.retry_after else math.floor(due)
            when = datetime.fromtimestamp(second, UTC)
            date = {"Retry-After": format_datetime(when, usegmt=True)}
            return Fault.error(429, "rate limit exceeded", headers=date)
        if kind == "server_error_json":
            return Fault.error(status, "upstream failed", headers=maybe_wait)
        if kind == "server_error_html":
            page = (
                f"<html><head><title>{status} Bad Gateway</title></head><body><center><h1>"
                f"{status} Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
            )
            headers = {"Content-Type": "text/html", **maybe_wait}
            return Fault.respond(status, page, headers=headers)
        if kind == "server_error_empty":
            return Fault.respond(status, b"", headers=maybe_wait)
        if kind == "reset":
            return Fault.reset()
        if kind == "reset_after_headers":
            return Fault.reset(after_headers=True)
        if kind == "stall":
            return Fault.stall(self.stall)
        if kind == "truncated_body":
            return Fault.truncate()
        if kind == "truncated_gzip":
            return Fault.truncate(gzip=True)
        if kind == "error_in_envelope":
            return Fault.error(200, "temporarily unavailable", code=status)
        if kind == "malformed_json":
            return Fault.respond(
                200,
                b'{"meta": {"code": 200, "message": "success", "request_id": "' + b"F" * 32,
                headers={"Content-Type": "application/json"},
            )
        assert kind == "wrong_types"
        record = {"timestamp": 1735689600.0, "tokens": "1500", "model": "gpt-4o-mini"}
        envelope = {
            "meta": {"code": 200, "message": "success", "request_id": _FAKE_REQUEST_ID},
            "data": {"records": [record], "total_tokens": "1500"},
        }
        return Fault.respond(200, envelope)
