"""The speedups extra (msgspec): the same answers and the same errors as the pure decoder."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from r9s_async import R9sError, UsageRecord, _speedups
from r9s_async._decode import UsageAnswer, decode_usage

KEY = "sk_mg_" + "cd34" * 16
RID = "rid-1"


def redact(text: str) -> str:
    return text.replace(KEY, "[redacted]")


def body_of(records: Any, total: Any = None, *, code: Any = 200, rid: Any = RID) -> bytes:
    if total is None:
        total = sum(r["tokens"] for r in records)
    data = {"records": records, "total_tokens": total}
    return json.dumps(
        {"meta": {"code": code, "message": "ok", "request_id": rid}, "data": data}
    ).encode()


CLEAN = body_of([{"timestamp": 1, "tokens": 5, "model": "m"}])


def pure(status: int, body: bytes) -> UsageAnswer | tuple[type[R9sError], str, Any]:
    saved = _speedups._decoder
    _speedups._decoder = None
    try:
        return outcome(status, body)
    finally:
        _speedups._decoder = saved


def outcome(status: int, body: bytes) -> UsageAnswer | tuple[type[R9sError], str, Any]:
    try:
        return decode_usage(status, {}, body, redact)
    except R9sError as exc:
        return type(exc), str(exc), vars(exc)


def test_the_extra_is_used_exactly_when_msgspec_is_installed() -> None:
    assert (importlib.util.find_spec("msgspec") is not None) == _speedups.speedups_enabled()


def test_a_clean_success_is_decoded_by_the_extra_when_installed() -> None:
    assert _speedups.speedups_enabled() == (_speedups.decode_clean_usage(CLEAN) is not None)


@pytest.mark.parametrize(
    "body",
    [
        body_of([{"timestamp": 1, "tokens": "5", "model": "m"}], 5),
        body_of([{"timestamp": 1, "tokens": 5.0, "model": "m"}], 5),
        body_of([{"timestamp": 1, "tokens": True, "model": "m"}], 1),
        body_of([{"timestamp": 1, "tokens": -1, "model": "m"}], 0),
        body_of([{"timestamp": 1, "tokens": 2**63, "model": "m"}], 0),
        body_of([{"timestamp": 1, "tokens": 2**62, "model": "m"}] * 2, 0),
        body_of([], 2**63),
        body_of([], -1),
        body_of([], 0, code=1001),
        body_of([{"timestamp": 1, "tokens": 5}], 5),
        b'\xef\xbb\xbf{"meta": {}}',
        b"not json",
    ],
    ids=[
        "str",
        "float",
        "bool",
        "negative",
        "2**63",
        "sum over 2**63",
        "total 2**63",
        "negative total",
        "error code",
        "missing model",
        "bom",
        "not json",
    ],
)
def test_anything_but_a_clean_success_is_left_to_the_pure_decoder(body: bytes) -> None:
    assert None is _speedups.decode_clean_usage(body)


def test_records_of_one_answer_share_one_string_per_model() -> None:
    records = [
        {"timestamp": t, "tokens": 1, "model": "gpt-4o" if t % 2 else "o1"} for t in range(6)
    ]

    answer = decode_usage(200, {}, body_of(records), redact)

    assert 2 == len({id(r.model) for r in answer.payload.records})


def test_a_body_that_holds_the_key_is_scrubbed_on_both_paths() -> None:
    body = body_of([{"timestamp": 1, "tokens": 5, "model": f"m-{KEY}"}], rid=KEY)

    answer = decode_usage(200, {}, body, redact)

    assert ([UsageRecord(1, 5, "m-[redacted]")], "[redacted]") == (
        answer.payload.records,
        answer.request_id,
    )
    assert answer == pure(200, body)


# Values of every JSON type for each field, edges of the token bound, escapes, the key.
values = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from([0, 2**63 - 1, 2**63, -1, 2**62]),
    st.text(max_size=8),
    st.sampled_from(["gpt-4o", "o1", KEY, "é", "\u2028", "a\\u0041"]),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
)
records = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {
                "timestamp": st.integers(min_value=0, max_value=2**40),
                "tokens": st.integers(min_value=0, max_value=10**6),
                "model": st.sampled_from(["gpt-4o", "o1", "\u00e9t\u00e9"]),
            }
        ),
        st.dictionaries(st.sampled_from(["timestamp", "tokens", "model", "x"]), values),
        values,
    ),
    max_size=5,
)


@st.composite
def answers(draw: st.DrawFn) -> tuple[int, bytes]:
    status = draw(st.sampled_from([200, 200, 200, 204, 429, 500]))
    recs = draw(records)
    total = draw(st.one_of(st.none(), values))
    if total is None:
        try:
            total = sum(r["tokens"] for r in recs)  # mostly consistent answers
        except (TypeError, KeyError):
            total = 0
    document: Any = {
        "meta": {
            "code": draw(st.sampled_from([0, 200, 200, 1001, "200"])),
            "message": draw(st.sampled_from(["ok", "", KEY])),
            "request_id": draw(st.sampled_from([RID, KEY, 7])),
        },
        "data": {"records": recs, "total_tokens": total},
    }
    if draw(st.booleans()):
        document = draw(st.sampled_from([document, document["data"], [document], None]))
    text = json.dumps(document, ensure_ascii=draw(st.booleans()))
    return status, text.encode(draw(st.sampled_from(["utf-8", "utf-8", "utf-16"])))


@settings(max_examples=400, deadline=None)
@given(answers())
def test_both_decoders_give_equal_answers_or_equal_errors(answer: tuple[int, bytes]) -> None:
    status, body = answer

    assert pure(status, body) == outcome(status, body)


@pytest.fixture
def pure_only() -> Iterator[None]:
    saved = _speedups._decoder
    _speedups._decoder = None
    yield
    _speedups._decoder = saved


@pytest.mark.usefixtures("pure_only")
def test_without_the_extra_nothing_is_decoded_fast() -> None:
    assert (False, None) == (_speedups.speedups_enabled(), _speedups.decode_clean_usage(CLEAN))
