"""Collecting an answer's body: ``gzip``/``deflate`` decoded by us, within a size cap. No I/O.

aiohttp's own decompression hands back what it has when a gzip stream stops short (the HTTP
framing was complete), so a cut-off answer would pass as a short one; here that is an error.
"""

from __future__ import annotations

import zlib

from ._exceptions import APIConnectionError, MalformedResponseError, R9sError

__all__ = ["CutShort", "Inflater", "TooLarge", "body_error", "too_large"]


class TooLarge(Exception):
    """The body would be larger than the limit once decompressed."""


class CutShort(Exception):
    """The compressed stream stopped before its end."""


class Inflater:
    """Collects a body, decompressing ``gzip``/``deflate``, and refuses more than ``limit``
    bytes of output. No I/O.

    Raises:
        ValueError: At construction, for a content coding we did not ask for.
    """

    def __init__(self, content_encoding: str, limit: int) -> None:
        encoding = content_encoding.strip().lower()
        if encoding in ("", "identity"):
            self.encoding = "identity"
        elif encoding in ("gzip", "x-gzip", "deflate"):
            self.encoding = "gzip" if encoding == "x-gzip" else encoding
        else:
            raise ValueError(f"unsupported Content-Encoding {content_encoding[:40]!r}")
        self._limit = limit
        self._size = 0
        self._parts: list[bytes] = []
        self._decompressor: zlib._Decompress | None = None

    def _new_decompressor(self, first: bytes) -> zlib._Decompress:
        if self.encoding == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        # "deflate" should be zlib-wrapped (RFC 9110); some servers send it raw.
        raw = first[0] & 0x0F != 8
        return zlib.decompressobj(-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)

    def _keep(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self._limit:
            raise TooLarge
        if data:
            self._parts.append(data)

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk of the body as it arrived.

        Raises:
            TooLarge: The output passed the limit.
            zlib.error: The compressed stream is corrupt.
        """
        if self.encoding == "identity":
            self._keep(chunk)
            return
        while chunk:
            if self._decompressor is None or self._decompressor.eof:
                # A gzip body may hold several members back to back.
                self._decompressor = self._new_decompressor(chunk)
            decompressor = self._decompressor
            self._keep(decompressor.decompress(chunk, self._limit - self._size + 1))
            chunk = decompressor.unused_data if decompressor.eof else b""

    def finish(self) -> bytes:
        """The whole decompressed body.

        Raises:
            CutShort: The compressed stream stopped before its end.
            TooLarge: The output passed the limit.
        """
        if self._decompressor is not None:
            self._keep(self._decompressor.flush())
            if not self._decompressor.eof:
                raise CutShort
        return b"".join(self._parts)


def body_error(exc: Exception, encoding: str, status: int, limit: int) -> R9sError:
    """Our error for what :class:`Inflater` raised while collecting a body of ``status``.

    A body too large is malformed; a corrupt or cut-off stream is a broken connection, worth
    another attempt.
    """
    if isinstance(exc, TooLarge):
        return too_large(status, limit)
    if isinstance(exc, CutShort):
        return APIConnectionError(f"the {encoding} body was cut short (HTTP {status})")
    if isinstance(exc, zlib.error):
        return APIConnectionError(f"the {encoding} body is corrupt (HTTP {status})")
    raise TypeError(f"not an error of collecting a body: {type(exc).__name__}")


def too_large(status: int, limit: int) -> MalformedResponseError:
    """The error for an answer larger than ``max_response_size``."""
    return MalformedResponseError(
        f"the answer is larger than max_response_size ({limit} bytes); not read further",
        status=status,
    )
