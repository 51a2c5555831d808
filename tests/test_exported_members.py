"""The public surface: pinned ``__all__`` lists and the exception tree."""

from __future__ import annotations

import copy
import pickle

import pytest

import r9s_async
import r9s_async.testing
from r9s_async import (
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
    PriceTableError,
    R9sError,
    RateLimitError,
    ServerError,
    StoreConflictError,
    StoreError,
)


def test_the_public_names_are_pinned() -> None:
    assert [
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
    ] == r9s_async.__all__


def test_the_testing_names_are_pinned() -> None:
    expected = [
        "TEST_API_KEY",
        "FakeR9sAPI",
        "Fault",
        "FaultKind",
        "FaultPlan",
        "RateLimit",
        "RecordedRequest",
        "ServedFakeR9sAPI",
    ]

    assert expected == r9s_async.testing.__all__


def test_the_public_names_are_sorted() -> None:
    assert sorted(r9s_async.__all__) == r9s_async.__all__


@pytest.mark.parametrize("module", [r9s_async, r9s_async.testing], ids=lambda m: m.__name__)
def test_every_public_name_resolves(module: object) -> None:
    names: list[str] = module.__all__  # type: ignore[attr-defined]

    assert [] == [name for name in names if not hasattr(module, name)]


def test_public_classes_name_the_public_module() -> None:
    # Tracebacks and the docs then show r9s_async.AsyncClient, not r9s_async._async_client.
    classes = [name for name in r9s_async.__all__ if isinstance(getattr(r9s_async, name), type)]
    misplaced = {
        name: module
        for name in classes
        if (module := getattr(r9s_async, name).__module__) != "r9s_async"
    }

    assert {} == misplaced
    assert len(classes) > 20  # the check looked at the classes, not at an empty list


def test_the_version_is_a_string() -> None:
    assert isinstance(r9s_async.__version__, str)
    assert r9s_async.__version__


ERRORS: list[type[R9sError]] = [
    ConfigurationError,
    ClientClosedError,
    APIConnectionError,
    APITimeoutError,
    MalformedResponseError,
    APIError,
    BadRequestError,
    AuthenticationError,
    PermissionDeniedError,
    NotFoundError,
    RateLimitError,
    ServerError,
    StoreError,
    StoreConflictError,
    PriceTableError,
]


def test_every_exported_error_is_in_the_list_checked_here() -> None:
    exported = {
        obj
        for name in r9s_async.__all__
        if isinstance(obj := getattr(r9s_async, name), type) and issubclass(obj, BaseException)
    }

    assert {R9sError, *ERRORS} == exported


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e.__name__)
def test_every_error_is_an_r9s_error(error: type[Exception]) -> None:
    assert issubclass(error, R9sError)


@pytest.mark.parametrize(
    ("child", "parent"),
    [
        (R9sError, Exception),
        (APITimeoutError, APIConnectionError),
        (BadRequestError, APIError),
        (AuthenticationError, APIError),
        (PermissionDeniedError, APIError),
        (NotFoundError, APIError),
        (RateLimitError, APIError),
        (ServerError, APIError),
        (ClientClosedError, RuntimeError),
        (StoreConflictError, StoreError),
        (PriceTableError, ConfigurationError),
    ],
    ids=lambda c: c.__name__,
)
def test_the_exception_tree(child: type[BaseException], parent: type[BaseException]) -> None:
    assert issubclass(child, parent)


@pytest.mark.parametrize(
    "error",
    [APIConnectionError, MalformedResponseError, APIError, ConfigurationError],
    ids=lambda e: e.__name__,
)
def test_the_branches_do_not_overlap(error: type[R9sError]) -> None:
    branches = {APIConnectionError, MalformedResponseError, APIError, ConfigurationError}

    assert {error} == {b for b in branches if issubclass(error, b)}


def test_api_error_carries_status_code_message_and_request_id() -> None:
    error = RateLimitError("slow down", status=429, code=429, request_id="r1", retry_after=2.0)

    assert (429, 429, "slow down", "r1", 2.0) == (
        error.status,
        error.code,
        error.message,
        error.request_id,
        error.retry_after,
    )
    assert "HTTP 429: slow down (request id r1)" == str(error)


def test_a_meta_code_that_differs_from_the_status_is_shown() -> None:
    assert "HTTP 200, code 429: slow down" == str(RateLimitError("slow down", status=200, code=429))


SAMPLES: list[R9sError] = [
    RateLimitError("slow down", status=429, code=429, request_id="r1", retry_after=2.5),
    ServerError("bad gateway", status=502),
    MalformedResponseError("expected int @ $.data.total_tokens", status=200, request_id="r2"),
    APITimeoutError("no complete answer within 30s"),
    APIConnectionError("ClientOSError: reset"),
    ConfigurationError("no API key"),
    PriceTableError("prices.toml", "missing", entry=2, model="gpt-4o", field="per_million_tokens"),
    ClientClosedError("closed"),
    StoreError("'x.db' is not a usage store", path="x.db"),
    StoreConflictError("another writer changed day 2024-10-04", path="x.db"),
]


@pytest.mark.parametrize("error", SAMPLES, ids=lambda e: type(e).__name__)
def test_errors_survive_pickling_and_copying(error: R9sError) -> None:
    # Process pools and error reporters pickle or copy exceptions.
    for clone in (pickle.loads(pickle.dumps(error)), copy.copy(error)):
        assert type(error) is type(clone)
        assert str(error) == str(clone)
        assert vars(error) == vars(clone)
