"""Sans-io decoding: (status, headers, body) -> data or exactly the right typed error."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from _helpers import VENDOR_BALANCE

from r9s_async import (
    APIError,
    AuthenticationError,
    BadRequestError,
    Balance,
    MalformedResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    UsageRecord,
)
from r9s_async._decode import decode_balance, decode_usage
from r9s_async._retry import is_retryable

pytestmark = pytest.mark.usefixtures("decoder")  # both decoders of /usage answers

KEY = "sk_mg_" + "ab12" * 16
RID = "CffamfvUaPO1NqCuE6k8Ef9eoUTQr13C"
RECORDS: list[dict[str, Any]] = [
    {"timestamp": 1735689600, "tokens": 1500, "model": "gpt-4o-mini"},
    {"timestamp": 1735776000, "tokens": 2300, "model": "gpt-4o-mini"},
]
USAGE: dict[str, Any] = {"records": RECORDS, "total_tokens": 3800}


def redact(text: str) -> str:
    return text.replace(KEY, "[redacted]")


def no_redact(text: str) -> str:
    return text


def envelope(data: Any, *, code: int = 200, message: str = "success", rid: str = RID) -> bytes:
    return json.dumps(
        {"meta": {"code": code, "message": message, "request_id": rid}, "data": data}
    ).encode()


@pytest.mark.parametrize("code", [0, 200])
def test_both_success_codes_are_accepted(code: int) -> None:
    answer = decode_usage(200, {}, envelope(USAGE, code=code), redact)

    assert [UsageRecord(**r) for r in RECORDS] == answer.payload.records
    assert 3800 == answer.payload.total_tokens
    assert RID == answer.request_id


def test_unknown_envelope_and_record_fields_are_ignored() -> None:
    body = {
        "meta": {"code": 200, "message": "success", "request_id": RID, "took_ms": 5},
        "data": {**USAGE, "records": [{**RECORDS[0], "region": "eu"}], "page": 1},
        "links": {},
    }

    answer = decode_usage(200, {}, json.dumps(body).encode(), redact)

    assert [UsageRecord(**RECORDS[0])] == answer.payload.records


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (429, RateLimitError),
        (500, ServerError),
        (503, ServerError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (400, BadRequestError),
        (1001, APIError),
    ],
)
def test_a_200_whose_meta_code_is_an_error_raises_by_that_code(
    code: int, error: type[APIError]
) -> None:
    with pytest.raises(error) as caught:
        decode_usage(200, {}, envelope(None, code=code, message="slow down"), redact)

    assert error is type(caught.value)
    assert (200, code, "slow down", RID) == (
        caught.value.status,
        caught.value.code,
        caught.value.message,
        caught.value.request_id,
    )
    assert "slow down" in str(caught.value)
    assert RID in str(caught.value)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, BadRequestError),
        (422, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (429, RateLimitError),
        (500, ServerError),
        (502, ServerError),
        (599, ServerError),
        (418, APIError),
    ],
)
def test_http_error_statuses_map_to_their_subclass(status: int, error: type[APIError]) -> None:
    body = envelope(None, code=status, message="API key not found")

    with pytest.raises(error) as caught:
        decode_usage(status, {}, body, redact)

    assert error is type(caught.value)
    assert (status, status, "API key not found", RID) == (
        caught.value.status,
        caught.value.code,
        caught.value.message,
        caught.value.request_id,
    )
    assert f"HTTP {status}: API key not found (request id {RID})" == str(caught.value)


def test_an_error_status_wins_over_a_success_meta_code() -> None:
    with pytest.raises(ServerError) as caught:
        decode_usage(500, {}, envelope(USAGE, code=200), redact)

    assert (500, 200) == (caught.value.status, caught.value.code)


@pytest.mark.parametrize("status", [502, 503, 504])
@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            b"<html><head><title>502 Bad Gateway</title></head>\r\n<body>nginx</body></html>",
            "<html>",
        ),
        (b"", "empty body"),
        (b"  \r\n", "empty body"),
        (b"upstream connect error or disconnect/reset", "upstream connect error"),
    ],
    ids=["html", "empty", "blank", "text"],
)
def test_gateway_failures_without_json_are_server_errors_with_a_readable_message(
    status: int, body: bytes, reason: str
) -> None:
    with pytest.raises(ServerError) as caught:
        decode_usage(status, {}, body, redact)

    assert (status, None, None) == (caught.value.status, caught.value.code, caught.value.request_id)
    assert reason in caught.value.message
    assert "\n" not in str(caught.value)


def test_a_long_non_json_body_is_cut_short() -> None:
    with pytest.raises(ServerError) as caught:
        decode_usage(502, {}, b"<p>" + b"x" * 10_000, redact)

    assert len(caught.value.message) < 200
    assert caught.value.message.endswith("...'")


def test_a_json_error_body_without_the_envelope_is_shown() -> None:
    with pytest.raises(BadRequestError) as caught:
        decode_usage(400, {}, b'{"error": "bad start_time"}', redact)

    assert "bad start_time" in caught.value.message
    assert caught.value.code is None


def test_an_error_envelope_with_a_broken_meta_keeps_its_request_id() -> None:
    body = json.dumps({"meta": {"code": "401", "request_id": RID}, "data": None}).encode()

    with pytest.raises(AuthenticationError) as caught:
        decode_usage(401, {}, body, redact)

    assert RID == caught.value.request_id


def test_retry_after_is_read_from_error_answers() -> None:
    with pytest.raises(RateLimitError) as caught:
        decode_usage(429, {"Retry-After": "7"}, envelope(None, code=429), redact)

    assert 7.0 == caught.value.retry_after


@pytest.mark.parametrize(
    "body",
    [b"<html>oops</html>", b"", b"\xff\xfe\x00garbage", b'{"meta": ', b"[" * 100_000],
    ids=["html", "empty", "not-utf8", "truncated", "nested-too-deep"],
)
def test_a_200_that_is_not_json_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedResponseError) as caught:
        decode_usage(200, {}, body, redact)

    assert (200, None) == (caught.value.status, caught.value.request_id)


@pytest.mark.parametrize(
    "document",
    [[], "text", 3, None, {"data": USAGE}, {"status": "ok"}],
    ids=["list", "string", "number", "null", "no-meta", "other-object"],
)
def test_a_200_that_is_json_but_not_the_envelope_is_malformed(document: object) -> None:
    with pytest.raises(MalformedResponseError, match="envelope") as caught:
        decode_usage(200, {}, json.dumps(document).encode(), redact)

    assert 200 == caught.value.status


def test_a_200_without_data_is_malformed_and_keeps_the_request_id() -> None:
    body = json.dumps({"meta": {"code": 200, "message": "", "request_id": RID}}).encode()

    with pytest.raises(MalformedResponseError, match=r"missing field @ \$\.data") as caught:
        decode_usage(200, {}, body, redact)

    assert (200, RID) == (caught.value.status, caught.value.request_id)


def test_a_200_with_null_data_is_malformed() -> None:
    with pytest.raises(MalformedResponseError) as caught:
        decode_usage(200, {}, envelope(None), redact)

    assert RID == caught.value.request_id


def test_a_200_whose_records_do_not_fit_the_schema_names_the_path() -> None:
    records = [dict(r) for r in RECORDS] * 2
    records[3] = {**records[3], "tokens": "2300"}

    with pytest.raises(MalformedResponseError) as caught:
        decode_usage(200, {}, envelope({"records": records, "total_tokens": 0}), redact)

    assert "expected int @ $.data.records[3].tokens" in caught.value.detail
    assert (200, RID) == (caught.value.status, caught.value.request_id)
    assert RID in str(caught.value)


def test_a_200_with_a_broken_meta_is_malformed_with_the_request_id_it_had() -> None:
    body = json.dumps({"meta": {"code": 200.0, "message": "", "request_id": RID}, "data": USAGE})

    with pytest.raises(MalformedResponseError, match=r"expected int @ \$\.meta\.code") as caught:
        decode_usage(200, {}, body.encode(), redact)

    assert RID == caught.value.request_id


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_literals_are_refused(literal: str) -> None:
    body = envelope(USAGE).replace(b'"total_tokens": 3800', f'"total_tokens": {literal}'.encode())
    assert literal.encode() in body

    with pytest.raises(MalformedResponseError):
        decode_usage(200, {}, body, redact)


def test_a_server_message_that_echoes_the_key_is_redacted() -> None:
    body = envelope(None, code=401, message=f"Invalid API key format: {KEY}")

    with pytest.raises(AuthenticationError) as caught:
        decode_usage(401, {}, body, redact)

    assert "Invalid API key format: [redacted]" == caught.value.message
    assert KEY not in str(caught.value)


def test_the_key_is_redacted_from_non_json_bodies() -> None:
    with pytest.raises(ServerError) as caught:
        decode_usage(502, {}, f"<pre>Authorization: Bearer {KEY}</pre>".encode(), redact)

    assert KEY not in str(caught.value)
    assert "[redacted]" in str(caught.value)


@pytest.mark.parametrize("before", [0, 60, 100, 119, 64 * 1024 - 20])
def test_no_part_of_an_echoed_key_survives_the_cut_to_a_snippet(before: int) -> None:
    body = b"<" + b"x" * before + b" " + KEY.encode() + b" tail " * 10_000

    with pytest.raises(ServerError) as caught:
        decode_usage(502, {}, body, redact)

    assert KEY[:12] not in str(caught.value)


def test_a_key_cut_at_the_scan_limit_is_not_shown_either() -> None:
    body = b" " * (64 * 1024 - 30) + KEY.encode() + b"</html>"

    with pytest.raises(ServerError) as caught:
        decode_usage(502, {}, body, redact)

    assert KEY[:12] not in str(caught.value)


def test_the_key_is_redacted_from_a_200_error_meta() -> None:
    body = envelope(None, code=403, message=f"scope usage:read missing for {KEY}")

    with pytest.raises(PermissionDeniedError) as caught:
        decode_usage(200, {}, body, redact)

    assert KEY not in str(caught.value)


def test_redaction_is_the_callers_to_give() -> None:
    body = envelope(None, code=401, message=f"bad {KEY}")

    with pytest.raises(AuthenticationError) as caught:
        decode_usage(401, {}, body, no_redact)

    assert f"bad {KEY}" == caught.value.message


def test_the_vendors_balance_answer_decodes_exactly_with_its_request_id() -> None:
    body = envelope(VENDOR_BALANCE, code=0, message="")

    expected = Balance(
        balance=Decimal("470.010481"),
        currency_code="USD",
        coupon_balance=Decimal(0),
        credit_limit=Decimal(0),
        total_coupon_amount=Decimal(0),
        request_id=RID,
    )
    assert expected == decode_balance(200, {}, body, redact)


def test_balance_without_balance_str_converts_the_float_exactly() -> None:
    data = {k: v for k, v in VENDOR_BALANCE.items() if k != "balance_str"}

    balance = decode_balance(200, {}, envelope(data, code=0), redact)

    assert Decimal("470.010481") == balance.balance


def test_a_balance_that_does_not_fit_is_malformed_with_the_request_id() -> None:
    with pytest.raises(MalformedResponseError, match=r"\$\.data\.currency_code") as caught:
        decode_balance(200, {}, envelope({**VENDOR_BALANCE, "currency_code": None}, code=0), redact)

    assert RID == caught.value.request_id


def test_balance_errors_use_the_same_error_map() -> None:
    with pytest.raises(AuthenticationError):
        decode_balance(401, {}, envelope(None, code=401, message="API key not found"), redact)


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (408, None, True),
        (429, 429, True),
        (500, 500, True),
        (502, None, True),
        (503, None, True),
        (504, None, True),
        (200, 429, True),
        (200, 503, True),
        (400, 400, False),
        (401, 401, False),
        (404, 404, False),
        (501, 501, False),
        (200, 401, False),
        (404, 503, False),
    ],
)
def test_only_transient_errors_are_retryable(
    status: int, code: int | None, retryable: bool
) -> None:
    assert retryable == is_retryable(APIError("x", status=status, code=code))


def test_a_request_id_of_the_wrong_type_is_not_reported() -> None:
    body = json.dumps({"meta": {"code": 200, "message": "", "request_id": 7}, "data": USAGE})

    with pytest.raises(MalformedResponseError, match=r"\$\.meta\.request_id") as caught:
        decode_usage(200, {}, body.encode(), redact)

    assert caught.value.request_id is None
