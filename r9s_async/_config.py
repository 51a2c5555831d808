"""Client configuration: the API key as a redacted secret, the base URL, argument checks."""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping
from typing import NoReturn

from attrs import frozen
from yarl import URL

from ._exceptions import ConfigurationError

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    "ApiKey",
    "AuthHeaders",
    "RequestOptions",
    "check_deadline",
    "check_int",
    "check_positive",
    "check_request_options",
    "check_user_id",
    "configure_logging_from_env",
    "resolve_api_key",
    "resolve_base_url",
    "resolve_max_retries",
    "resolve_timeout",
]

DEFAULT_BASE_URL = "https://portal-api.r9s.ai/api/v1/portal/management"
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RETRIES = 3
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO}
_REDACTED = "[redacted]"


class ApiKey:
    """Holds the management key; nothing about it is ever shown.

    ``repr``/``str`` are redacted, it cannot be pickled, and :meth:`redact` scrubs the key out of
    any text (for example a server message that echoes it) before that text reaches an exception.
    """

    __slots__ = ("__value",)

    def __init__(self, value: str) -> None:
        self.__value = value

    def __repr__(self) -> str:
        return f"ApiKey({_REDACTED})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("the API key cannot be pickled")

    def redact(self, text: str) -> str:
        """``text`` with every occurrence of the key replaced by ``[redacted]``."""
        return text.replace(self.__value, _REDACTED) if self.__value in text else text

    def fingerprint(self, base_url: str) -> str:
        """A short, stable name for the account this key opens at ``base_url``.

        The first 16 hex digits (64 bits) of a domain-separated SHA-256 over the base URL and
        the key. A management key holds 256 random bits, so the fingerprint cannot be turned
        back into the key; the same key at another base URL (staging, production) is another
        account, with another fingerprint.
        """
        digest = hashlib.sha256()
        digest.update(b"r9s_async account v1\x00")
        digest.update(base_url.rstrip("/").encode())
        digest.update(b"\x00")
        digest.update(self.__value.encode())
        return digest.hexdigest()[:16]

    def authorization(self) -> str:
        """The ``Authorization`` header value. Call it only where aiohttp needs it."""
        return "Bearer " + self.__value


class AuthHeaders(Mapping[str, str]):
    """A read-only header mapping that renders the key only when aiohttp copies it.

    Our own frames hold this object, never the header string, so a traceback's locals (as
    captured by error reporters) cannot show the key.
    """

    __slots__ = ("_key", "_static")

    def __init__(self, key: ApiKey, static: Mapping[str, str]) -> None:
        self._key = key
        self._static = dict(static)

    def __getitem__(self, name: str) -> str:
        if name == "Authorization":
            return self._key.authorization()
        return self._static[name]

    def __iter__(self) -> Iterator[str]:
        yield "Authorization"
        yield from self._static

    def __len__(self) -> int:
        return 1 + len(self._static)

    def __repr__(self) -> str:
        shown = {**self._static, "Authorization": "Bearer " + _REDACTED}
        return f"AuthHeaders({shown!r})"

    def with_extra(self, extra: Mapping[str, str]) -> AuthHeaders:
        """These headers with ``extra`` added or replacing ours (``User-Agent``, ``Accept``);
        ``extra`` was checked by :func:`check_request_options`, so it cannot name
        ``Authorization``."""
        if not extra:
            return self
        replaced = {name.lower() for name in extra}
        kept = {k: v for k, v in self._static.items() if k.lower() not in replaced}
        return AuthHeaders(self._key, {**kept, **extra})


def resolve_api_key(api_key: str | None) -> ApiKey:
    """The key from the argument or ``R9S_API_KEY``, checked without ever echoing it.

    Raises:
        ConfigurationError: No key, or a key with whitespace, control or non-ASCII characters.
        TypeError: ``api_key`` is not a string.
    """
    try:
        key, problem = _check_api_key(api_key)
    finally:
        # Error reporters capture a traceback's locals: the raw key must not be among them.
        del api_key
    if problem is not None:
        raise problem
    assert key is not None
    return key


def _check_api_key(api_key: object) -> tuple[ApiKey | None, Exception | None]:
    # Returns the problem instead of raising it, so no frame that held the key is in the
    # traceback of the error.
    if api_key is None:
        api_key = os.environ.get("R9S_API_KEY")
        source = "R9S_API_KEY"
        if not api_key:
            return None, ConfigurationError(
                "no API key: pass api_key=... or set the R9S_API_KEY environment variable"
            )
    else:
        source = "api_key"
        if not isinstance(api_key, str):
            return None, TypeError(f"api_key must be a str, not {type(api_key).__name__}")
        if not api_key:
            return None, ConfigurationError("api_key is empty")
    if not api_key.isascii() or not api_key.isprintable() or any(c.isspace() for c in api_key):
        return None, ConfigurationError(
            f"the API key from {source} contains whitespace, control or non-ASCII characters; "
            "copy it again (the key is not shown here)"
        )
    return ApiKey(api_key), None


