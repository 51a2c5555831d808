"""Async and sync client for the r9s Manager API usage endpoint.

Long ranges are fetched as UTC-day windows, concurrently, and merged exactly: the result equals
what one unsplit call would answer, whichever way the server treats ``end_time``.
"""

from typing import get_type_hints as _get_type_hints

from ._async_client import AsyncClient
from ._backfill import BackfillProgress, BackfillResult
from ._exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    ConfigurationError,
    MalformedResponseError,
    NotFoundError,
    PermissionDeniedError,
    R9sError,
    RateLimitError,
    ServerError,
    StoreConflictError,
    StoreError,
)
from ._models import Account, Balance, BalanceSnapshot, UsageRecord, UsageReport
from ._prices import CostBreakdown, CostLine, Price, PriceTable, PriceTableError
from ._retry import RetryEvent
from ._store import StoredWindow, UsageStore
from ._sync_client import Client
from ._version import __version__

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "Account",
    "AsyncClient",
    "AuthenticationError",
    "BackfillProgress",
    "BackfillResult",
    "BadRequestError",
    "Balance",
    "BalanceSnapshot",
    "Client",
    "ClientClosedError",
    "ConfigurationError",
    "CostBreakdown",
    "CostLine",
    "MalformedResponseError",
    "NotFoundError",
    "PermissionDeniedError",
    "Price",
    "PriceTable",
    "PriceTableError",
    "R9sError",
    "RateLimitError",
    "RetryEvent",
    "ServerError",
    "StoreConflictError",
    "StoreError",
    "StoredWindow",
    "UsageRecord",
    "UsageReport",
    "UsageStore",
    "__version__",
]

# Tracebacks, reprs and the docs name the public path, not the private module (as httpx does).
# Field annotations are resolved first, while the defining module still names their types
# (``Decimal``, ``Status``), so that tools which evaluate them later still can.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type):
        if "__annotations__" in vars(_obj):
            _obj.__annotations__ = _get_type_hints(_obj)
        _obj.__module__ = __name__
del _name, _obj
