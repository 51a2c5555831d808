"""Price tables: the TOML format, which price applies on which day, and exact costs."""

from __future__ import annotations

import pickle
from datetime import date, datetime, timedelta
from decimal import Decimal
from importlib.resources import files
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from r9s_async import UsageRecord, UsageReport
from r9s_async._exceptions import ConfigurationError
from r9s_async._prices import (
    ESTIMATE_NOTE,
    CostLine,
    Price,
    PriceTable,
    PriceTableError,
    display_amount,
)
from r9s_async.testing._fake import DEFAULT_MODELS

D = Decimal
FEB28, MAR1, MAR2 = date(2025, 2, 28), date(2025, 3, 1), date(2025, 3, 2)

TABLE = """
currency = "USD"

[[price]]
model = "gpt-4o-mini"
per_million_tokens = "0.60"

[[price]]
model = "gpt-4o-mini"
per_million_tokens = "0.45"
valid_from = 2025-03-01

[[price]]
model = "claude-*"
per_million_tokens = "15"

[[price]]
model = "claude-sonnet-*"
per_million_tokens = "3.00"

[[price]]
model = "claude-sonnet-4"
per_million_tokens = "2.50"
valid_from = 2025-03-01
"""


@pytest.fixture
def table() -> PriceTable:
    return PriceTable.from_string(TABLE, source="prices.toml")


def error_for(text: str) -> PriceTableError:
    with pytest.raises(PriceTableError) as caught:
        PriceTable.from_string(text, source="prices.toml")
    return caught.value


def one_entry(body: str) -> str:
    return f'currency = "USD"\n[[price]]\n{body}\n'


# -- Which price applies ------------------------------------------------------------------------


def test_each_day_is_priced_at_the_entry_in_force_that_day(table: PriceTable) -> None:
    assert D("0.60") == table.price("gpt-4o-mini", FEB28)
    assert D("0.45") == table.price("gpt-4o-mini", MAR1)
    assert D("0.45") == table.price("gpt-4o-mini", date(2030, 1, 1))


def test_an_exact_name_beats_patterns_from_its_valid_from_on(table: PriceTable) -> None:
    assert D("2.50") == table.price("claude-sonnet-4", MAR1)


def test_before_an_exact_entry_is_in_force_the_best_pattern_prices_the_day(
    table: PriceTable,
) -> None:
    assert D("3.00") == table.price("claude-sonnet-4", FEB28)


def test_among_patterns_the_longest_literal_part_wins(table: PriceTable) -> None:
    assert D("3.00") == table.price("claude-sonnet-3.7", MAR1)  # claude-sonnet-* (14) > claude-*
    assert D("15") == table.price("claude-opus-4", MAR1)


def test_a_star_matches_any_run_of_characters_even_none_and_nothing_else_is_special() -> None:
    table = PriceTable("USD", [Price("a*b.c", D(1)), Price("x?", D(2))])

    assert D(1) == table.price("ab.c", MAR1)
    assert D(1) == table.price("a-long-middle-b.c", MAR1)
    assert None is table.price("abxc", MAR1)  # "." is a literal dot
    assert D(2) == table.price("x?", MAR1)
    assert None is table.price("xy", MAR1)  # "?" is a literal question mark


def test_patterns_match_the_whole_name_and_are_case_sensitive(table: PriceTable) -> None:
    assert None is table.price("my-claude-3", MAR1)
    assert None is table.price("Claude-3", MAR1)


def test_patterns_equally_long_are_tied_by_which_comes_first_in_the_table() -> None:
    first = PriceTable("USD", [Price("ab*", D(1)), Price("*yz", D(2))])
    second = PriceTable("USD", [Price("*yz", D(2)), Price("ab*", D(1))])

    assert D(1) == first.price("abyz", MAR1)
    assert D(2) == second.price("abyz", MAR1)


def test_a_lone_star_is_a_default_price_that_anything_more_specific_beats() -> None:
    table = PriceTable("USD", [Price("*", D("9.99")), Price("gpt-*", D(5))])

    assert D("9.99") == table.price("some-new-model", MAR1)
    assert D(5) == table.price("gpt-5", MAR1)