def resolve_base_url(base_url: str | None) -> URL:
    """The base URL from the argument, ``R9S_BASE_URL`` or the default, checked.

    Raises:
        ValueError: Not an absolute ``https://`` URL (``http://`` is allowed for loopback hosts),
            or it carries credentials, a query or a fragment.
    """
    text = base_url if base_url is not None else os.environ.get("R9S_BASE_URL") or DEFAULT_BASE_URL
    if not isinstance(text, str):
        raise TypeError(f"base_url must be a str, not {type(text).__name__}")
    try:
        url = URL(text)
    except ValueError as exc:
        raise ValueError(f"base_url is not a valid URL: {exc}") from None
    if not url.is_absolute() or not url.host:
        raise ValueError(f"base_url must be an absolute URL, got {text!r}")
    if any(c.isspace() for c in url.host):
        # yarl keeps such a host, and it would only fail later as a confusing DNS error.
        raise ValueError(f"base_url has whitespace in its host {url.host!r}")
    if url.user is not None or url.password is not None:
        raise ValueError("base_url must not carry credentials; use api_key")
    if url.query_string or url.fragment:
        raise ValueError("base_url must not have a query or a fragment")
    if url.scheme == "http":
        if not _is_loopback(url.host):
            raise ValueError(
                f"refusing http:// to non-loopback host {url.host!r}: the key would travel in "
                "clear text; use https://"
            )
    elif url.scheme != "https":
        raise ValueError(f"base_url must use https://, got {url.scheme!r}")
    return url.with_path(url.path.rstrip("/"))


def _is_loopback(host: str) -> bool:
    # Only the name itself: "*.localhost" is left to the resolver, which may ask real DNS.
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_user_id(user_id: object) -> str | None:
    """``user_id`` as the query string value, or ``None``.

    Raises:
        TypeError: Not ``None``, ``str`` or ``int``.
        ValueError: Empty, or containing whitespace or control characters.
    """
    if user_id is None:
        return None
    if isinstance(user_id, bool) or not isinstance(user_id, str | int):
        raise TypeError(f"user_id must be a str or int, not {type(user_id).__name__}")
    text = str(user_id)
    if not text or not text.isprintable() or any(c.isspace() for c in text):
        raise ValueError("user_id must be non-empty, without whitespace or control characters")
    return text


def check_positive(name: str, value: object, *, allow_zero: bool = False) -> None:
    """Reject non-numbers, booleans, NaN and (non-)positive values for settings."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if value != value or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def check_int(name: str, value: object, *, minimum: int) -> None:
    """Reject non-ints, booleans and ints below ``minimum`` for settings."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def check_deadline(deadline: object) -> None:
    """Reject a ``deadline`` that is neither ``None`` nor a positive number of seconds."""
    if deadline is not None:
        check_positive("deadline", deadline)


def resolve_timeout(timeout: float | None) -> float:
    """``timeout`` checked, or else ``R9S_TIMEOUT``, or else 30 seconds.

    Raises:
        ConfigurationError: ``R9S_TIMEOUT`` is not a positive number of seconds.
        TypeError, ValueError: ``timeout`` is not a positive number.
    """
    if timeout is None:
        text = os.environ.get("R9S_TIMEOUT", "").strip()
        if not text:
            return DEFAULT_TIMEOUT
        try:
            seconds = float(text)
        except ValueError:
            seconds = 0.0
        if not 0 < seconds < float("inf"):
            raise ConfigurationError(
                f"R9S_TIMEOUT must be a positive number of seconds, got {text!r}"
            )
        return seconds
    check_positive("timeout", timeout)
    return float(timeout)


def resolve_max_retries(max_retries: int | None) -> int:
    """``max_retries`` checked, or else ``R9S_MAX_RETRIES``, or else 3.

    Raises:
        ConfigurationError: ``R9S_MAX_RETRIES`` is not a whole number >= 0.
        TypeError, ValueError: ``max_retries`` is not an int >= 0.
    """
    if max_retries is None:
        text = os.environ.get("R9S_MAX_RETRIES", "").strip()
        if not text:
            return DEFAULT_MAX_RETRIES
        if not text.isascii() or not text.isdigit():
            raise ConfigurationError(f"R9S_MAX_RETRIES must be a whole number >= 0, got {text!r}")
        return int(text)
    check_int("max_retries", max_retries, minimum=0)
    return max_retries


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is when a record arrives (as ``logging.lastResort``)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


