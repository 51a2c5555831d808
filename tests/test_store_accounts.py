"""UsageStore accounts: several accounts side by side, filters by name or fingerprint, the
new export columns, and token sums that stay exact beyond 64 bits."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from _helpers import DAY

from r9s_async import Account, StoredWindow, UsageRecord, UsageStore

D0 = 100 * DAY
PROD = Account("https://api.example/v1", "aaaaaaaaaaaaaaaa", "prod")
STAGING = Account("https://staging.example/v1", "bbbbbbbbbbbbbbbb")  # no name: its fingerprint


def rec(timestamp: int, tokens: int, model: str = "m") -> UsageRecord:
    return UsageRecord(timestamp, tokens, model)


def put(
    store: UsageStore,
    account: Account,
    day: int,
    records: list[UsageRecord],
    scope: str = "",
) -> None:
    store.replace_window(
        account, scope, day, day + DAY, records, status="complete", fetched_at=0, request_id="r"
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[UsageStore]:
    with UsageStore(tmp_path / "usage.db") as s:
        yield s


@pytest.fixture
def two(store: UsageStore) -> UsageStore:
    """The same day stored for two accounts, and for a member of the first."""
    put(store, PROD, D0, [rec(D0, 1, "a"), rec(D0 + 5, 2, "b")])
    put(store, STAGING, D0, [rec(D0 + 1, 10, "a")])
    put(store, PROD, D0 + DAY, [rec(D0 + DAY, 4, "a")])
    put(store, PROD, D0, [rec(D0 + 2, 100, "a")], scope="u1")
    return store


def test_the_same_day_of_two_accounts_is_kept_side_by_side(two: UsageStore) -> None:
    assert [rec(D0 + 1, 10, "a")] == list(two.iter_records(account=STAGING.fingerprint))
    assert [rec(D0, 1, "a"), rec(D0 + 5, 2, "b"), rec(D0 + DAY, 4, "a")] == list(
        two.iter_records(account="prod")
    )
    assert [("prod", D0), ("prod", D0 + DAY), (STAGING.fingerprint, D0)] == [
        (w.account, w.start) for w in two.windows()
    ]


def test_reads_default_to_every_account_and_to_the_organisations_own_rows(
    two: UsageStore,
) -> None:
    # Accounts in the order they were first stored, each in timestamp order.
    assert [1, 2, 4, 10] == [r.tokens for r in two.iter_records()]
    assert 4 == two.count_records()
    assert {"a": 15, "b": 2} == two.tokens_by_model()  # the member's 100 is not in it
    assert {date(1970, 4, 11): 13, date(1970, 4, 12): 4} == two.tokens_by_day()
    assert {(date(1970, 4, 11), "a"): 1} == two.tokens_by_day_and_model(D0, D0 + 1, account="prod")
    assert {"a": 100} == two.tokens_by_model(user_id="u1")
    assert {"a": 100} == two.tokens_by_model(user_id="u1", account="prod")
    assert {} == two.tokens_by_model(user_id="u1", account=STAGING.fingerprint)


def test_an_account_is_found_by_its_fingerprint_even_when_it_has_a_name(two: UsageStore) -> None:
    assert 3 == two.count_records(account=PROD.fingerprint)
    assert ["prod", "prod"] == [w.account for w in two.windows(account=PROD.fingerprint)]


@pytest.mark.parametrize(
    "read",
    [
        lambda s: s.count_records(account="nope"),
        lambda s: s.iter_records(account="nope"),
        lambda s: s.tokens_by_model(account="nope"),
        lambda s: s.tokens_by_day(account="nope"),
        lambda s: s.tokens_by_day_and_model(account="nope"),
        lambda s: s.windows(account="nope"),
        lambda s: s.export_csv(io.StringIO(), account="nope"),
        lambda s: s.export_jsonl(io.StringIO(), account="nope"),
        lambda s: s.export_parquet(io.BytesIO(), account="nope"),
    ],
)
def test_an_unknown_account_is_an_error_not_zero(two: UsageStore, read: object) -> None:
    with pytest.raises(ValueError, match=r"no account 'nope' .*accounts held: prod, bbbb"):
        read(two)  # type: ignore[operator]


def test_an_account_filter_must_be_a_string(two: UsageStore) -> None:
    with pytest.raises(TypeError, match="name or a fingerprint"):
        two.count_records(account=PROD)  # type: ignore[arg-type]


def test_accounts_lists_the_accounts_held_in_the_order_first_stored(two: UsageStore) -> None:
    assert [PROD, STAGING] == two.accounts()
    assert ["prod", STAGING.fingerprint] == [a.label for a in two.accounts()]


def test_a_name_given_later_is_recorded_and_no_name_keeps_it(store: UsageStore) -> None:
    unnamed = Account(PROD.base_url, PROD.fingerprint)
    store.register_account(unnamed)
    assert [unnamed] == store.accounts()

    store.register_account(PROD)
    store.register_account(unnamed)
    assert [PROD] == store.accounts()

    put(store, Account(PROD.base_url, PROD.fingerprint, "production"), D0, [rec(D0, 1)])
    assert ["production"] == [a.name for a in store.accounts()]
    assert ["production"] == [w.account for w in store.windows()]


def test_a_name_used_by_another_account_is_refused_and_nothing_changes(two: UsageStore) -> None:
    thief = Account(STAGING.base_url, STAGING.fingerprint, "prod")

    with pytest.raises(ValueError, match=r"'prod' is already used .* aaaaaaaaaaaaaaaa"):
        two.register_account(thief)
    with pytest.raises(ValueError, match="already used"):
        put(two, thief, D0 + 9 * DAY, [rec(D0 + 9 * DAY, 1)])

    assert [PROD, STAGING] == two.accounts()
    assert 4 == two.count_records()


@pytest.mark.parametrize(
    "name", ["", " prod", "prod ", "a\tb", "x" * 201, "0123456789abcdef", "0123456789ABCDEF"]
)
def test_names_that_are_blank_or_look_like_a_fingerprint_are_refused(
    store: UsageStore, name: str
) -> None:
    with pytest.raises(ValueError, match="account name"):
        store.register_account(Account(PROD.base_url, PROD.fingerprint, name))

    assert [] == store.accounts()


def test_coverage_is_per_account_and_member(two: UsageStore) -> None:
    prod = two.coverage(PROD, "", D0, D0 + 2 * DAY)
    other = Account("https://api.example/v1", "cccccccccccccccc")

    assert [D0, D0 + DAY] == sorted(prod)
    assert StoredWindow("prod", None, D0, D0 + DAY, "complete", 0, "r", 2, 3) == prod[D0]
    assert [D0] == list(two.coverage(STAGING, "", D0, D0 + 2 * DAY))
    assert [D0] == list(two.coverage(PROD, "u1", D0, D0 + 2 * DAY))
    assert {} == two.coverage(other, "", D0, D0 + 2 * DAY)
    assert [PROD, STAGING] == two.accounts()  # a read registers nothing


# -- exports ----------------------------------------------------------------------------------


def test_csv_export_names_the_account_and_member_of_every_record(two: UsageStore) -> None:
    out, member = io.StringIO(), io.StringIO()

    assert 4 == two.export_csv(out)
    assert 1 == two.export_csv(member, user_id="u1")

    fp = STAGING.fingerprint
    assert [
        ["timestamp", "model", "tokens", "account", "user_id"],
        [str(D0), "a", "1", "prod", ""],
        [str(D0 + 5), "b", "2", "prod", ""],
        [str(D0 + DAY), "a", "4", "prod", ""],
        [str(D0 + 1), "a", "10", fp, ""],
    ] == list(csv.reader(io.StringIO(out.getvalue())))
    assert [str(D0 + 2), "a", "100", "prod", "u1"] == list(
        csv.reader(io.StringIO(member.getvalue()))
    )[1]


def test_jsonl_export_of_one_account_has_user_id_null_for_the_organisation(
    two: UsageStore,
) -> None:
    out, member = io.StringIO(), io.StringIO()

    two.export_jsonl(out, account=STAGING.fingerprint)
    two.export_jsonl(member, user_id="u1", account="prod")

    assert [
        {"timestamp": D0 + 1, "model": "a", "tokens": 10, "account": STAGING.fingerprint}
        | {"user_id": None}
    ] == [json.loads(line) for line in out.getvalue().splitlines()]
    assert [
        {"timestamp": D0 + 2, "model": "a", "tokens": 100, "account": "prod"} | {"user_id": "u1"}
    ] == [json.loads(line) for line in member.getvalue().splitlines()]


# -- tokens and 64 bits -------------------------------------------------------------------------


@pytest.mark.parametrize("tokens", [-1, 2**63, 2**70])
def test_a_record_outside_0_to_2_63_is_refused_before_anything_is_written(
    store: UsageStore, tokens: int
) -> None:
    put(store, PROD, D0, [rec(D0, 1)])

    with pytest.raises(ValueError, match=r"0 <= tokens < 2\*\*63"):
        put(store, PROD, D0, [rec(D0, 2), rec(D0 + 1, tokens)])

    assert [rec(D0, 1)] == list(store.iter_records())


def test_a_record_outside_its_window_is_refused(store: UsageStore) -> None:
    with pytest.raises(ValueError, match="outside its window"):
        put(store, PROD, D0, [rec(D0 + DAY, 1)])

    assert 0 == store.count_records()


def test_sums_beyond_64_bits_are_exact(store: UsageStore) -> None:
    big = 2**63 - 1
    put(store, PROD, D0, [rec(D0, big, "a"), rec(D0 + 1, big, "a"), rec(D0 + 2, 1, "b")])
    put(store, STAGING, D0 + DAY, [rec(D0 + DAY, big, "a")])

    assert {"a": 3 * big, "b": 1} == store.tokens_by_model()
    assert {date(1970, 4, 11): 2 * big + 1, date(1970, 4, 12): big} == store.tokens_by_day()
    assert {
        (date(1970, 4, 11), "a"): 2 * big,
        (date(1970, 4, 11), "b"): 1,
        (date(1970, 4, 12), "a"): big,
    } == store.tokens_by_day_and_model()
    assert [2 * big + 1, big] == [w.tokens for w in store.windows()]
    assert 2 * big + 1 == store.coverage(PROD, "", D0, D0 + DAY)[D0].tokens
    assert 3 == store.count_records(account="prod")
