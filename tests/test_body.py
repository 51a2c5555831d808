"""Collecting a body: gzip and deflate decoded by us, a cut-off stream is an error, a size cap."""

from __future__ import annotations

import gzip
import zlib

import pytest

from r9s_async import APIConnectionError, MalformedResponseError
from r9s_async._body import CutShort, Inflater, TooLarge, body_error

BODY = b'{"meta": {"code": 200}, "data": {"records": []}}' * 20


def collect(inflater: Inflater, body: bytes, chunk: int = 7) -> bytes:
    for i in range(0, len(body), chunk):
        inflater.feed(body[i : i + chunk])
    return inflater.finish()


@pytest.mark.parametrize("coding", ["", "identity", " Identity "])
def test_an_identity_body_is_kept_as_it_came(coding: str) -> None:
    inflater = Inflater(coding, limit=10_000)

    assert ("identity", BODY) == (inflater.encoding, collect(inflater, BODY))


@pytest.mark.parametrize("coding", ["gzip", "x-gzip", "GZIP"])
def test_a_gzip_body_is_decompressed(coding: str) -> None:
    inflater = Inflater(coding, limit=10_000)

    assert ("gzip", BODY) == (inflater.encoding, collect(inflater, gzip.compress(BODY)))


def test_gzip_members_back_to_back_are_one_body() -> None:
    halves = gzip.compress(BODY[:100]) + gzip.compress(BODY[100:])

    assert BODY == collect(Inflater("gzip", limit=10_000), halves)


@pytest.mark.parametrize("wbits", [zlib.MAX_WBITS, -zlib.MAX_WBITS], ids=["zlib", "raw"])
def test_a_deflate_body_is_decompressed_zlib_wrapped_or_raw(wbits: int) -> None:
    compressor = zlib.compressobj(wbits=wbits)
    body = compressor.compress(BODY) + compressor.flush()

    assert BODY == collect(Inflater("deflate", limit=10_000), body)


def test_a_content_coding_we_did_not_ask_for_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported Content-Encoding 'br'"):
        Inflater("br", limit=10_000)


def test_a_gzip_stream_that_stops_short_is_cut_short_not_a_shorter_body() -> None:
    inflater = Inflater("gzip", limit=10_000)
    inflater.feed(gzip.compress(BODY)[:-12])

    with pytest.raises(CutShort):
        inflater.finish()


def test_a_corrupt_stream_is_a_zlib_error() -> None:
    with pytest.raises(zlib.error):
        Inflater("gzip", limit=10_000).feed(b"\x1f\x8b not gzip at all")


@pytest.mark.parametrize("coding", ["identity", "gzip"])
def test_more_than_the_limit_is_too_large_at_once(coding: str) -> None:
    body = BODY if coding == "identity" else gzip.compress(BODY)
    inflater = Inflater(coding, limit=len(BODY) - 1)

    with pytest.raises(TooLarge):
        collect(inflater, body, chunk=len(body))


def test_exactly_the_limit_is_accepted() -> None:
    assert BODY == collect(Inflater("gzip", limit=len(BODY)), gzip.compress(BODY))


def test_a_body_too_large_is_a_malformed_response_naming_the_limit() -> None:
    error = body_error(TooLarge(), "gzip", 200, 1000)

    assert isinstance(error, MalformedResponseError)
    assert "larger than max_response_size (1000 bytes)" in str(error)
    assert 200 == error.status


@pytest.mark.parametrize(
    ("problem", "expected"),
    [
        (CutShort(), "the gzip body was cut short (HTTP 200)"),
        (zlib.error("bad"), "the gzip body is corrupt (HTTP 200)"),
    ],
)
def test_a_broken_stream_is_a_connection_error_worth_a_retry(
    problem: Exception, expected: str
) -> None:
    error = body_error(problem, "gzip", 200, 1000)

    assert APIConnectionError is type(error)
    assert expected == str(error)


def test_body_error_refuses_what_collecting_cannot_raise() -> None:
    with pytest.raises(TypeError, match="KeyError"):
        body_error(KeyError("x"), "gzip", 200, 1000)
