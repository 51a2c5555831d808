"""The HTTP transport: the only module of the client that imports aiohttp.

One ``get(path, params)`` gives ``(status, headers, body)``. The session is made lazily inside
the running loop (a connector binds the loop that made it); a borrowed one is never closed.
Same-origin redirects are followed by hand, the body is read within ``max_response_size``,
and every aiohttp and timeout error is mapped to ours here, outside the ``except`` block, so
no aiohttp exception (whose ``request_info`` carries the headers) is chained to ours.
"""

from __future__ import annotations

import asyncio
import json
import platform
import urllib.request
import zlib
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp import ClientSession
from yarl import URL

from ._body import CutShort, Inflater, TooLarge, body_error, too_large
from ._config import ApiKey, AuthHeaders
from ._decode import Redact
from ._exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    ClientClosedError,
    MalformedResponseError,
    R9sError,
)
from ._version import __version__

__all__ = [
    "DEFAULT_MAX_RESPONSE_SIZE",
    "USER_AGENT",
    "ClientSession",
    "Transport",
    "check_session",
    "post_json",
    "proxy_from_env",
]

USER_AGENT = (
    f"r9s_async/{__version__} aiohttp/{aiohttp.__version__} Python/{platform.python_version()}"
)
DEFAULT_MAX_RESPONSE_SIZE = 64 * 1024 * 1024
_READ_CHUNK = 64 * 1024
_MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Per-request settings that win over whatever a borrowed session was built with, so every
# answer reaches our decoder as the server sent it: no raise_for_status (a 401 would become
# a retried connection error), no redirects or decompression by aiohttp (we do both), no
# session timeout (ours is asyncio's, around the whole exchange), no session middlewares.
_NO_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=None, sock_read=None, sock_connect=None)

Answer = tuple[int, Mapping[str, str], bytes]


def check_session(session: object, trust_env: object) -> None:
    """Reject a ``session`` that is not an aiohttp one, and ``trust_env`` it cannot honour.

    Raises:
        TypeError: ``session`` is not a :class:`aiohttp.ClientSession`, or ``trust_env`` neither
            a bool nor ``None`` (the default).
        ValueError: ``trust_env=True`` with a borrowed session, or a session with ``auth``.
    """
    if session is not None and not isinstance(session, ClientSession):
        raise TypeError(f"session must be an aiohttp.ClientSession, not {type(session).__name__}")
    if trust_env is not None and not isinstance(trust_env, bool):
        raise TypeError(f"trust_env must be a bool, not {type(trust_env).__name__}")
    if isinstance(session, ClientSession) and session.auth is not None:
        raise ValueError(
            "the borrowed session has its own auth=...; aiohttp would refuse to send it with "
            "the API key's Authorization header: borrow a session without auth"
        )
    if trust_env and session is not None:
        raise ValueError(
            "trust_env=True cannot apply to a borrowed session: the injected session's own "
            "trust_env setting applies (create it with aiohttp.ClientSession(trust_env=True))"
        )


def proxy_from_env(url: URL) -> tuple[URL | None, aiohttp.BasicAuth | None]:
    """The proxy ``HTTPS_PROXY``/``HTTP_PROXY`` name for ``url``, unless ``NO_PROXY`` covers it.

    Read once, by the standard library's rules (lower-case names win). Credentials in the
    proxy URL become the proxy's ``Proxy-Authorization``; ``.netrc`` is not read (the API's
    credential is the key, and aiohttp refuses a netrc login beside our ``Authorization``).
    """
    host = url.host
    if host is None or urllib.request.proxy_bypass(host):
        return None, None
    text = urllib.request.getproxies().get(url.scheme)
    if not text:
        return None, None
    proxy = URL(text)
    auth = None
    if proxy.user is not None:
        auth = aiohttp.BasicAuth(proxy.user, proxy.password or "")
        proxy = proxy.with_user(None)
    return proxy, auth


