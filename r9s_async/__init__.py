"""Async and sync client for the r9s Manager API usage endpoint.

Long ranges are fetched as UTC-day windows, concurrently, and merged exactly: the result equals
what one unsplit call would answer, whichever way the server treats ``end_time``.
"""

from ._async_client import AsyncClient, RetryEvent
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
    StoreError,
)
from ._models import Account, Balance, UsageRecord, UsageReport
from ._store import StoreConflictError, StoredWindow, UsageStore
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
    "Client",
    "ClientClosedError",
    "ConfigurationError",
    "MalformedResponseError",
    "NotFoundError",
    "PermissionDeniedError",
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
