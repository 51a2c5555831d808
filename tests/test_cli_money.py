"""``r9s-usage balance --db``, ``report`` and ``check``, driven as a user drives them: a
subprocess, a store on disk, real loopback HTTP to the fake API and to a webhook receiver."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from _helpers import ALPHA, BETA, DAY, PRICES_TOML
from aiohttp import web
from test_cli import clean_env, r9s

from r9s_async import Account, Balance, UsageRecord, UsageStore
from r9s_async._times import to_unix
from r9s_async.testing import TEST_API_KEY, FakeR9sAPI, Fault

PRICES = PRICES_TOML


def by_hand(tokens: int, per_million: str) -> Decimal:
    return Decimal(tokens) * Decimal(per_million) / Decimal(1_000_000)


def store_day(
    store: UsageStore, account: Account, day: date, records: list[tuple[int, str]]
) -> None:
    start = to_unix(day, "day")
    rows = [UsageRecord(start + i, tokens, model) for i, (tokens, model) in enumerate(records)]
    store.replace_window(
        account,
        "",
        start,
        start + DAY,
        rows,
        status="complete",
        fetched_at=start + 2 * DAY,
        request_id=None,
    )


def snapshot(store: UsageStore, account: Account, amount: str, taken_at: int) -> None:
    balance = Balance(Decimal(amount), "USD", Decimal(0), Decimal(0), Decimal(0), "rq")
    store.record_balance(account, balance, taken_at=taken_at)


@pytest.fixture
def prices(tmp_path: Path) -> Path:
    path = tmp_path / "prices.toml"
    path.write_text(PRICES)
    return path


# -- report -----------------------------------------------------------------------------------


@pytest.fixture
def march(tmp_path: Path) -> Path:
    """Two accounts over three days of March 2025, across the gpt-4o price change."""
    path = tmp_path / "usage.db"
    with UsageStore(path) as store:
        d1, d2, d3 = date(2025, 3, 1), date(2025, 3, 2), date(2025, 3, 3)
        store_day(store, ALPHA, d1, [(1_000_000, "gpt-4o"), (333_333, "claude-sonnet-4")])
        store_day(store, ALPHA, d2, [(1_000_000, "gpt-4o"), (7, "mystery")])
        store_day(store, BETA, d2, [(123_457, "claude-haiku"), (2_000_001, "gpt-4o")])
        store_day(store, BETA, d3, [(10, "claude-sonnet-4")])
    return path


def test_report_costs_equal_a_hand_computation_across_accounts_price_changes_and_patterns(
    march: Path, prices: Path
) -> None:
    done = r9s("report", "--db", str(march), "--by", "account", "--prices", str(prices),
               "--format", "json")  # fmt: skip

    assert 0 == done.returncode, done.stderr
    document = json.loads(done.stdout)
    alpha = by_hand(1_000_000, "2.50") + by_hand(333_333, "9.99") + by_hand(1_000_000, "3.75")
    beta = by_hand(123_457, "15") + by_hand(2_000_001, "3.75") + by_hand(10, "9.99")
    rows = {row["account"]: row for row in document["rows"]}
    assert alpha == Decimal(rows["alpha"]["cost"])
    assert beta == Decimal(rows[BETA.fingerprint]["cost"])
    assert 7 == rows["alpha"]["unpriced_tokens"]
    assert alpha + beta == Decimal(document["total_cost"])
    assert {"mystery": 7} == document["unpriced_by_model"]
    assert 4_456_808 == document["total_tokens"]
    assert document["note"].startswith("costs are estimates")
    assert None is rows["alpha"]["user_id"]


def test_report_table_by_model_shows_costs_the_unpriced_line_and_the_estimate_note(
    march: Path, prices: Path
) -> None:
    done = r9s("report", "--db", str(march), "--by", "model", "--prices", str(prices))

    assert 0 == done.returncode, done.stderr
    lines = done.stdout.splitlines()
    assert ["model", "tokens", "cost", "(USD)", "unpriced", "tokens"] == lines[0].split()
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:7]}
    gpt = by_hand(1_000_000, "2.50") + by_hand(1_000_000 + 2_000_001, "3.75")
    assert ["4,000,001", f"{gpt.quantize(Decimal('0.01'))}", "0"] == rows["gpt-4o"]
    assert ["7", "7"] == rows["mystery"]  # tokens shown, cost left empty, never 0
    assert any(line.startswith("unpriced: 7 tokens (mystery 7)") for line in lines)
    assert any(line.startswith("note: costs are estimates") for line in lines)
    assert any(line.startswith("burn rate and runway are per account") for line in lines)


def test_report_groups_by_day_then_model_as_csv_in_the_half_open_range(march: Path) -> None:
    done = r9s("report", "--db", str(march), "--by", "day", "--by", "model", "--format", "csv",
               "--start", "2025-03-02", "--end", "2025-03-03", "--account", "alpha")  # fmt: skip

    assert 0 == done.returncode, done.stderr
    assert ["day,model,tokens", "2025-03-02,gpt-4o,1000000", "2025-03-02,mystery,7"] == (
        done.stdout.splitlines()
    )


def test_report_by_month_without_prices_is_a_token_table(march: Path) -> None:
    done = r9s("report", "--db", str(march), "--by", "month", "--format", "json")

    document = json.loads(done.stdout)
    assert [{"month": "2025-03", "tokens": 4_456_808}] == document["rows"]
    assert None is document["total_cost"]


def test_report_of_a_missing_store_exits_2_naming_it_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"

    done = r9s("report", "--db", str(missing))

    assert 2 == done.returncode
    assert f"no usage store at {missing}" in done.stderr
    assert not missing.exists()


def test_report_of_an_unknown_account_exits_2(march: Path) -> None:
    done = r9s("report", "--db", str(march), "--account", "gamma")

    assert 2 == done.returncode
    assert "no account 'gamma'" in done.stderr


def test_a_malformed_price_table_exits_2_naming_file_entry_and_field(
    march: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('currency = "USD"\n[[price]]\nmodel = "gpt-4o"\nper_million_tokens = 0.6\n')

    done = r9s("report", "--db", str(march), "--prices", str(bad))

    assert 2 == done.returncode
    assert f"{bad}: price entry 1 (model 'gpt-4o'): per_million_tokens" in done.stderr


# -- balance and backfill ---------------------------------------------------------------------


@pytest.fixture
def env(threaded_base_url: str) -> dict[str, str]:
    return clean_env(R9S_API_KEY=TEST_API_KEY, R9S_BASE_URL=threaded_base_url)


def test_balance_with_db_keeps_a_snapshot_and_json_is_one_document(
    env: dict[str, str], tmp_path: Path
) -> None:
    db = tmp_path / "usage.db"

    done = r9s("balance", "--db", str(db), "--format", "json", env=env)

    assert 0 == done.returncode, done.stderr
    document = json.loads(done.stdout)
    assert ("470.010481", "USD") == (document["balance"], document["currency"])
    with UsageStore(db, create=False) as store:
        history = store.balance_history()
    assert [Decimal("470.010481")] == [s.balance for s in history]
    assert document["account"] == history[0].account


def test_a_backfill_records_a_balance_at_its_end(env: dict[str, str], tmp_path: Path) -> None:
    db = tmp_path / "usage.db"

    done = r9s("backfill", "--db", str(db), "--start", "2025-01-01", "--end", "2025-01-03",
               env=env)  # fmt: skip

    assert 0 == done.returncode, done.stderr
    with UsageStore(db, create=False) as store:
        assert [Decimal("470.010481")] == [s.balance for s in store.balance_history()]


def test_a_key_without_balance_read_still_backfills_and_warns(
    api: FakeR9sAPI, env: dict[str, str], tmp_path: Path
) -> None:
    api.add_fault(Fault.error(403, "missing scope balance:read"), path="/balance")
    db = tmp_path / "usage.db"

    done = r9s("backfill", "--db", str(db), "--start", "2025-01-01", "--end", "2025-01-03",
               env=env)  # fmt: skip

    assert 0 == done.returncode, done.stderr
    assert "WARNING: the backfill is stored, but its balance snapshot is not" in done.stderr
    with UsageStore(db, create=False) as store:
        assert [] == store.balance_history()
        assert 2 == len(store.windows())


# -- check ------------------------------------------------------------------------------------


TODAY = datetime.now(UTC).date()
YESTERDAY = TODAY - timedelta(days=1)


@pytest.fixture
def budget(tmp_path: Path) -> Path:
    """28 quiet days of 1M gpt-4o tokens, then 5M yesterday; the balance fell from 100 to 30
    over exactly the last 7 complete days (a burn of 10 a day, 3 days of runway)."""
    path = tmp_path / "usage.db"
    midnight = to_unix(TODAY, "today")
    with UsageStore(path) as store:
        for back in range(2, 30):
            store_day(store, ALPHA, TODAY - timedelta(days=back), [(1_000_000, "gpt-4o")])
        store_day(store, ALPHA, YESTERDAY, [(4_000_000, "gpt-4o"), (1_000_000, "gpt-4o")])
        snapshot(store, ALPHA, "100.00", midnight - 7 * DAY)
        snapshot(store, ALPHA, "30.00", midnight)
    return path


# Prices: gpt-4o is 3.75 a million today. Yesterday cost 18.75; the burn from prices is
# (6 * 3.75 + 18.75) / 7 = 5.892857... a day, so a runway of 30 / 5.89 = 5.09 days.
CHECKS = [
    ("--min-balance", "25", "50", "FAIL min_balance: balance 30.00 USD is below 50.00 USD on "
     f"{TODAY}"),
    ("--min-runway-days", "3", "3.01", f"FAIL min_runway_days: runway 3.0 days is below 3.01 "
     f"days on {TODAY}"),
    ("--max-daily-tokens", "5000000", "4999999", "FAIL max_daily_tokens: 5,000,000 tokens is "
     f"above 4,999,999 on {YESTERDAY}"),
    ("--spike-factor", "5", "4.9", "FAIL spike_factor: 5,000,000 tokens is above 4.9 x the median "
     f"1,000,000 of the 28 days before (4,900,000.0) on {YESTERDAY}"),
]  # fmt: skip


@pytest.mark.parametrize(("flag", "passing", "failing", "line"), CHECKS, ids=lambda v: str(v))
def test_each_check_passes_with_exit_0_and_fails_with_exit_3_and_one_line(
    budget: Path, flag: str, passing: str, failing: str, line: str
) -> None:
    passed = r9s("check", "--db", str(budget), flag, passing)
    failed = r9s("check", "--db", str(budget), flag, failing)

    assert (0, "") == (passed.returncode, passed.stdout), passed.stderr
    assert (3, [line]) == (failed.returncode, failed.stdout.splitlines()), failed.stderr


def test_the_cost_checks_use_the_price_table(budget: Path, prices: Path) -> None:
    def check(*flags: str) -> tuple[int, list[str]]:
        done = r9s("check", "--db", str(budget), "--prices", str(prices), *flags)
        return done.returncode, done.stdout.splitlines()

    assert (0, []) == check("--max-daily-cost", "18.75")
    expected = f"FAIL max_daily_cost: estimated cost 18.75 USD is above 18.74 USD on {YESTERDAY}"
    assert (3, [expected]) == check("--max-daily-cost", "18.74")
    assert (0, []) == check("--min-runway-days", "5.09")
    assert (3, [f"FAIL min_runway_days: runway 5.0 days is below 5.1 days on {TODAY}"]) == (
        check("--min-runway-days", "5.1")
    )


def test_json_lists_every_check_with_exact_figures(budget: Path) -> None:
    done = r9s("check", "--db", str(budget), "--min-balance", "50", "--max-daily-tokens", "9e9",
               "--format", "json")  # fmt: skip

    assert 2 == done.returncode  # 9e9 is not a whole number of tokens
    done = r9s("check", "--db", str(budget), "--min-balance", "50", "--max-daily-tokens",
               "9000000000", "--format", "json")  # fmt: skip

    assert 3 == done.returncode, done.stderr
    document = json.loads(done.stdout)
    assert ("alpha", False) == (document["account"], document["passed"])
    assert [("min_balance", False, "30.00", "50"), ("max_daily_tokens", True, 5_000_000,
            9_000_000_000)] == [
        (c["name"], c["passed"], c["figure"], c["threshold"]) for c in document["checks"]
    ]  # fmt: skip


def test_a_check_that_cannot_be_computed_exits_2_and_says_what_to_do(tmp_path: Path) -> None:
    db = tmp_path / "usage.db"
    with UsageStore(db) as store:
        store_day(store, ALPHA, YESTERDAY, [(1, "gpt-4o")])

    no_balance = r9s("check", "--db", str(db), "--min-balance", "1")
    no_check = r9s("check", "--db", str(db))
    no_prices = r9s("check", "--db", str(db), "--max-daily-cost", "1")

    assert 2 == no_balance.returncode
    assert f"run `r9s-usage balance --db {db}` first, or pass --refresh" in no_balance.stderr
    assert (2, "no check asked for") == (no_check.returncode, no_check.stderr.split(": ")[2])
    assert 2 == no_prices.returncode
    assert "--max-daily-cost needs --prices FILE" in no_prices.stderr


def test_a_store_of_several_accounts_needs_account(budget: Path) -> None:
    with UsageStore(budget) as store:
        store_day(store, BETA, YESTERDAY, [(1, "gpt-4o")])

    ambiguous = r9s("check", "--db", str(budget), "--max-daily-tokens", "10")
    chosen = r9s("check", "--db", str(budget), "--max-daily-tokens", "10", "--account",
                 BETA.fingerprint)  # fmt: skip

    assert 2 == ambiguous.returncode
    assert "holds several accounts (alpha, bbbbbbbbbbbbbbbb): choose one with --account" in (
        ambiguous.stderr
    )
    assert (0, "") == (chosen.returncode, chosen.stdout)


def test_refresh_backfills_recent_days_and_reads_the_balance_first(
    env: dict[str, str], tmp_path: Path
) -> None:
    db = tmp_path / "usage.db"

    done = r9s("check", "--db", str(db), "--refresh", "--min-balance", "500",
               "--max-daily-tokens", "1", env=env)  # fmt: skip

    assert 3 == done.returncode, done.stderr
    assert [
        f"FAIL min_balance: balance 470.01 USD is below 500.00 USD on {TODAY}",
        "FAIL max_daily_tokens",
    ] == [done.stdout.splitlines()[0], done.stdout.splitlines()[1][:21]]
    with UsageStore(db, create=False) as store:
        assert 36 <= len(store.windows())
        assert 1 == len(store.balance_history())


# -- the webhook ------------------------------------------------------------------------------


class Receiver:
    """A webhook receiver on loopback that records what is posted to it."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.posts: list[dict[str, Any]] = []

    @contextmanager
    def serve(self) -> Iterator[str]:
        loop = asyncio.new_event_loop()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

        async def handle(request: web.Request) -> web.Response:
            self.posts.append(await request.json())
            return web.Response(status=self.status, text="ok")

        app = web.Application()
        app.router.add_post("/hook/secret-token", handle)
        runner = web.AppRunner(app)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.SockSite(runner, sock).start())
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{port}/hook/secret-token"
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.run_until_complete(runner.cleanup())
            loop.close()
            sock.close()