class Transport:
    """GET requests to one API root with one key, over a session made or borrowed.

    Args:
        base_url: The API root.
        key: The key, rendered into the ``Authorization`` header only when aiohttp copies it.
        timeout: Seconds one ``get`` may take, redirects included.
        connections: Most connections the session it makes may open.
        max_response_size: Bytes one answer may have once decompressed.
        trust_env: Whether the session it makes uses the proxy the environment names for
            ``base_url`` (read here, once).
        session: A session to borrow; never closed here.
    """

    def __init__(
        self,
        base_url: URL,
        key: ApiKey,
        *,
        timeout: float,
        connections: int,
        max_response_size: int,
        trust_env: bool,
        session: ClientSession | None,
    ) -> None:
        self._base_url = base_url
        self._origin = base_url.origin()
        self._redact: Redact = key.redact
        self._headers = AuthHeaders(
            key,
            {
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
                # Only what we decompress ourselves: see _read_body.
                "Accept-Encoding": "gzip, deflate",
            },
        )
        self._timeout = timeout
        self._connections = connections
        self._max_response_size = max_response_size
        self._proxy, self._proxy_auth = (
            proxy_from_env(base_url) if trust_env and session is None else (None, None)
        )
        self._session = session
        self._owns_session = session is None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def opened(self) -> bool:
        """Whether a session is at hand (borrowed, or made and not yet closed)."""
        return self._session is not None

    def open(self) -> None:
        """Bind the running loop and make the session if there is none yet.

        Raises:
            RuntimeError: The transport was first used in another event loop.
        """
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError(
                "this AsyncClient was first used in another event loop; an aiohttp session "
                "belongs to one loop, so create one client per loop (or use r9s_async.Client)"
            )
        if self._session is None:
            self._session = ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections),
                timeout=aiohttp.ClientTimeout(total=None),
                # The proxy was resolved once from the environment: aiohttp's own trust_env
                # would look again on every request, and try ~/.netrc against our key.
                proxy=self._proxy,
                proxy_auth=self._proxy_auth,
            )

    async def close(self) -> None:
        """Close the session it made; forget a borrowed one without closing it."""
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()

    def forget(self) -> None:
        """After ``fork()``: drop the parent's session and loop without touching them."""
        if self._owns_session:
            self._session = None
        self._loop = None

    async def get(
        self,
        path: str,
        params: Mapping[str, str],
        headers: tuple[tuple[str, str], ...] = (),
        *,
        seconds: float | None = None,
    ) -> Answer:
        """One GET of ``path`` with extra ``headers`` (already checked): ``(status, headers,
        body)``, within ``seconds`` (by default the ``timeout``; clients made by
        ``with_options`` share one transport).

        Raises:
            APITimeoutError: No complete answer within ``timeout``.
            APIConnectionError: No usable HTTP answer (including a corrupt or cut-off body).
            APIError: A redirect not followed.
            MalformedResponseError: The answer is larger than ``max_response_size``.
            ClientClosedError: The session was closed under the request.
        """
        session = self._session
        if session is None:
            raise ClientClosedError("the client was closed during the call")
        timeout = self._timeout if seconds is None else seconds
        failure: R9sError
        try:
            async with asyncio.timeout(timeout):
                return await self._send(session, path, params, headers)
        except TimeoutError:
            failure = APITimeoutError(f"no complete answer within {timeout:g}s")
        except aiohttp.ClientError as exc:
            failure = APIConnectionError(self._describe(exc))
        except RuntimeError:
            if not session.closed:
                raise
            # The client was closed while this call was under way.
            failure = ClientClosedError("the client was closed during the call")
        raise failure

    async def _send(
        self,
        session: ClientSession,
        path: str,
        params: Mapping[str, str],
        extra: tuple[tuple[str, str], ...],
    ) -> Answer:
        url = URL(str(self._base_url) + path).with_query(params)
        sent = self._headers.with_extra(dict(extra))
        for _ in range(_MAX_REDIRECTS + 1):
            async with session.get(
                url,
                headers=sent,
                raise_for_status=False,
                allow_redirects=False,
                auto_decompress=False,
                timeout=_NO_TIMEOUT,
                read_bufsize=_READ_CHUNK,
                middlewares=(),
            ) as response:
                location = response.headers.get("Location")
                if response.status in _REDIRECTS and location:
                    url = self._redirect_target(url, location, response.status)
                    continue
                body = await self._read_body(response)
                return response.status, response.headers, body
        raise APIError("too many redirects", status=response.status)

    def _redirect_target(self, url: URL, location: str, status: int) -> URL:
        """Where a redirect leads, if it stays on the API's origin (else the key would go)."""
        try:
            target = url.join(URL(location))
            target_origin = target.origin()
        except ValueError:
            raise APIError(
                "redirect with an invalid Location; not followed", status=status
            ) from None
        if target_origin != self._origin:
            raise APIError(
                f"redirected to another origin ({target_origin}); not followed, "
                "so the key is not sent there",
                status=status,
            )
        return target

    async def _read_body(self, response: aiohttp.ClientResponse) -> bytes:
        """The whole body, decompressed by us, within ``max_response_size``.

        Reading in chunks keeps an oversized body out of memory.
        """
        limit = self._max_response_size
        status = response.status
        if response.content_length is not None and response.content_length > limit:
            raise too_large(status, limit)
        try:
            inflater = Inflater(response.headers.get("Content-Encoding", ""), limit)
        except ValueError as exc:
            raise MalformedResponseError(str(exc), status=status) from None
        if inflater.encoding == "identity" and response.content_length is not None:
            # Size already checked; aiohttp's read() fails (ClientPayloadError) on a body shorter
            # than its Content-Length. One read instead of a loop over chunks.
            return await response.read()
        problem: Exception
        try:
            async for chunk in response.content.iter_chunked(_READ_CHUNK):
                inflater.feed(chunk)
            return inflater.finish()
        except (TooLarge, CutShort, zlib.error) as exc:
            problem = exc
        raise body_error(problem, inflater.encoding, status, limit) from None

    def _describe(self, exc: BaseException) -> str:
        # aiohttp's ClientResponseError carries the request headers; keep only type and text.
        # Raised by aiohttp itself (we never call raise_for_status), it means the server's
        # bytes were not valid HTTP: aiohttp gives it status 400, which is not the API's.
        if type(exc) is aiohttp.ClientResponseError:  # not a proxy's refusal, a subclass
            return self._redact(f"malformed HTTP from the server: {exc.message}")
        return self._redact(f"{type(exc).__name__}: {exc}".rstrip(": "))


