"""The exception tree: every error this library raises on purpose.

::

    R9sError
    ├── ConfigurationError          bad or missing configuration (e.g. no API key)
    │   └── PriceTableError         ... a price table that cannot be used (in _prices.py)
    ├── ClientClosedError           the client was closed and cannot be reused
    ├── APIConnectionError          the request did not get an HTTP answer
    │   └── APITimeoutError         ... because an attempt ran past its timeout
    ├── MalformedResponseError      an answer that is not the documented envelope/schema
    ├── StoreError                  the file cannot be used as a usage store
    │   └── StoreConflictError      ... another backfill changed a day of it meanwhile
    └── APIError                    the API answered with an error (HTTP status or meta.code)
        ├── BadRequestError         400, 422
        ├── AuthenticationError     401
        ├── PermissionDeniedError   403
        ├── NotFoundError           404
        ├── RateLimitError          429
        └── ServerError             5xx

Invalid arguments raise the built-in :class:`TypeError` / :class:`ValueError` before any
request is sent. :class:`asyncio.CancelledError` is never wrapped.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "ConfigurationError",
    "MalformedResponseError",
    "NotFoundError",
    "PermissionDeniedError",
    "R9sError",
    "RateLimitError",
    "ServerError",
    "StoreConflictError",
    "StoreError",
    "api_error_class",
]


class R9sError(Exception):
    """Root of every error raised by ``r9s_async``."""


class ConfigurationError(R9sError):
    """The client cannot be configured (for example: no API key was given or found)."""


class ClientClosedError(R9sError, RuntimeError):
    """The client has been closed; create a new one."""


def _suffix(request_id: str | None) -> str:
    return f" (request id {request_id})" if request_id else ""


def _rebuild(cls: type[R9sError], args: tuple[Any, ...], kwargs: dict[str, Any]) -> R9sError:
    return cls(*args, **kwargs)


class APIConnectionError(R9sError):
    """No usable HTTP answer: DNS, TCP, TLS or protocol failure.

    Args:
        message: What went wrong, without any secret.
        request_id: Never known for connection errors; kept for a uniform interface.
    """

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        super().__init__(message + _suffix(request_id))
        self.message = message
        self.request_id = request_id

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments: the default reduce would call cls(str(self)) and fail, so
        # these errors could not cross a process pool or be copied.
        kwargs = {"request_id": self.request_id}
        return _rebuild, (type(self), (self.message,), kwargs), self.__dict__


class StoreError(R9sError):
    """The file cannot be used as a usage store: not one, corrupt, or of another schema version.

    Nothing was written to the file. The message names the file and says what to do.

    Attributes:
        path: The file, as given.
    """

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (type(self), (self.message,), {"path": self.path}), self.__dict__


class StoreConflictError(StoreError):
    """Another backfill changed a day of the store while this one was fetching it.

    Nothing of that day was written. Unlike the other kinds of :class:`StoreError`, this one
    is resolved by running the backfill again.
    """


class APITimeoutError(APIConnectionError):
    """An attempt ran past the client's ``timeout``."""


class MalformedResponseError(R9sError):
    """The body is not JSON, not the documented envelope, or does not fit the schema.

    Attributes:
        status: The HTTP status of the answer.
        request_id: ``meta.request_id`` when the envelope gave one, else ``None``.
        detail: What exactly did not fit (for example ``expected int @ $.data.total_tokens``).
    """

    def __init__(self, detail: str, *, status: int, request_id: str | None = None) -> None:
        super().__init__(f"malformed response (HTTP {status}): {detail}{_suffix(request_id)}")
        self.detail = detail
        self.status = status
        self.request_id = request_id

    def __reduce__(self) -> tuple[Any, ...]:
        kwargs = {"status": self.status, "request_id": self.request_id}
        return _rebuild, (type(self), (self.detail,), kwargs), self.__dict__


class APIError(R9sError):
    """The API answered with an error.

    Attributes:
        status: The HTTP status of the answer.
        code: ``meta.code`` from the envelope, or ``None`` if the body had none.
        message: The server's message (``meta.message``), or a short stand-in.
        request_id: ``meta.request_id``, or ``None`` if the body had none.
        retry_after: Seconds the server asked us to wait (``Retry-After``), if any.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        code_part = f", code {code}" if code is not None and code != status else ""
        super().__init__(f"HTTP {status}{code_part}: {message}{_suffix(request_id)}")
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[Any, ...]:
        kwargs = {
            "status": self.status,
            "code": self.code,
            "request_id": self.request_id,
            "retry_after": self.retry_after,
        }
        return _rebuild, (type(self), (self.message,), kwargs), self.__dict__


class BadRequestError(APIError):
    """400 or 422: the request was refused as invalid."""


class AuthenticationError(APIError):
    """401: the key is missing, malformed, unknown, disabled or revoked."""


class PermissionDeniedError(APIError):
    """403: the key lacks the scope (for example ``usage:read``) or the organisation role."""


class NotFoundError(APIError):
    """404: wrong base URL or path, or an unknown ``user_id``."""


class RateLimitError(APIError):
    """429: too many requests; ``retry_after`` tells how long the server asked us to wait."""


class ServerError(APIError):
    """5xx: the server or a gateway in front of it failed."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    422: BadRequestError,
    429: RateLimitError,
}


def api_error_class(status: int) -> type[APIError]:
    """The :class:`APIError` subclass for an HTTP status or a ``meta.code``."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if 500 <= status <= 599:
        return ServerError
    return APIError
