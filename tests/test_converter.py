"""The private converter: strict JSON-to-model structuring with readable paths."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from _helpers import VENDOR_BALANCE

from r9s_async import Balance, UsageRecord
from r9s_async._converter import Meta, SchemaError, UsagePayload, structure


def records(n: int) -> list[dict[str, Any]]:
    return [{"timestamp": 100 + i, "tokens": 10 * i, "model": "gpt-4o"} for i in range(n)]


def test_a_usage_payload_becomes_records_and_a_total() -> None:
    payload = structure({"records": records(2), "total_tokens": 10}, UsagePayload, "$.data")

    expected = UsagePayload([UsageRecord(100, 0, "gpt-4o"), UsageRecord(101, 10, "gpt-4o")], 10)
    assert expected == payload


@pytest.mark.parametrize("bad", ["7", 1.9, 7.0, True, None], ids=repr)
def test_anything_but_an_int_where_an_int_belongs_is_refused_with_its_path(bad: object) -> None:
    items = records(5)
    items[3]["tokens"] = bad

    with pytest.raises(SchemaError, match=r"expected int @ \$\.data\.records\[3\]\.tokens"):
        structure({"records": items, "total_tokens": 0}, UsagePayload, "$.data")


@pytest.mark.parametrize("bad", ["7", 7.5, False, None], ids=repr)
def test_total_tokens_must_be_an_int(bad: object) -> None:
    with pytest.raises(SchemaError, match=r"expected int @ \$\.data\.total_tokens"):
        structure({"records": [], "total_tokens": bad}, UsagePayload, "$.data")


def test_timestamps_must_be_ints() -> None:
    items = records(2)
    items[1]["timestamp"] = "101"

    with pytest.raises(SchemaError, match=r"expected int @ \$\.data\.records\[1\]\.timestamp"):
        structure({"records": items, "total_tokens": 0}, UsagePayload, "$.data")


@pytest.mark.parametrize("bad", [1, None, ["gpt-4o"]], ids=repr)
def test_model_must_be_a_string(bad: object) -> None:
    items = records(1)
    items[0]["model"] = bad

    with pytest.raises(SchemaError, match=r"expected str @ \$\.data\.records\[0\]\.model"):
        structure({"records": items, "total_tokens": 0}, UsagePayload, "$.data")


def test_a_missing_field_is_named_with_its_path() -> None:
    items = records(3)
    del items[2]["model"]

    with pytest.raises(
        SchemaError, match=r"required field missing @ \$\.data\.records\[2\]\.model"
    ):
        structure({"records": items, "total_tokens": 0}, UsagePayload, "$.data")


@pytest.mark.parametrize("bad", [None, "records", {"0": {}}], ids=repr)
def test_records_must_be_a_list(bad: object) -> None:
    with pytest.raises(SchemaError, match=r"expected list @ \$\.data\.records"):
        structure({"records": bad, "total_tokens": 0}, UsagePayload, "$.data")


@pytest.mark.parametrize("bad", [None, 3, "x", [1]], ids=repr)
def test_a_record_that_is_not_an_object_is_refused(bad: object) -> None:
    with pytest.raises(SchemaError, match=r"\$\.data\.records\[1\]"):
        structure({"records": [records(1)[0], bad], "total_tokens": 0}, UsagePayload, "$.data")


@pytest.mark.parametrize("bad", [None, [], "data", 7], ids=repr)
def test_a_payload_that_is_not_an_object_is_refused(bad: object) -> None:
    with pytest.raises(SchemaError, match=r"\$\.data"):
        structure(bad, UsagePayload, "$.data")


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    items = records(1)
    items[0]["cost"] = 0.25
    data = {"records": items, "total_tokens": 0, "next_page": None}

    assert UsagePayload([UsageRecord(100, 0, "gpt-4o")], 0) == structure(
        data, UsagePayload, "$.data"
    )


def test_meta_is_strict_too() -> None:
    assert Meta(0, "", "abc") == structure(
        {"code": 0, "message": "", "request_id": "abc"}, Meta, "$.meta"
    )
    with pytest.raises(SchemaError, match=r"expected int @ \$\.meta\.code"):
        structure({"code": "200", "message": "", "request_id": "abc"}, Meta, "$.meta")


def test_the_vendors_balance_answer_becomes_exact_decimals() -> None:
    expected = Balance(Decimal("470.010481"), "USD", Decimal(0), Decimal(0), Decimal(0))

    assert expected == structure(VENDOR_BALANCE, Balance, "$.data")


def test_balance_is_taken_exactly_from_balance_str() -> None:
    data = {**VENDOR_BALANCE, "balance": 0.1, "balance_str": "0.10000000000000000001"}

    assert Decimal("0.10000000000000000001") == structure(data, Balance, "$.data").balance


def test_float_amounts_are_converted_exactly_as_written() -> None:
    data = {**VENDOR_BALANCE, "coupon_balance": 470.010481, "credit_limit": 0.1}
    del data["balance_str"]

    balance = structure(data, Balance, "$.data")

    assert (Decimal("470.010481"), Decimal("470.010481"), Decimal("0.1")) == (
        balance.balance,
        balance.coupon_balance,
        balance.credit_limit,
    )


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "", "12 USD"])
def test_a_balance_str_that_is_not_a_finite_decimal_is_refused(bad: str) -> None:
    with pytest.raises(SchemaError, match=r"\$\.data\.balance_str"):
        structure({**VENDOR_BALANCE, "balance_str": bad}, Balance, "$.data")


@pytest.mark.parametrize("bad", ["0", True, None, float("inf")], ids=repr)
def test_money_fields_must_be_finite_numbers(bad: object) -> None:
    with pytest.raises(
        SchemaError, match=r"expected a finite number, got \w+ @ \$\.data\.credit_limit"
    ):
        structure({**VENDOR_BALANCE, "credit_limit": bad}, Balance, "$.data")


def test_a_missing_money_field_is_named() -> None:
    data = dict(VENDOR_BALANCE)
    del data["total_coupon_amount"]

    with pytest.raises(SchemaError, match=r"missing field @ \$\.data\.total_coupon_amount"):
        structure(data, Balance, "$.data")


def test_currency_code_must_be_a_string() -> None:
    with pytest.raises(SchemaError, match=r"expected str @ \$\.data\.currency_code"):
        structure({**VENDOR_BALANCE, "currency_code": 840}, Balance, "$.data")


def test_balance_ignores_unknown_fields() -> None:
    expected = structure(VENDOR_BALANCE, Balance, "$.data")

    assert expected == structure({**VENDOR_BALANCE, "frozen": False}, Balance, "$.data")


@pytest.mark.parametrize("bad", [None, [], "470.01"], ids=repr)
def test_balance_data_must_be_an_object(bad: object) -> None:
    with pytest.raises(SchemaError, match=r"expected object, got \w+ @ \$\.data"):
        structure(bad, Balance, "$.data")


def test_a_balance_str_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(SchemaError, match=r"expected str @ \$\.data\.balance_str"):
        structure({**VENDOR_BALANCE, "balance_str": 470.010481}, Balance, "$.data")