async def post_json(url: str, payload: Mapping[str, Any], *, seconds: float = 10.0) -> int:
    """POST ``payload`` as JSON to ``url`` (a webhook) and give the answer's status.

    No key is sent, redirects are not followed, and proxies and ``.netrc`` are not used.
    Error messages name only the URL's origin: a webhook URL is often a secret itself.

    Args:
        url: An ``http`` or ``https`` URL.
        payload: A JSON-able mapping.
        seconds: How long the whole post may take.

    Returns:
        The HTTP status of the answer (any status: the caller judges it).

    Raises:
        APITimeoutError: No answer within ``timeout``.
        APIConnectionError: No HTTP answer (refused connection, DNS, TLS).
    """
    target = URL(url)
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    failure: R9sError
    try:
        async with (
            asyncio.timeout(seconds),
            ClientSession(trust_env=False) as session,
            session.post(target, data=body, headers=headers, allow_redirects=False) as response,
        ):
            await response.read()
            return response.status
    except TimeoutError:
        failure = APITimeoutError(f"no answer from {target.origin()} within {seconds:g}s")
    except aiohttp.ClientError as exc:
        os_error = getattr(exc, "os_error", None)
        strerror = os_error.strerror if isinstance(os_error, OSError) else None
        reason = f": {strerror}" if strerror else ""
        failure = APIConnectionError(f"{target.origin()}: {type(exc).__name__}{reason}")
    raise failure
