"""UsageStore: whole-window replacement, reads in order, summaries, exports."""

from __future__ import annotations

import csv
import importlib
import io
import json
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from _helpers import DAY

from r9s_async import (
    Account,
    StoreConflictError,
    StoredWindow,
    StoreError,
    UsageRecord,
    UsageReport,
    UsageStore,
)
from r9s_async._store import SCHEMA_VERSION

pq = importlib.import_module("pyarrow.parquet")  # the `parquet` extra; untyped

D0 = 100 * DAY  # 1970-04-11
ORG = Account("https://api.example/v1", "0123456789abcdef")  # the default account of put()


def rec(timestamp: int, tokens: int, model: str = "m") -> UsageRecord:
    return UsageRecord(timestamp, tokens, model)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[UsageStore]:
    with UsageStore(tmp_path / "usage.db") as s:
        yield s


def put(store: UsageStore, start: int, end: int, records: list[UsageRecord], **kw: object) -> None:
    options: dict[str, object] = {"status": "complete", "fetched_at": 0, "request_id": "r"}
    options.update(kw)
    account = options.pop("account", ORG)
    assert isinstance(account, Account)
    store.replace_window(
        account,
        str(options.pop("scope", "")),
        start,
        end,
        records,
        **options,  # type: ignore[arg-type]
    )


def test_a_new_store_is_a_wal_mode_sqlite_file_with_the_current_schema(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    UsageStore(path).close()

    db = sqlite3.connect(path)
    try:
        assert "wal" == db.execute("PRAGMA journal_mode").fetchone()[0]
        assert SCHEMA_VERSION == db.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    finally:
        db.close()
    assert {"records", "windows"} <= tables


def test_reopening_a_store_keeps_its_records(tmp_path: Path) -> None:
    with UsageStore.open(tmp_path / "usage.db") as first:
        put(first, D0, D0 + DAY, [rec(D0, 1)])

    with UsageStore.open(tmp_path / "usage.db") as second:
        assert [rec(D0, 1)] == list(second.iter_records())


def test_identical_records_are_all_kept_in_server_order(store: UsageStore) -> None:
    records = [rec(D0, 5, "b"), rec(D0, 5, "b"), rec(D0, 3, "a"), rec(D0 + 9, 5, "b")]

    put(store, D0, D0 + DAY, records)

    assert records == list(store.iter_records())
    assert 4 == store.count_records()


def test_replacing_a_window_replaces_all_its_records_and_its_coverage(store: UsageStore) -> None:
    put(store, D0 + 3600, D0 + DAY, [rec(D0 + 3600, 1), rec(D0 + 7200, 2)], status="recent")

    put(store, D0, D0 + DAY, [rec(D0, 7), rec(D0 + 7200, 2)], request_id="again")

    assert [rec(D0, 7), rec(D0 + 7200, 2)] == list(store.iter_records())
    assert [
        StoredWindow(ORG.fingerprint, None, D0, D0 + DAY, "complete", 0, "again", 2, 9)
    ] == store.windows()


def test_a_window_must_lie_within_one_utc_day(store: UsageStore) -> None:
    with pytest.raises(ValueError, match="one UTC day"):
        put(store, D0 + 10, D0 + DAY + 10, [])


def test_a_failed_replacement_leaves_the_previous_window_untouched(store: UsageStore) -> None:
    put(store, D0, D0 + DAY, [rec(D0, 1)])

    with pytest.raises(sqlite3.IntegrityError):
        put(store, D0, D0 + DAY, [rec(D0, 2)], status="bogus")

    assert [rec(D0, 1)] == list(store.iter_records())
    assert 1 == len(store.windows())


def test_scopes_are_kept_apart(store: UsageStore) -> None:
    put(store, D0, D0 + DAY, [rec(D0, 1)])
    put(store, D0, D0 + DAY, [rec(D0, 2)], scope="u1")

    assert [rec(D0, 1)] == list(store.iter_records())
    assert [rec(D0, 2)] == list(store.iter_records(user_id="u1"))
    assert ["u1"] == [w.user_id for w in store.windows(user_id="u1")]


def test_records_are_read_in_time_order_within_a_half_open_range(store: UsageStore) -> None:
    put(store, D0 + DAY, D0 + 2 * DAY, [rec(D0 + DAY, 3), rec(D0 + 2 * DAY - 1, 4)])
    put(store, D0, D0 + DAY, [rec(D0, 1), rec(D0 + DAY - 1, 2)])

    assert [1, 2, 3, 4] == [r.tokens for r in store.iter_records()]
    assert [2, 3] == [r.tokens for r in store.iter_records(D0 + 1, D0 + DAY + 1)]
    assert [3, 4] == [r.tokens for r in store.iter_records(date(1970, 4, 12), date(1970, 4, 13))]
    assert [] == list(store.iter_records(D0 + DAY + 1, D0 + DAY + 2))
    with pytest.raises(ValueError, match="is empty"):
        store.iter_records(D0 + DAY, D0 + DAY)


def test_a_fractional_exclusive_end_keeps_the_second_it_falls_in(store: UsageStore) -> None:
    put(store, D0, D0 + DAY, [rec(D0 + 5, 1)])
    end = datetime.fromtimestamp(D0 + 5, tz=UTC).replace(microsecond=500_000)

    assert [rec(D0 + 5, 1)] == list(store.iter_records(D0, end))


def test_reading_streams_through_many_batches_in_order(store: UsageStore) -> None:
    records = [rec(D0 + i % DAY, 1, f"m{i % 3}") for i in range(12_001)]
    records.sort(key=lambda r: r.timestamp)
    put(store, D0, D0 + DAY, records)

    assert records == list(store.iter_records())


def test_summaries_match_the_same_records_as_a_report(store: UsageStore) -> None:
    day1 = [rec(D0, 5, "b"), rec(D0, 5, "b"), rec(D0 + 60, 4, "a")]
    day2 = [rec(D0 + DAY, 1, "a"), rec(D0 + DAY + 1, 20, "c")]
    put(store, D0, D0 + DAY, day1)
    put(store, D0 + DAY, D0 + 2 * DAY, day2)
    report = UsageReport(day1 + day2, 35, D0, D0 + 2 * DAY)

    assert {"c": 20, "b": 10, "a": 5} == store.tokens_by_model()
    assert ["c", "b", "a"] == list(store.tokens_by_model())
    assert report.tokens_by_model() == store.tokens_by_model()
    assert report.tokens_by_day() == store.tokens_by_day()
    assert report.tokens_by_day_and_model() == store.tokens_by_day_and_model()
    assert {date(1970, 4, 12): 21} == store.tokens_by_day(D0 + DAY, D0 + 2 * DAY)


def test_bad_ranges_and_user_ids_are_refused_before_reading(store: UsageStore) -> None:
    with pytest.raises(ValueError, match="before start"):
        store.iter_records(D0 + 1, D0)
    with pytest.raises(TypeError):
        store.tokens_by_model("2025-01-01")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="user_id"):
        store.count_records(user_id="")