def check_with_webhook(budget: Path, url: str, *extra: str) -> Any:
    return r9s("check", "--db", str(budget), "--min-balance", "50", "--max-daily-tokens",
               "1000", "--webhook", url, *extra)  # fmt: skip


def test_a_failure_is_posted_once_with_a_slack_text_and_repeat_sends_again(budget: Path) -> None:
    receiver = Receiver()
    with receiver.serve() as url:
        first = check_with_webhook(budget, url)
        second = check_with_webhook(budget, url)  # the cron job ten minutes later
        repeated = check_with_webhook(budget, url, "--repeat")

    assert [3, 3, 3] == [first.returncode, second.returncode, repeated.returncode]
    assert first.stdout == second.stdout  # the exit status and lines do not depend on it
    assert 2 == len(receiver.posts)
    payload = receiver.posts[0]
    assert (
        "r9s-usage check failed for alpha:\n"
        f"FAIL min_balance: balance 30.00 USD is below 50.00 USD on {TODAY}\n"
        f"FAIL max_daily_tokens: 5,000,000 tokens is above 1,000 on {YESTERDAY}"
    ) == payload["text"]
    assert ["min_balance", "max_daily_tokens"] == [c["name"] for c in payload["checks"]]
    assert "" == first.stderr


def test_a_new_failure_is_posted_although_an_older_one_was_sent(budget: Path) -> None:
    receiver = Receiver()
    with receiver.serve() as url:
        r9s("check", "--db", str(budget), "--min-balance", "50", "--webhook", url)
        check_with_webhook(budget, url)

    assert [1, 2] == [len(p["text"].splitlines()) - 1 for p in receiver.posts]