def configure_logging_from_env() -> None:
    """``R9S_LOG=debug|info``: log the ``r9s_async`` logger to stderr at that level.

    One handler is added the first time and kept; a later call only sets its level. Unset or
    empty leaves logging alone. The log lines never hold the key (every message is built from
    redacted values).

    Raises:
        ConfigurationError: ``R9S_LOG`` has another value.
    """
    text = os.environ.get("R9S_LOG", "").strip()
    if not text:
        return
    level = _LOG_LEVELS.get(text.lower())
    if level is None:
        raise ConfigurationError(f"R9S_LOG must be 'debug' or 'info', got {text!r}")
    logger = logging.getLogger("r9s_async")
    handler = next((h for h in logger.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        logger.addHandler(handler)
    handler.setLevel(level)
    logger.setLevel(level)


@frozen
class RequestOptions:
    """What every request of one call carries besides its window: one object, handed down
    the fan-out to each window's request (and to any request a window needs to heal).

    Attributes:
        user_id: The ``user_id`` query parameter, or ``None``.
        query: Extra query parameters, checked, in the caller's order.
        headers: Extra request headers, checked, in the caller's order.
    """

    user_id: str | None = None
    query: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()

    def params(self, start: int, end: int) -> dict[str, str]:
        """The query of the request for ``[start, end]``."""
        params = {"start_time": str(start), "end_time": str(end)}
        if self.user_id is not None:
            params["user_id"] = self.user_id
        params.update(self.query)
        return params


_RESERVED_QUERY = frozenset({"start_time", "end_time", "user_id"})
# Headers the client sets or the connection owns: Authorization carries the key; Host,
# Content-Length and Transfer-Encoding frame the request; Accept-Encoding names what we can
# decompress; the rest are hop-by-hop (RFC 9110 7.6.1), meaningless to the API.
_RESERVED_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "host",
        "content-length",
        "transfer-encoding",
        "accept-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    }
)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an RFC 9110 field name


def check_request_options(
    user_id: object, extra_query: object, extra_headers: object
) -> RequestOptions:
    """The checked :class:`RequestOptions` of one call, before anything is sent.

    Raises:
        TypeError: A mapping, name or value of the wrong type.
        ValueError: A name that would override ``start_time``, ``end_time``, ``user_id``
            (use the ``user_id`` argument) or a header the client owns (``Authorization``,
            ``Host``, ``Content-Length``, ``Accept-Encoding``, hop-by-hop headers, in any
            case); an empty or invalid name; a value with CR, LF or NUL.
    """
    uid = check_user_id(user_id)
    query: list[tuple[str, str]] = []
    for name, value in _items("extra_query", extra_query):
        if name in _RESERVED_QUERY:
            hint = "; use the user_id argument" if name == "user_id" else ""
            raise ValueError(f"extra_query must not set {name!r}: the client sets it{hint}")
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise TypeError(
                f"extra_query[{name!r}] must be a str or int, not {type(value).__name__}"
            )
        query.append((name, _clean_value("extra_query", name, str(value))))
    headers: list[tuple[str, str]] = []
    for name, value in _items("extra_headers", extra_headers):
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"extra_headers: {name!r} is not a valid header name")
        if name.lower() in _RESERVED_HEADERS:
            raise ValueError(
                f"extra_headers must not set {name!r}: the client or the connection owns it"
            )
        if not isinstance(value, str):
            raise TypeError(f"extra_headers[{name!r}] must be a str, not {type(value).__name__}")
        headers.append((name, _clean_value("extra_headers", name, value)))
    return RequestOptions(uid, tuple(query), tuple(headers))


def _items(what: str, mapping: object) -> list[tuple[str, object]]:
    if mapping is None:
        return []
    if not isinstance(mapping, Mapping):
        raise TypeError(f"{what} must be a mapping, not {type(mapping).__name__}")
    items = list(mapping.items())
    for name, _ in items:
        if not isinstance(name, str):
            raise TypeError(f"{what} names must be str, not {type(name).__name__}")
        if not name:
            raise ValueError(f"{what} has an empty name")
    seen = [name.lower() for name, _ in items] if what == "extra_headers" else []
    if len(set(seen)) != len(seen):
        raise ValueError(f"{what} names a header twice (names are case-insensitive)")
    return items


def _clean_value(what: str, name: str, value: str) -> str:
    if any(c in value for c in "\r\n\x00"):
        raise ValueError(f"{what}[{name!r}] contains CR, LF or NUL")
    return value