def test_a_closed_store_refuses_to_work_and_closes_twice_quietly(tmp_path: Path) -> None:
    store = UsageStore(tmp_path / "usage.db")
    store.close()
    store.close()

    assert store.closed
    assert "closed" in repr(store)
    with pytest.raises(ValueError, match="closed"):
        store.count_records()
    with pytest.raises(ValueError, match="closed"), store:
        pass


def test_opening_without_create_needs_an_existing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no usage store"):
        UsageStore(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()


def test_a_sqlite_file_of_another_application_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    other = sqlite3.connect(path)
    other.execute("CREATE TABLE t (x)")
    other.commit()
    other.close()

    with pytest.raises(StoreError, match="not an r9s_async usage store") as caught:
        UsageStore(path)
    assert str(path) == caught.value.path


def test_a_store_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    UsageStore(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()

    with pytest.raises(StoreError, match=r"schema version 3; .* reads schema version 2"):
        UsageStore(path)


def test_one_store_can_be_used_from_several_threads(store: UsageStore) -> None:
    errors: list[BaseException] = []

    def write(day: int) -> None:
        try:
            put(store, D0 + day * DAY, D0 + (day + 1) * DAY, [rec(D0 + day * DAY, day)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(d,)) for d in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert [] == errors
    assert list(range(8)) == [r.tokens for r in store.iter_records()]


# -- exports ----------------------------------------------------------------------------------


@pytest.fixture
def filled(store: UsageStore) -> UsageStore:
    put(store, D0, D0 + DAY, [rec(D0, 5, "b"), rec(D0, 5, "b"), rec(D0 + 60, 4, 'a,"x"')])
    put(store, D0 + DAY, D0 + 2 * DAY, [rec(D0 + DAY, 1, "a")])
    return store


def test_csv_export_has_the_header_and_rows_in_time_order(filled: UsageStore) -> None:
    out = io.StringIO()

    count = filled.export_csv(out)

    assert 4 == count
    fp = ORG.fingerprint
    assert [
        ["timestamp", "model", "tokens", "account", "user_id"],
        [str(D0), "b", "5", fp, ""],
        [str(D0), "b", "5", fp, ""],
        [str(D0 + 60), 'a,"x"', "4", fp, ""],
        [str(D0 + DAY), "a", "1", fp, ""],
    ] == list(csv.reader(io.StringIO(out.getvalue())))


def test_jsonl_export_is_one_object_per_record(filled: UsageStore) -> None:
    out = io.StringIO()

    count = filled.export_jsonl(out, D0 + 1, D0 + 2 * DAY)

    assert 2 == count
    org = {"account": ORG.fingerprint, "user_id": None}
    assert [
        {"timestamp": D0 + 60, "model": 'a,"x"', "tokens": 4, **org},
        {"timestamp": D0 + DAY, "model": "a", "tokens": 1, **org},
    ] == [json.loads(line) for line in out.getvalue().splitlines()]


def test_parquet_export_holds_the_records_with_a_utc_timestamp(
    filled: UsageStore, tmp_path: Path
) -> None:
    path = tmp_path / "usage.parquet"

    count = filled.export_parquet(path)

    table = pq.read_table(path)
    assert 4 == count
    assert ["timestamp", "model", "tokens", "account", "user_id"] == table.column_names
    assert "UTC" == table.schema.field("timestamp").type.tz
    assert ["string", "string"] == [str(table.schema.field(c).type) for c in ("account", "user_id")]
    org = {"account": ORG.fingerprint, "user_id": None}
    at = [datetime.fromtimestamp(t, tz=UTC) for t in (D0, D0, D0 + 60, D0 + DAY)]
    assert [
        {"timestamp": at[0], "model": "b", "tokens": 5, **org},
        {"timestamp": at[1], "model": "b", "tokens": 5, **org},
        {"timestamp": at[2], "model": 'a,"x"', "tokens": 4, **org},
        {"timestamp": at[3], "model": "a", "tokens": 1, **org},
    ] == [{**row, "timestamp": row["timestamp"].astimezone(UTC)} for row in table.to_pylist()]


def test_parquet_export_of_nothing_is_an_empty_table(store: UsageStore) -> None:
    out = io.BytesIO()

    assert 0 == store.export_parquet(out)

    assert 0 == pq.read_table(io.BytesIO(out.getvalue())).num_rows


def test_a_report_converts_to_a_pandas_dataframe() -> None:
    report = UsageReport([rec(D0, 5, "b"), rec(D0, 5, "b"), rec(D0 + 60, 4, "a")], 14, D0, D0)

    frame = report.to_pandas()

    assert ["timestamp", "model", "tokens"] == list(frame.columns)
    assert "datetime64[s, UTC]" == str(frame["timestamp"].dtype)
    assert "int64" == str(frame["tokens"].dtype)
    assert [
        (datetime.fromtimestamp(D0, tz=UTC), "b", 5),
        (datetime.fromtimestamp(D0, tz=UTC), "b", 5),
        (datetime.fromtimestamp(D0 + 60, tz=UTC), "a", 4),
    ] == [(t.to_pydatetime(), m, int(n)) for t, m, n in frame.itertuples(index=False)]


def test_a_write_planned_before_another_writer_changed_the_day_is_refused(
    store: UsageStore,
) -> None:
    planned_against = None  # the day was empty when both writers planned
    put(store, D0, D0 + DAY, [rec(D0, 1)], previous=planned_against)

    with pytest.raises(StoreConflictError, match="run the backfill again"):
        put(store, D0, D0 + DAY, [rec(D0 + 5, 2)], previous=planned_against)

    assert [rec(D0, 1)] == list(store.iter_records())


def test_a_write_planned_against_the_current_day_replaces_it(store: UsageStore) -> None:
    put(store, D0, D0 + DAY, [rec(D0, 1)], status="recent", fetched_at=7)
    (current,) = store.windows()

    put(store, D0, D0 + DAY, [rec(D0, 3)], previous=current)

    assert [rec(D0, 3)] == list(store.iter_records())


def test_a_read_sees_one_snapshot_while_days_are_replaced(store: UsageStore) -> None:
    per_day = 3_000  # two days are more than one read batch
    days = [D0, D0 + DAY]
    for day in days:
        put(store, day, day + DAY, [rec(day + i, 1) for i in range(per_day)])
    reading = store.iter_records()
    first = next(reading)

    for day in days:  # a refresh rewrites both days while the read is under way
        put(store, day, day + DAY, [rec(day + i, 2) for i in range(per_day)])
    rest = list(reading)

    assert [1] * (2 * per_day) == [r.tokens for r in [first, *rest]]
    assert [2] * (2 * per_day) == [r.tokens for r in store.iter_records()]