def test_passing_checks_post_nothing(budget: Path) -> None:
    receiver = Receiver()
    with receiver.serve() as url:
        done = r9s("check", "--db", str(budget), "--min-balance", "1", "--webhook", url)

    assert (0, []) == (done.returncode, receiver.posts)


def test_a_receiver_answering_500_is_reported_and_tried_again_next_run(budget: Path) -> None:
    receiver = Receiver(status=500)
    with receiver.serve() as url:
        first = check_with_webhook(budget, url)
        second = check_with_webhook(budget, url)

    assert [3, 3] == [first.returncode, second.returncode]
    assert "webhook post failed: http://127.0.0.1:" in first.stderr
    assert "answered HTTP 500; it is tried again next run" in first.stderr
    assert "secret-token" not in first.stderr  # a webhook URL is a secret
    assert 2 == len(receiver.posts)


def test_a_refused_connection_is_reported_and_the_exit_status_stays_3(budget: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now

    done = check_with_webhook(budget, f"http://127.0.0.1:{port}/hook/secret-token", "--format",
                              "json")  # fmt: skip

    assert 3 == done.returncode
    assert "failed" == json.loads(done.stdout)["webhook"]
    assert f"webhook post failed: http://127.0.0.1:{port}: ClientConnectorError" in done.stderr
    assert "secret-token" not in done.stderr


def test_a_webhook_that_is_not_http_is_refused_before_anything_runs(budget: Path) -> None:
    done = check_with_webhook(budget, "file:///etc/passwd")

    assert 2 == done.returncode
    assert "the webhook must be an http:// or https:// URL" in done.stderr


def test_report_says_where_its_burn_rate_comes_from(budget: Path, prices: Path) -> None:
    from_balances = json.loads(r9s("report", "--db", str(budget), "--format", "json").stdout)
    from_prices = json.loads(
        r9s("report", "--db", str(budget), "--prices", str(prices), "--format", "json").stdout
    )
    table = r9s("report", "--db", str(budget)).stdout.splitlines()

    assert ("balances", Decimal(10), Decimal(3)) == (
        from_balances["burn"]["source"],
        Decimal(from_balances["burn"]["per_day"]),
        Decimal(from_balances["runway_days"]),
    )
    burn = (6 * Decimal("3.75") + Decimal("18.75")) / 7
    assert "prices" == from_prices["burn"]["source"]
    assert burn == Decimal(from_prices["burn"]["per_day"])
    first, last = TODAY - timedelta(days=7), YESTERDAY
    assert [
        f"burn rate: 10.00 USD/day, from the decreases between stored balance snapshots, "
        f"{first} to {last}",
        f"runway: 3.0 days (balance 30.00 USD + credit limit 0.00 USD on {TODAY})",
    ] == table[-2:]
