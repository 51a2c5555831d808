"""Fuzzing: whatever bytes arrive as an answer (any bytes, any JSON value, an envelope that is
nearly right), the result is either correct or an ``R9sError``; no ``KeyError``,
``TypeError``, ``JSONDecodeError`` or cattrs exception ever escapes. The sans-io decoder and
the body reader take the volume; a smaller number goes over HTTP."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _helpers import D0, DAY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from r9s_async import Balance, Client, R9sError, UsageRecord, UsageReport
from r9s_async._body import CutShort, Inflater, TooLarge
from r9s_async._decode import UsageAnswer, decode_balance, decode_usage
from r9s_async.testing import TEST_API_KEY, FakeR9sAPI, Fault

pytestmark = pytest.mark.usefixtures("decoder")  # both decoders of /usage answers


def no_redact(text: str) -> str:
    return text


# -- strategies ---------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def valid_usage() -> st.SearchStrategy[dict[str, Any]]:
    record = st.fixed_dictionaries(
        {
            "timestamp": st.integers(min_value=0, max_value=2**40),
            "tokens": st.integers(min_value=0, max_value=10**9),
            "model": st.text(max_size=10),
        }
    )
    return st.lists(record, max_size=5).map(
        lambda rs: {"records": rs, "total_tokens": sum(r["tokens"] for r in rs)}
    )


def valid_balance() -> st.SearchStrategy[dict[str, Any]]:
    money = st.integers(min_value=0, max_value=10**6) | st.floats(0, 1e6)
    return st.fixed_dictionaries(
        {
            "balance": money,
            "currency_code": st.sampled_from(["USD", "EUR"]),
            "coupon_balance": money,
            "credit_limit": money,
            "total_coupon_amount": money,
        },
        optional={"balance_str": st.from_regex(r"-?[0-9]{1,6}(\.[0-9]{1,6})?", fullmatch=True)},
    )


def valid_envelope(data: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    meta = st.fixed_dictionaries(
        {
            "code": st.sampled_from([0, 200]),
            "message": st.text(max_size=20),
            "request_id": st.text(st.characters(categories=["L", "N"]), max_size=32),
        }
    )
    return st.fixed_dictionaries({"meta": meta, "data": data})


def places(document: Any) -> Iterator[tuple[Any, Any]]:
    """Every (container, key) in a JSON document."""
    if isinstance(document, dict):
        for key, value in document.items():
            yield document, key
            yield from places(value)
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield document, index
            yield from places(value)


# What a sloppy server sends instead of the right value: the same number as text or float,
# a bool, null, nothing at all, or anything.
confusions = st.sampled_from(["as-text", "as-float", "bool", "null", "delete", "any", "nan"])


@st.composite
def near_valid(draw: st.DrawFn, data: st.SearchStrategy[Any]) -> Any:
    """A valid envelope with up to three things wrong with it."""
    document = draw(valid_envelope(data))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        spots = list(places(document))
        if not spots:
            break
        container, key = draw(st.sampled_from(spots))
        how = draw(confusions)
        value = container[key]
        if how == "delete":
            del container[key]
        elif how == "as-text":
            container[key] = str(value)
        elif how == "as-float":
            container[key] = float(value) if isinstance(value, int | float) else 1.5
        elif how == "bool":
            container[key] = True
        elif how == "null":
            container[key] = None
        elif how == "nan":
            container[key] = float("nan")
        else:
            container[key] = draw(json_values)
    if draw(st.booleans()):
        document[draw(st.text(max_size=5))] = draw(json_values)  # an unknown extra field
    return document


def envelopes(data: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(near_valid(data), near_valid(data), json_values)


def as_json(value: Any) -> bytes:
    # allow_nan: NaN and Infinity are what a broken server would send as "numbers".
    return json.dumps(value, allow_nan=True).encode()


def bodies(data: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return st.one_of(envelopes(data).map(as_json), st.binary(max_size=200))


usage_data = valid_usage()
balance_data = valid_balance()
statuses = st.sampled_from([200] * 8 + [201, 204, 400, 401, 404, 408, 429, 500, 502, 503])
headers = st.fixed_dictionaries({}, optional={"Retry-After": st.text(max_size=40)})


# -- the decoder ------------------------------------------------------------------------------


def check_usage(answer: UsageAnswer, body: bytes) -> None:
    """A decoded answer says exactly what the body said, with exact types."""
    document = json.loads(body)
    assert document["meta"]["code"] in (0, 200)
    assert document["meta"]["request_id"] == answer.request_id
    sent = document["data"]["records"]
    assert all(
        type(r["timestamp"]) is int and type(r["tokens"]) is int and type(r["model"]) is str
        for r in sent
    )
    assert [UsageRecord(r["timestamp"], r["tokens"], r["model"]) for r in sent] == (
        answer.payload.records
    )
    assert document["data"]["total_tokens"] == answer.payload.total_tokens


@settings(max_examples=400, deadline=None)
@given(status=statuses, headers=headers, body=bodies(usage_data))
def test_any_usage_answer_decodes_exactly_or_raises_an_r9s_error(
    status: int, headers: dict[str, str], body: bytes
) -> None:
    try:
        answer = decode_usage(status, headers, body, no_redact)
    except R9sError:
        return
    assert 200 <= status <= 299
    check_usage(answer, body)


@settings(max_examples=250, deadline=None)
@given(status=statuses, headers=headers, body=bodies(balance_data))
def test_any_balance_answer_decodes_or_raises_an_r9s_error(
    status: int, headers: dict[str, str], body: bytes
) -> None:
    try:
        balance = decode_balance(status, headers, body, no_redact)
    except R9sError:
        return
    assert 200 <= status <= 299
    assert isinstance(balance, Balance)
    assert balance.balance.is_finite()


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_any_json_value_as_a_200_body_raises_an_r9s_error(value: Any) -> None:
    with pytest.raises(R9sError):
        decode_usage(200, {}, as_json(value), no_redact)


# -- the body reader: decompression and the size cap ------------------------------------------


def compress(data: bytes, coding: str) -> bytes:
    if coding == "gzip":
        return gzip.compress(data)
    if coding == "deflate":
        return zlib.compress(data)
    return data


def chunks(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    start = 0
    for point in [*points, len(data)]:
        yield data[start:point]
        start = point


def read_all(inflater: Inflater, body: bytes) -> bytes:
    inflater.feed(body)
    return inflater.finish()


codings = st.sampled_from(["gzip", "deflate", "identity"])
cut_points = st.lists(st.integers(min_value=0, max_value=5000), max_size=6)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=3000), coding=codings, cuts=cut_points)
def test_a_body_reads_back_exactly_however_it_was_chunked(
    data: bytes, coding: str, cuts: list[int]
) -> None:
    inflater = Inflater(coding, limit=10_000)
    for chunk in chunks(compress(data, coding), cuts):
        inflater.feed(chunk)

    assert data == inflater.finish()


@settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=1, max_size=3000), coding=st.sampled_from(["gzip", "deflate"]))
def test_a_compressed_body_cut_anywhere_is_never_data(data: bytes, coding: str) -> None:
    compressed = compress(data, coding)
    for end in {0, 1, len(compressed) // 2, len(compressed) - 1}:
        if end == 0:
            continue
        inflater = Inflater(coding, limit=10_000)
        with pytest.raises((CutShort, zlib.error)):
            read_all(inflater, compressed[:end])


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=500), coding=codings)
def test_any_bytes_read_back_or_fail_in_a_known_way(data: bytes, coding: str) -> None:
    inflater = Inflater(coding, limit=1_000)
    try:
        inflater.feed(data)
        out = inflater.finish()
    except (CutShort, TooLarge, zlib.error):
        return
    assert len(out) <= 1_000


@settings(max_examples=100, deadline=None)
@given(data=st.binary(min_size=1, max_size=3000), coding=codings, limit=st.integers(0, 3000))
def test_no_body_over_the_limit_is_ever_returned(data: bytes, coding: str, limit: int) -> None:
    inflater = Inflater(coding, limit=limit)
    try:
        inflater.feed(compress(data, coding))
        out = inflater.finish()
    except TooLarge:
        assert len(data) > limit
        return
    assert (data, True) == (out, len(out) <= limit)


# -- over HTTP ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def http_usage() -> Iterator[tuple[FakeR9sAPI, Callable[[], UsageReport]]]:
    api = FakeR9sAPI()
    with (
        api.serve_in_thread() as url,
        Client(TEST_API_KEY, base_url=url, max_retries=0, timeout=5) as client,
    ):
        yield api, lambda: client.usage(D0, D0 + DAY - 1)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(status=statuses, headers=headers, body=bodies(usage_data))
def test_any_answer_over_http_is_correct_or_an_r9s_error(
    http_usage: tuple[FakeR9sAPI, Callable[[], UsageReport]],
    status: int,
    headers: dict[str, str],
    body: bytes,
) -> None:
    api, fetch = http_usage
    api.clear_faults()
    sent = {k: v for k, v in headers.items() if v.isprintable() and v.isascii() and v.strip()}
    # Every request meets the same answer, the halves of a cut-off window's heal included.
    api.add_fault(Fault.respond(status, body, headers=sent), times=1_000)
    try:
        report = fetch()
    except R9sError:
        return
    answer = decode_usage(status, sent, body, no_redact)  # what it must then have been
    assert [r for r in answer.payload.records if D0 <= r.timestamp < D0 + DAY - 1] == (
        report.records
    )
