"""The exporter: the metrics a store gives, the textfile, the background sync, the command."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
import time
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from _exporter_sample import (
    DAYS,
    Expected,
    clean_env,
    exporter_process,
    fill_store,
    of,
    owned_tokens,
    parse,
    scrape,
)
from _helpers import D0, DAY, eventually, make_client
from prometheus_client.registry import CollectorRegistry

from r9s_async import Balance, UsageStore
from r9s_async._exporter import (
    METRIC_NAMES,
    SyncState,
    UsageCollector,
    balance_recorder,
    make_registry,
    render_metrics,
    run_sync,
    serve,
    store_balances,
    sync_start,
    write_textfile,
)
from r9s_async._prices import PriceTable
from r9s_async.testing import TEST_API_KEY, FakeR9sAPI, Fault

PRICES = PriceTable.from_string(
    'currency = "EUR"\n'
    '[[price]]\nmodel = "gpt-4o-mini"\nper_million_tokens = "0.60"\n'
    '[[price]]\nmodel = "gpt-4o"\nper_million_tokens = "10.00"\n'
)


@pytest.fixture
async def filled(tmp_path: Path) -> tuple[str, Expected]:
    db = str(tmp_path / "usage.db")
    return db, await fill_store(db)


def scrape_store(db: str, *, stored_balances: bool = False, **options: object) -> str:
    with UsageStore(db, create=False) as store:
        if stored_balances:
            options["balances"] = store_balances(store)
        registry = make_registry(UsageCollector(store, **options))  # type: ignore[arg-type]
        return render_metrics(registry).decode()


def store_balance_readings(db: str, readings: dict[str, list[tuple[int, str, str]]]) -> None:
    """Keep (time, balance, credit limit) readings of each account (by label) in the store."""
    with UsageStore(db, create=False) as store:
        accounts = {account.label: account for account in store.accounts()}
        for label, points in readings.items():
            for taken_at, balance, credit_limit in points:
                reading = Balance(
                    Decimal(balance), "USD", Decimal(0), Decimal(credit_limit), Decimal(0)
                )
                store.record_balance(accounts[label], reading, taken_at=taken_at)


# -- the collector ----------------------------------------------------------------------------


async def test_settled_days_are_counted_and_recent_days_are_a_gauge(
    filled: tuple[str, Expected],
) -> None:
    db, expected = filled

    samples = parse(scrape_store(db))

    assert {k: float(v) for k, v in expected.settled.items()} == of(
        samples, "r9s_usage_tokens_total"
    )
    assert {k: float(v) for k, v in expected.recent.items()} == of(
        samples, "r9s_usage_recent_tokens"
    )
    assert {(): 1.0} == of(samples, "r9s_up")


async def test_a_members_backfill_is_not_counted_again(filled: tuple[str, Expected]) -> None:
    db, _ = filled
    with UsageStore(db, create=False) as store:
        member_tokens = sum(w.tokens for w in store.windows(user_id="7"))
        organisation = sum(w.tokens for w in store.windows())

    samples = parse(scrape_store(db))
    exported = sum(of(samples, "r9s_usage_tokens_total").values()) + sum(
        of(samples, "r9s_usage_recent_tokens").values()
    )

    assert member_tokens > 0
    assert organisation == exported


async def test_no_label_is_a_user_id_or_a_day(filled: tuple[str, Expected]) -> None:
    db, _ = filled

    samples = parse(scrape_store(db, prices=PRICES))

    names = {name for (name, labels) in samples for name, _ in labels}
    assert {"account", "model", "currency"} == names


async def test_the_last_sync_is_the_newest_stored_window(filled: tuple[str, Expected]) -> None:
    db, _ = filled
    with UsageStore(db, create=False) as store:
        newest = {
            a.label: float(max(w.fetched_at for w in store.windows(account=a.label)))
            for a in store.accounts()
        }

    samples = parse(scrape_store(db))

    assert {(k,): v for k, v in newest.items()} == of(
        samples, "r9s_usage_last_sync_timestamp_seconds"
    )


async def test_with_prices_the_settled_days_cost_is_a_counter_per_priced_model(
    filled: tuple[str, Expected],
) -> None:
    db, expected = filled
    per_million = {"gpt-4o-mini": Decimal("0.60"), "gpt-4o": Decimal("10.00")}
    costs = {
        (account, "EUR", model): float(tokens * per_million[model] / 1_000_000)
        for (account, model), tokens in expected.settled.items()
        if model in per_million
    }

    samples = parse(scrape_store(db, prices=PRICES))

    assert costs == of(samples, "r9s_usage_estimated_cost_total")
    assert {} == of(parse(scrape_store(db)), "r9s_usage_estimated_cost_total")


async def test_a_day_that_settles_moves_from_the_gauge_into_the_counter(tmp_path: Path) -> None:
    db = str(tmp_path / "usage.db")
    api = FakeR9sAPI()
    end = D0 + DAYS * DAY
    async with api.serve() as url, make_client(url) as client:
        await client.backfill(D0, end, db=db, refresh_recent=time.time() - D0 - 2.5 * DAY)
        before = parse(scrape_store(db))
        # Fetched again with no refresh window: the recent days are complete now.
        await client.backfill(D0, end, db=db, refresh_recent=0)
    after = parse(scrape_store(db))

    settled_before = of(before, "r9s_usage_tokens_total")
    recent_before = of(before, "r9s_usage_recent_tokens")
    assert {k: float(v) for k, v in owned_tokens(api, D0, end).items()} == {
        model: v for (_, model), v in of(after, "r9s_usage_tokens_total").items()
    }
    assert recent_before  # there were recent days to settle
    assert {k: settled_before[k] + recent_before[k] for k in settled_before} == of(
        after, "r9s_usage_tokens_total"
    )
    assert {} == of(after, "r9s_usage_recent_tokens")


async def test_every_exported_name_is_a_known_metric(filled: tuple[str, Expected]) -> None:
    db, _ = filled
    state = SyncState()
    state.watch("prod")

    now = D0 + 7 * DAY + 3600
    store_balance_readings(db, SPENDING)
    samples = parse(
        scrape_store(db, prices=PRICES, sync=state, stored_balances=True, now=lambda: now)
    )

    assert METRIC_NAMES == {name for name, _ in samples}


def test_an_unreadable_store_answers_up_0_and_no_usage(tmp_path: Path) -> None:
    db = str(tmp_path / "usage.db")
    UsageStore(db).close()
    store = UsageStore(db, create=False)
    collector = UsageCollector(store)
    registry = make_registry(collector)
    store.close()  # every read now fails

    samples = parse(render_metrics(registry).decode())

    assert {("r9s_up", ()): 0.0} == samples
    assert collector.store_read is False


# -- balances ---------------------------------------------------------------------------------


# 70 spent over the 7 days before 2024-10-11, so a burn of 10 a day.
SPENDING = {"prod": [(D0, "170", "20"), (D0 + 7 * DAY, "100", "20")]}


async def test_balance_credit_limit_and_runway_come_from_the_snapshots(
    filled: tuple[str, Expected],
) -> None:
    db, _ = filled
    today = date(2024, 10, 11)  # D0 + 7 days
    now = (today.toordinal() - date(1970, 1, 1).toordinal()) * DAY + 3600

    store_balance_readings(db, SPENDING)
    samples = parse(scrape_store(db, stored_balances=True, now=lambda: now))

    assert {("prod", "USD"): 100.0} == of(samples, "r9s_balance")
    assert {("prod", "USD"): 20.0} == of(samples, "r9s_credit_limit")
    assert {("prod",): 12.0 * DAY} == of(samples, "r9s_balance_runway_seconds")  # 120 / 10


# No spending over the 7 days (a runway without end), or one reading (the burn unknown).
FLAT = {"prod": [(D0, "50", "0"), (D0 + 7 * DAY, "50", "0")], "staging": [(D0, "50", "0")]}


async def test_no_spending_is_an_infinite_runway_and_an_unknown_burn_none(
    filled: tuple[str, Expected],
) -> None:
    db, _ = filled
    now = D0 + 7 * DAY + 3600

    store_balance_readings(db, FLAT)
    samples = parse(scrape_store(db, stored_balances=True, now=lambda: now))

    assert {("prod",): float("inf")} == of(samples, "r9s_balance_runway_seconds")
    assert {("prod", "USD"): 50.0, ("staging", "USD"): 50.0} == of(samples, "r9s_balance")


async def test_without_a_balance_source_there_are_no_balance_metrics(
    filled: tuple[str, Expected],
) -> None:
    db, _ = filled

    names = {name for name, _ in parse(scrape_store(db))}

    assert set() == names & {"r9s_balance", "r9s_credit_limit", "r9s_balance_runway_seconds"}


# -- the textfile ----------------------------------------------------------------------------


async def test_the_textfile_is_a_scrape_written_whole(
    filled: tuple[str, Expected], tmp_path: Path
) -> None:
    db, _ = filled
    out = tmp_path / "textfile" / "r9s.prom"
    out.parent.mkdir()
    out.write_text("old\n")

    with UsageStore(db, create=False) as store:
        registry = make_registry(UsageCollector(store, prices=PRICES))
        write_textfile(str(out), registry)
        scraped = render_metrics(registry)

    assert scraped == out.read_bytes()
    assert ["r9s.prom"] == os.listdir(out.parent)  # no temporary file left behind
    assert 0o644 == stat.S_IMODE(out.stat().st_mode)


def test_a_textfile_that_cannot_be_rendered_leaves_the_old_file(tmp_path: Path) -> None:
    class Broken:
        def collect(self) -> list[object]:
            raise RuntimeError("boom")

    out = tmp_path / "r9s.prom"
    out.write_text("old\n")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Broken())  # type: ignore[arg-type]

    with pytest.raises(RuntimeError, match="boom"):
        write_textfile(str(out), registry)

    assert "old\n" == out.read_text()
    assert ["r9s.prom"] == os.listdir(tmp_path)


# -- the background sync ----------------------------------------------------------------------


def test_a_sync_starts_at_the_first_stored_day_or_a_week_back(tmp_path: Path) -> None:
    db = str(tmp_path / "usage.db")
    with UsageStore(db) as store:
        now = D0 + 30 * DAY + 5

        assert D0 + 23 * DAY == sync_start(store, "0123456789abcdef", now=now)


async def test_a_sync_reaches_back_to_the_first_stored_day(
    filled: tuple[str, Expected],
) -> None:
    db, _ = filled
    with UsageStore(db, create=False) as store:
        prod = next(a for a in store.accounts() if a.label == "prod")

        assert D0 == sync_start(store, prod.fingerprint, now=D0 + 30 * DAY)


async def test_a_sync_hands_the_balance_it_read_to_the_recorder(tmp_path: Path) -> None:
    db = str(tmp_path / "usage.db")
    UsageStore(db).close()
    read: list[tuple[str, Decimal]] = []
    async with FakeR9sAPI().serve() as base_url:
        client = make_client(base_url)
        with UsageStore(db, create=False) as store:
            task = asyncio.create_task(
                run_sync(
                    client,
                    store,
                    every=60,
                    state=SyncState(),
                    record_balance=lambda a, b: read.append((a.fingerprint, b.balance)),
                )
            )
            try:
                await eventually(lambda: bool(read), within=10)
            finally:
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task

    assert [(client.account.fingerprint, Decimal("470.010481"))] == read


async def test_a_sync_keeps_the_balance_it_read_in_the_store(tmp_path: Path) -> None:
    db = str(tmp_path / "usage.db")
    UsageStore(db).close()
    async with FakeR9sAPI().serve() as base_url:
        client = make_client(base_url)
        with UsageStore(db, create=False) as store:
            task = asyncio.create_task(
                run_sync(
                    client,
                    store,
                    every=60,
                    state=SyncState(),
                    record_balance=balance_recorder(store),
                )
            )
            try:
                await eventually(lambda: bool(store.balance_history()), within=10)
            finally:
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            history = store.balance_history()

    assert [(client.account.fingerprint, Decimal("470.010481"))] == [
        (s.account, s.balance) for s in history
    ]


async def test_a_failed_sync_is_counted_and_the_exporter_keeps_serving(tmp_path: Path) -> None:
    db = str(tmp_path / "usage.db")
    UsageStore(db).close()
    api = FakeR9sAPI()
    api.add_fault(Fault.error(400, "try again later"), path="/usage")
    state = SyncState()
    urls: list[str] = []
    async with api.serve() as base_url:
        client = make_client(base_url)
        label = client.account.label
        with UsageStore(db, create=False) as store:
            registry = make_registry(UsageCollector(store, sync=state))

            async def sync() -> None:
                await run_sync(client, store, every=0.05, state=state)

            server = asyncio.create_task(
                serve(registry, host="127.0.0.1", port=0, background=sync, ready=urls.append)
            )
            try:
                await eventually(lambda: bool(urls))
                await eventually(lambda: state.errors() == {label: 1})
                await eventually(
                    lambda: any(w.status == "recent" for w in store.windows()), within=10
                )
                samples = parse(await asyncio.to_thread(scrape, urls[0]))
            finally:
                server.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await server

    assert {(label,): 1.0} == of(samples, "r9s_sync_errors_total")
    assert {(): 1.0} == of(samples, "r9s_up")
    assert of(samples, "r9s_usage_recent_tokens")  # the second sync stored today


# -- the command -------------------------------------------------------------------------------


def r9s(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "r9s_async", *args],
        env=env or clean_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_missing_store_exits_2_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.db"

    result = r9s("exporter", "--db", str(missing))

    assert 2 == result.returncode
    assert str(missing) in result.stderr
    assert not missing.exists()


def test_textfile_and_sync_every_do_not_go_together(tmp_path: Path) -> None:
    result = r9s(
        "exporter", "--db", "x.db", "--textfile", str(tmp_path / "r.prom"), "--sync-every", "1m"
    )

    assert 2 == result.returncode
    assert "--textfile" in result.stderr


async def test_the_command_writes_a_textfile(filled: tuple[str, Expected], tmp_path: Path) -> None:
    db, _ = filled
    out = tmp_path / "r9s.prom"

    result = await asyncio.to_thread(r9s, "exporter", "--db", db, "--textfile", str(out))

    assert 0 == result.returncode, result.stderr
    assert scrape_store(db, stored_balances=True) == out.read_text()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_the_server_answers_and_stops_cleanly_on_a_signal(
    filled: tuple[str, Expected], signum: signal.Signals
) -> None:
    db, expected = filled

    def run() -> tuple[str, int]:
        with exporter_process("--db", db) as (url, process):
            text = scrape(url)
            process.send_signal(signum)
            return text, process.wait(timeout=20)

    text, status = await asyncio.to_thread(run)

    assert 0 == status
    assert expected.settled_total() == sum(of(parse(text), "r9s_usage_tokens_total").values())


async def test_the_command_syncs_in_the_background_and_counts_failures(tmp_path: Path) -> None:
    db = str(tmp_path / "usage.db")
    UsageStore(db).close()
    api = FakeR9sAPI()
    api.add_fault(Fault.error(400, "not now"), path="/usage")

    with api.serve_in_thread() as base_url:
        env = clean_env(R9S_API_KEY=TEST_API_KEY, R9S_BASE_URL=base_url)
        label = make_client(base_url).account.label

        def run() -> tuple[dict[tuple[str, ...], float], int, str]:
            with exporter_process("--db", db, "--sync-every", "0.2s", env=env) as (url, process):
                for _ in range(200):
                    samples = parse(scrape(url))
                    if of(samples, "r9s_usage_recent_tokens"):
                        break
                    subprocess.run(["sleep", "0.05"], check=True)
                process.terminate()
                status = process.wait(timeout=20)
                assert process.stderr is not None
                return of(samples, "r9s_sync_errors_total"), status, process.stderr.read()

        errors, status, stderr = await asyncio.to_thread(run)

    assert {(label,): 1.0} == errors
    assert 0 == status
    assert "sync failed" in stderr
    assert "not now" in stderr
    assert TEST_API_KEY not in stderr