def test_a_model_no_entry_covers_is_unpriced_not_free(table: PriceTable) -> None:
    assert None is table.price("deepseek-chat", MAR1)
    assert None is table.cost("deepseek-chat", 1_000_000, MAR1)


def test_before_the_first_valid_from_a_model_is_unpriced() -> None:
    table = PriceTable("USD", [Price("m", D(1), valid_from=MAR1)])

    assert None is table.price("m", FEB28)
    assert D(1) == table.price("m", MAR1)


def test_a_zero_price_is_free_which_is_not_unpriced() -> None:
    table = PriceTable.from_string(one_entry('model = "local"\nper_million_tokens = "0"'))

    assert D(0) == table.cost("local", 5_000, MAR1)


def test_price_refuses_a_datetime_for_a_day(table: PriceTable) -> None:
    with pytest.raises(TypeError, match=r"datetime\.date"):
        table.price("gpt-4o-mini", datetime(2025, 3, 1))


def test_cost_refuses_tokens_that_are_not_an_int(table: PriceTable) -> None:
    with pytest.raises(TypeError, match="tokens must be an int"):
        table.cost("gpt-4o-mini", 1.5, MAR1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tokens must be an int"):
        table.cost("gpt-4o-mini", True, MAR1)


# -- Exact costs --------------------------------------------------------------------------------


def test_a_cost_is_tokens_times_price_over_a_million_exactly(table: PriceTable) -> None:
    assert D("0.0000006") == table.cost("gpt-4o-mini", 1, FEB28)
    assert D("0.9") == table.cost("gpt-4o-mini", 1_500_000, FEB28)
    assert D("0.0007625") == table.cost("claude-sonnet-4", 305, MAR1)


def test_huge_counts_and_many_digits_are_never_rounded() -> None:
    table = PriceTable("USD", [Price("m", D("0.123456789012345678901234567891"))])
    tokens = 987_654_321_987_654_321_987_654_321

    actual = table.cost("m", tokens, MAR1)

    # Integer arithmetic, then the decimal point placed by hand: 30 price decimals + 6.
    assert D(f"{tokens * 123456789012345678901234567891}E-36") == actual
    rounded = D(tokens) * D("0.123456789012345678901234567891") / D(10**6)  # 28 digits
    assert rounded != actual


def test_costs_of_a_report_equal_a_hand_computation_across_a_price_change_and_patterns(
    table: PriceTable,
) -> None:
    feb28 = 1_740_700_800  # 2025-02-28T00:00:00Z
    day = 86_400
    report = UsageReport(
        [
            UsageRecord(feb28 + 10, 1_000_000, "gpt-4o-mini"),
            UsageRecord(feb28 + 20, 500_000, "gpt-4o-mini"),
            UsageRecord(feb28 + 30, 200_000, "claude-sonnet-4"),
            UsageRecord(feb28 + day, 2_000_000, "gpt-4o-mini"),
            UsageRecord(feb28 + day + 5, 200_000, "claude-sonnet-4"),
            UsageRecord(feb28 + day + 6, 40_000, "claude-opus-4"),
            UsageRecord(feb28 + day + 7, 12_345, "deepseek-chat"),
            UsageRecord(feb28 + 2 * day, 3, "deepseek-chat"),
        ],
        3_952_348,
        feb28,
        feb28 + 3 * day,
    )

    breakdown = table.costs(report.tokens_by_day_and_model())

    feb28_mini = D(1_500_000) * D("0.60") / 1_000_000  # 0.90
    feb28_sonnet = D(200_000) * D("3.00") / 1_000_000  # pattern claude-sonnet-*: 0.60
    mar1_mini = D(2_000_000) * D("0.45") / 1_000_000  # new price: 0.90
    mar1_sonnet = D(200_000) * D("2.50") / 1_000_000  # exact entry now in force: 0.50
    mar1_opus = D(40_000) * D(15) / 1_000_000  # claude-*: 0.60
    assert [
        CostLine(FEB28, "claude-sonnet-4", 200_000, D("3.00"), feb28_sonnet),
        CostLine(FEB28, "gpt-4o-mini", 1_500_000, D("0.60"), feb28_mini),
        CostLine(MAR1, "claude-opus-4", 40_000, D(15), mar1_opus),
        CostLine(MAR1, "claude-sonnet-4", 200_000, D("2.50"), mar1_sonnet),
        CostLine(MAR1, "deepseek-chat", 12_345, None, None),
        CostLine(MAR1, "gpt-4o-mini", 2_000_000, D("0.45"), mar1_mini),
        CostLine(MAR2, "deepseek-chat", 3, None, None),
    ] == list(breakdown.lines)
    assert D("3.50") == breakdown.total
    assert {
        "claude-opus-4": D("0.60"),
        "claude-sonnet-4": D("1.10"),
        "gpt-4o-mini": D("1.80"),
    } == breakdown.by_model()
    assert {FEB28: D("1.50"), MAR1: D("2.00")} == breakdown.by_day()  # MAR2: unpriced only
    assert {"deepseek-chat": 12_348} == breakdown.unpriced_by_model()
    assert 12_348 == breakdown.unpriced_tokens
    assert 3_940_000 == breakdown.priced_tokens
    assert report.total_tokens == breakdown.priced_tokens + breakdown.unpriced_tokens
    assert "USD" == breakdown.currency


def test_a_model_priced_on_some_days_counts_its_priced_part_and_lists_the_rest() -> None:
    table = PriceTable("USD", [Price("m", D(2), valid_from=MAR1)])

    breakdown = table.costs({(FEB28, "m"): 1_000_000, (MAR1, "m"): 3_000_000})

    assert {"m": D(6)} == breakdown.by_model()
    assert {"m": 1_000_000} == breakdown.unpriced_by_model()
    assert D(6) == breakdown.total


def test_nothing_priced_totals_zero_with_every_token_listed_as_unpriced() -> None:
    table = PriceTable("USD", [Price("other", D(1))])

    breakdown = table.costs({(MAR1, "m"): 7})

    assert D(0) == breakdown.total
    assert {} == breakdown.by_model()
    assert {} == breakdown.by_day()
    assert {"m": 7} == breakdown.unpriced_by_model()


def test_costs_per_account_equal_a_hand_computation_and_add_up() -> None:
    table = PriceTable.from_string(TABLE)
    mar1 = 1_740_787_200  # 2025-03-01T00:00:00Z
    per_account = {
        "team-a": [UsageRecord(mar1, 1_000_000, "gpt-4o-mini")],
        "team-b": [UsageRecord(mar1 + 1, 100_000, "claude-sonnet-4"), UsageRecord(mar1, 1, "x")],
    }

    breakdowns = {
        account: table.costs(
            UsageReport(
                records, sum(r.tokens for r in records), mar1, mar1 + 86_400
            ).tokens_by_day_and_model()
        )
        for account, records in per_account.items()
    }

    assert D(1_000_000) * D("0.45") / 1_000_000 == breakdowns["team-a"].total
    assert D(100_000) * D("2.50") / 1_000_000 == breakdowns["team-b"].total
    assert {"x": 1} == breakdowns["team-b"].unpriced_by_model()
    assert D("0.70") == sum(b.total for b in breakdowns.values())


@given(
    st.dictionaries(
        st.tuples(
            st.dates(date(2025, 2, 1), date(2025, 4, 1)),
            st.sampled_from(["gpt-4o-mini", "claude-sonnet-4", "claude-x", "unknown"]),
        ),
        st.integers(0, 10**12),
    ),
    st.dates(date(2025, 2, 1), date(2025, 4, 1)),
)
def test_costs_are_additive_over_any_split_of_the_days(
    cells: dict[tuple[date, str], int], split: date
) -> None:
    table = PriceTable.from_string(TABLE)
    before = {k: v for k, v in cells.items() if k[0] < split}
    after = {k: v for k, v in cells.items() if k[0] >= split}

    whole = table.costs(cells)
    parts = table.costs(before), table.costs(after)

    assert whole.total == parts[0].total + parts[1].total
    assert whole.unpriced_tokens == parts[0].unpriced_tokens + parts[1].unpriced_tokens
    assert whole.total == sum(whole.by_day().values(), D(0))
    assert whole.total == sum(whole.by_model().values(), D(0))


@given(st.integers(0, 10**15), st.integers(0, 10**15))
def test_the_cost_of_two_counts_is_the_sum_of_their_costs(a: int, b: int) -> None:
    table = PriceTable("USD", [Price("m", D("0.0123"))])

    assert table.cost("m", a + b, MAR1) == table.cost("m", a, MAR1) + table.cost("m", b, MAR1)  # type: ignore[operator]


def test_display_rounds_half_to_even_only_when_asked() -> None:
    assert "0.12" == display_amount(D("0.125"))
    assert "0.14" == display_amount(D("0.135"))
    assert "1000.0" == display_amount(D("1E+3"), 1)
    assert "0.00" == display_amount(D("0.0000006"))


def test_the_estimate_note_says_the_price_is_blended() -> None:
    assert "blended" in ESTIMATE_NOTE
    assert "input and output" in ESTIMATE_NOTE


# -- Loading ------------------------------------------------------------------------------------


def test_load_reads_a_file_and_names_it_as_the_source(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(TABLE, encoding="utf-8")

    table = PriceTable.load(path)

    assert PriceTable.from_string(TABLE) == table  # the source is not part of equality
    assert str(path) == table.source
    assert 5 == len(table.prices)
    assert Price("gpt-4o-mini", D("0.45"), MAR1) == table.prices[1]


def test_an_integer_price_is_exact_and_accepted() -> None:
    table = PriceTable.from_string(one_entry('model = "m"\nper_million_tokens = 3'))

    assert D(3) == table.price("m", MAR1)


def test_the_example_table_loads_and_prices_every_model_of_the_fake_api() -> None:
    path = Path(str(files("r9s_async") / "example_prices.toml"))

    table = PriceTable.load(path)

    assert "USD" == table.currency
    assert all(table.price(model, MAR1) is not None for model in DEFAULT_MODELS)
    assert "EXAMPLE" in path.read_text(encoding="utf-8")
    assert any(p.is_pattern for p in table.prices)
    assert table.price("deepseek-chat", FEB28) != table.price("deepseek-chat", MAR1)


def test_a_table_equals_one_built_from_its_entries() -> None:
    table = PriceTable.from_string(one_entry('model = "m"\nper_million_tokens = "1.5"'))

    assert PriceTable("USD", [Price("m", D("1.5"))]) == table
    assert 3 == Price("ab*c*", D(1)).literal_length


def test_building_a_table_directly_refuses_two_prices_on_the_same_day() -> None:
    with pytest.raises(ValueError, match="'m'"):
        PriceTable("USD", [Price("m", D(1), MAR1), Price("m", D(2), MAR1)])


# -- Malformed tables: each error names the file, the entry and the field ------------------------


def test_a_float_price_is_refused_with_the_advice_to_quote_it() -> None:
    error = error_for(one_entry('model = "gpt-4o"\nper_million_tokens = 0.6'))

    assert (
        "prices.toml: price entry 1 (model 'gpt-4o'): per_million_tokens: a TOML float is not "
        'exact; quote it: per_million_tokens = "0.6"'
    ) == str(error)
    assert ("prices.toml", 1, "gpt-4o", "per_million_tokens") == (
        error.source,
        error.entry,
        error.model,
        error.field,
    )


@pytest.mark.parametrize(
    ("body", "field", "problem"),
    [
        ('model = "m"\nper_million_tokens = "abc"', "per_million_tokens", "decimal number"),
        ('model = "m"\nper_million_tokens = "NaN"', "per_million_tokens", "decimal number"),
        ('model = "m"\nper_million_tokens = "Infinity"', "per_million_tokens", "decimal number"),
        ('model = "m"\nper_million_tokens = "-0.5"', "per_million_tokens", "negative"),
        ('model = "m"\nper_million_tokens = true', "per_million_tokens", "decimal string"),
        ('model = "m"', "per_million_tokens", "missing"),
        ('model = "m"\nper_million_tokens = "1"\nvalid_from = "2025-01-01"', "valid_from", "date"),
        (
            'model = "m"\nper_million_tokens = "1"\nvalid_from = 2025-01-01T00:00:00Z',
            "valid_from",
            "without a time",
        ),
        ('model = "m"\nper_million_tokens = "1"\nprice = "1"', "price", "unknown key"),
    ],
)
def test_a_malformed_entry_names_the_file_the_entry_its_model_and_the_field(
    body: str, field: str, problem: str
) -> None:
    text = one_entry('model = "ok"\nper_million_tokens = "1"') + f"[[price]]\n{body}\n"

    error = error_for(text)

    assert str(error).startswith(f"prices.toml: price entry 2 (model 'm'): {field}: ")
    assert problem in error.problem
    assert (2, "m", field) == (error.entry, error.model, error.field)


@pytest.mark.parametrize(
    ("body", "problem"),
    [('per_million_tokens = "1"', "missing"), ('model = ""\nper_million_tokens = "1"', "empty")],
)
def test_an_entry_without_a_usable_model_is_named_by_its_position(body: str, problem: str) -> None:
    error = error_for(one_entry(body))

    assert str(error).startswith("prices.toml: price entry 1: model: ")
    assert problem in error.problem


def test_two_entries_for_the_same_model_and_day_name_both() -> None:
    entry = '[[price]]\nmodel = "m"\nper_million_tokens = "1"\nvalid_from = 2025-03-01\n'
    error = error_for('currency = "USD"\n' + entry + entry)

    assert (
        "prices.toml: price entry 2 (model 'm'): valid_from: same model and 2025-03-01 as entry 1"
    ) == str(error)


def test_two_undated_entries_for_the_same_model_are_refused() -> None:
    entry = '[[price]]\nmodel = "m"\nper_million_tokens = "1"\n'

    assert (
        "same model and no valid_from as entry 1"
        == error_for('currency = "USD"\n' + entry + entry).problem
    )


@pytest.mark.parametrize(
    ("text", "field", "problem"),
    [
        ('[[price]]\nmodel = "m"\nper_million_tokens = "1"\n', "currency", "missing"),
        (
            'currency = "usd"\n[[price]]\nmodel = "m"\nper_million_tokens = "1"\n',
            "currency",
            "3-letter",
        ),
        (
            'currency = 840\n[[price]]\nmodel = "m"\nper_million_tokens = "1"\n',
            "currency",
            "3-letter",
        ),
        ('currency = "USD"\n', "price", "no [[price]]"),
        ('currency = "USD"\nprice = "1"\n', "price", "[[price]] tables"),
        ('currency = "USD"\ncurency = "EUR"\n', "curency", "unknown key"),
    ],
)
def test_a_malformed_table_names_the_file_and_the_field(
    text: str, field: str, problem: str
) -> None:
    error = error_for(text)

    assert str(error).startswith(f"prices.toml: {field}: ")
    assert problem in error.problem
    assert (None, field) == (error.entry, error.field)


def test_text_that_is_not_toml_is_an_error_naming_the_file_and_the_line() -> None:
    error = error_for('currency = "USD"\n[[price]\n')

    assert str(error).startswith("prices.toml: not valid TOML (")
    assert "line 2" in str(error)


def test_a_missing_file_is_a_configuration_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"

    with pytest.raises(ConfigurationError, match=r"nope\.toml: cannot read the file"):
        PriceTable.load(path)


def test_a_file_that_is_not_utf8_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('currency = "USD" # café'.encode("latin-1"))

    with pytest.raises(PriceTableError, match=r"latin1\.toml: not UTF-8 text"):
        PriceTable.load(path)


def test_a_price_table_error_survives_pickling_with_its_fields() -> None:
    error = error_for(one_entry('model = "m"\nper_million_tokens = 1.0'))

    copy = pickle.loads(pickle.dumps(error))

    assert (str(error), error.entry, error.model, error.field) == (
        str(copy),
        copy.entry,
        copy.model,
        copy.field,
    )


def test_the_day_after_the_last_change_keeps_the_last_price(table: PriceTable) -> None:
    assert D("0.45") == table.price("gpt-4o-mini", MAR1 + timedelta(days=10_000))
