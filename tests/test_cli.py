"""``r9s-usage`` driven as a user drives it: a subprocess, real loopback HTTP to the fake API."""

from __future__ import annotations

import argparse
import csv
import importlib
import io
import json
import os
import pty
import re
import signal
import subprocess
import sys
import termios
import threading
from collections.abc import Awaitable, Callable, Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from _helpers import D0, DAY
from aiohttp import web

from r9s_async import BackfillProgress, Client, UsageRecord, UsageStore
from r9s_async._cli import ProgressPrinter, main, parse_duration, parse_time
from r9s_async.testing import TEST_API_KEY, FakeR9sAPI, Fault

pq = importlib.import_module("pyarrow.parquet")  # the `parquet` extra; untyped

DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o", "claude-sonnet-4", "deepseek-chat")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("R9S_")}
    env.update(extra)
    return env


def r9s(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "r9s_async", *args],
        env=clean_env() if env is None else env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def env(threaded_base_url: str) -> dict[str, str]:
    """The environment of a user whose key and URL point at the fake on loopback."""
    return clean_env(R9S_API_KEY=TEST_API_KEY, R9S_BASE_URL=threaded_base_url)


def truth(api: FakeR9sAPI, start: int, end: int) -> list[UsageRecord]:
    return [UsageRecord(**r) for r in api.records_in(start, end)]


# -- parsing (in process) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2024-10-04", D0),
        ("2024-10-04T00:00:00Z", D0),
        ("2024-10-04T02:30:00+02:00", D0 + 1800),
        ("2024-10-04T01:00:00", D0 + 3600),  # naive is UTC
        ("2024-10-04 01:00", D0 + 3600),
        (str(D0 + 7), D0 + 7),
    ],
)
def test_times_are_dates_iso_8601_or_unix_seconds_and_naive_means_utc(
    text: str, seconds: int
) -> None:
    value = parse_time(text)

    assert seconds == (value if isinstance(value, int) else int(value.timestamp()))
    assert isinstance(value, int) or value.tzinfo is not None


@pytest.mark.parametrize("text", ["tomorrow", "2024-13-01", "-5", "1.5", "", "-3y", "+3d"])
def test_anything_else_is_not_a_time(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="not a time"):
        parse_time(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0.0), ("90", 90.0), ("90s", 90.0), ("30m", 1800.0), ("12h", 43200.0), ("1d", 86400.0)],
)
def test_durations_are_seconds_or_a_number_with_a_unit(text: str, seconds: float) -> None:
    assert seconds == parse_duration(text)


def test_the_console_script_runs_main() -> None:
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "r9s-usage"]

    assert main is script.load()


# -- usage and balance ------------------------------------------------------------------------


def test_usage_as_csv_prints_every_record_of_the_half_open_range(
    api: FakeR9sAPI, env: dict[str, str]
) -> None:
    done = r9s("usage", "--start", "2024-10-04", "--end", "2024-10-07", "--format", "csv", env=env)

    assert 0 == done.returncode, done.stderr
    expected = [[str(r.timestamp), r.model, str(r.tokens)] for r in truth(api, D0, D0 + 3 * DAY)]
    assert [["timestamp", "model", "tokens"], *expected] == list(
        csv.reader(io.StringIO(done.stdout))
    )
    assert "" == done.stderr


def test_usage_grouped_by_model_is_a_table_with_a_total(
    api: FakeR9sAPI, env: dict[str, str]
) -> None:
    done = r9s(
        "usage", "--start", "2024-10-04", "--end", "2024-10-06", "--group-by", "model", env=env
    )

    assert 0 == done.returncode, done.stderr
    lines = done.stdout.splitlines()
    totals: dict[str, int] = {}
    for r in truth(api, D0, D0 + 2 * DAY):
        totals[r.model] = totals.get(r.model, 0) + r.tokens
    assert ["model", "tokens"] == lines[0].split()
    assert {m: f"{t:,}" for m, t in totals.items()} == dict(line.split() for line in lines[2:-1])
    assert ["total", f"{sum(totals.values()):,}"] == lines[-1].split()


def test_usage_as_json_for_a_member_groups_by_day_and_model(
    api: FakeR9sAPI, env: dict[str, str]
) -> None:
    end = str(D0 + DAY - 1)
    done = r9s(
        "usage", "--start", str(D0), "--end", end, "--user-id", "7",
        "--format", "json", "--group-by", "day,model", env=env,
    )  # fmt: skip

    document = json.loads(done.stdout)
    records = api.records(D0, D0 + DAY - 1)
    assert [{"start_time": str(D0), "end_time": end, "user_id": "7"}] == [
        dict(r.query) for r in api.requests
    ]
    assert (D0, D0 + DAY - 1) == (document["start"], document["end"])
    assert sum(r["tokens"] for r in records) == document["total_tokens"]
    assert [
        {"day": "2024-10-04", "model": r["model"], "tokens": r["tokens"]}
        for r in sorted(records, key=lambda r: r["model"])
    ] == document["groups"]


def test_usage_as_jsonl_by_day(api: FakeR9sAPI, env: dict[str, str]) -> None:
    done = r9s(
        "usage",
        "--start",
        "2024-10-04",
        "--end",
        "2024-10-05T12:00:00Z",
        "--format",
        "jsonl",
        "--group-by",
        "day",
        env=env,
    )

    day1 = sum(r["tokens"] for r in api.records(D0, D0 + DAY - 1))
    day2 = sum(r["tokens"] for r in api.records(D0 + DAY, D0 + DAY + DAY // 2))
    assert [{"day": "2024-10-04", "tokens": day1}, {"day": "2024-10-05", "tokens": day2}] == [
        json.loads(line) for line in done.stdout.splitlines()
    ]


def test_balance_prints_the_exact_balance(env: dict[str, str]) -> None:
    done = r9s("balance", env=env)

    assert 0 == done.returncode, done.stderr
    assert "balance              470.010481 USD" == done.stdout.splitlines()[0]


# -- failures ---------------------------------------------------------------------------------


def test_without_a_key_the_command_says_to_set_r9s_api_key(threaded_base_url: str) -> None:
    done = r9s("balance", env=clean_env(R9S_BASE_URL=threaded_base_url))

    assert 2 == done.returncode
    assert "R9S_API_KEY" in done.stderr
    assert 1 == len(done.stderr.splitlines())


def test_the_key_is_never_an_argument(env: dict[str, str]) -> None:
    done = r9s("balance", "--api-key", TEST_API_KEY, env=env)

    assert 2 == done.returncode
    assert "unrecognized arguments" in done.stderr


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``main`` in this process (argument handling only): exit status and stderr."""
    try:
        status = main(args)
    except SystemExit as exc:  # argparse's own errors and --help
        status = int(exc.code or 0)
    return status, capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [
        ["usage", "--start", "soon"],
        ["usage", "--start", "1969-12-31"],
        ["backfill", "--start", "2024-10-04", "--db", "x.db", "--max-concurrency", "many"],
        ["usage", "--start", "2024-10-05", "--end", "2024-10-04"],
        ["usage", "--start", "2024-10-04", "--format", "xml"],
        ["backfill", "--start", "2024-10-04", "--db", "x.db", "--refresh-recent", "a while"],
        ["backfill", "--start", "2024-10-04", "--db", "x.db", "--max-concurrency", "0"],
        ["backfill", "--start", "2024-10-04"],
        ["backfill", "--start", "2024-10-04", "--db", "no/such/folder/x.db"],
        [
            "backfill",
            "--start",
            "2024-10-04",
            "--end",
            "2024-10-04T00:00:00",
            "--db",
            "x.db",
            "--user-id",
            "",
        ],
        ["export", "--db", "missing.db", "--format", "csv"],
        [
            "export",
            "--db",
            "missing.db",
            "--format",
            "csv",
            "--start",
            "2024-10-05",
            "--end",
            "2024-10-04",
        ],
        ["usage", "--start", "2024-10-04", "--base-url", "http://example.com"],
    ],
)
def test_bad_arguments_exit_2_with_an_error_line_and_no_traceback(
    args: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("R9S_API_KEY", TEST_API_KEY)
    monkeypatch.chdir(tmp_path)

    status, stderr = run_main(args, capsys)

    assert 2 == status
    assert "error:" in stderr
    assert "Traceback" not in stderr
    assert [] == list(tmp_path.iterdir())


def test_an_api_failure_exits_1_with_one_line_carrying_the_request_id(
    threaded_base_url: str,
) -> None:
    wrong_key = "sk_mg_" + "f" * 64
    env = clean_env(R9S_API_KEY=wrong_key, R9S_BASE_URL=threaded_base_url)

    done = r9s("usage", "--start", "2024-10-04", env=env)
    debug = r9s("--debug", "usage", "--start", "2024-10-04", env=env)

    assert 1 == done.returncode
    (line,) = done.stderr.splitlines()
    assert line.startswith("r9s-usage: error: HTTP 401: API key not found (request id ")
    assert 1 == debug.returncode
    assert "Traceback" in debug.stderr
    assert "AuthenticationError" in debug.stderr
    for output in (done.stdout, done.stderr, debug.stdout, debug.stderr):
        assert wrong_key not in output


def test_a_backfill_failed_by_the_server_exits_1_and_says_how_to_resume(
    api: FakeR9sAPI, env: dict[str, str], tmp_path: Path
) -> None:
    db = tmp_path / "usage.db"
    # A store that already holds days: whichever day fails first, the file is kept.
    first = r9s(
        "backfill", "--start", "2024-10-04", "--end", "2024-10-06", "--db", str(db), env=env
    )
    assert 0 == first.returncode, first.stderr
    api.add_fault(Fault.error(503, "busy"), path="/usage", start_time=D0 + 2 * DAY)

    days = ["--start", "2024-10-04", "--end", "2024-10-08"]

    done = r9s("backfill", *days, "--db", str(db), "--max-retries", "0", env=env)

    assert 1 == done.returncode
    last = done.stderr.splitlines()[-1]
    assert "HTTP 503: busy (request id FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF)" in last
    hint = f"the days stored so far are kept in {db}; run the same command again to resume"
    assert last.endswith(hint)


def test_a_backfill_refused_as_a_bad_request_does_not_say_to_run_it_again(
    api: FakeR9sAPI, env: dict[str, str], tmp_path: Path
) -> None:
    api.add_fault(Fault.error(400, "bad window"), path="/usage", start_time=D0 + 2 * DAY)
    db = tmp_path / "usage.db"

    done = r9s("backfill", "--start", "2024-10-04", "--end", "2024-10-08", "--db", str(db), env=env)

    assert 1 == done.returncode
    last = done.stderr.splitlines()[-1]
    assert last.endswith("HTTP 400: bad window (request id FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF)")
    assert "again" not in last


# -- backfill and export ----------------------------------------------------------------------


def test_backfill_then_export_gives_the_records_of_the_half_open_range(
    api: FakeR9sAPI, env: dict[str, str], tmp_path: Path
) -> None:
    db = tmp_path / "usage.db"

    done = r9s("backfill", "--start", "2024-10-04", "--end", "2024-10-09", "--db", str(db), env=env)
    again = r9s(
        "backfill", "--start", "2024-10-04", "--end", "2024-10-09", "--db", str(db), env=env
    )
    exported = r9s("export", "--db", str(db), "--format", "csv", env=env)

    assert 0 == done.returncode, done.stderr
    assert "" == done.stdout
    lines = done.stderr.splitlines()
    assert lines[0].endswith(": 0/5 days, 0 records, 0 tokens")  # plain lines: not a terminal
    assert "5/5 days, 20 records" in lines[-2]
    assert "5 days stored (5 fetched, 0 already complete)" in lines[-1]
    assert "5 days stored (0 fetched, 5 already complete)" in again.stderr
    with Client(TEST_API_KEY, base_url=env["R9S_BASE_URL"]) as client:
        fp = client.account.fingerprint
    expected = [
        [str(r.timestamp), r.model, str(r.tokens), fp, ""] for r in truth(api, D0, D0 + 5 * DAY)
    ]
    assert [["timestamp", "model", "tokens", "account", "user_id"], *expected] == list(
        csv.reader(io.StringIO(exported.stdout))
    )
    assert "exported 20 records to stdout" in exported.stderr


def test_export_writes_jsonl_to_a_file_and_parquet_to_stdout_for_a_range(
    api: FakeR9sAPI, env: dict[str, str], tmp_path: Path
) -> None:
    db = tmp_path / "usage.db"
    with Client(TEST_API_KEY, base_url=env["R9S_BASE_URL"]) as client:
        client.backfill(D0, D0 + 5 * DAY, db=db)
    jsonl = tmp_path / "out.jsonl"
    window = ["--start", "2024-10-05", "--end", "2024-10-07"]

    one = r9s("export", "--db", str(db), "--format", "jsonl", "--out", str(jsonl), *window)
    two = subprocess.run(  # Parquet to stdout, as bytes down a pipe
        [sys.executable, "-m", "r9s_async", "export", "--db", str(db), "--format=parquet", *window],
        env=env,
        capture_output=True,
        timeout=60,
    )

    expected = truth(api, D0 + DAY, D0 + 3 * DAY)
    assert (0, 0, "") == (one.returncode, two.returncode, one.stdout)
    fp = client.account.fingerprint
    assert [
        {"timestamp": r.timestamp, "model": r.model, "tokens": r.tokens, "account": fp}
        | {"user_id": None}
        for r in expected
    ] == [json.loads(line) for line in jsonl.read_text().splitlines()]
    table = pq.read_table(io.BytesIO(two.stdout)).to_pylist()
    assert [(r.timestamp, r.model, r.tokens, fp, None) for r in expected] == [
        (int(row.pop("timestamp").timestamp()), *row.values()) for row in table
    ]
    assert [] == [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")]


class WatchedFake(FakeR9sAPI):
    """The fake, plus an event set when a ``/usage`` request for ``start_time`` arrives."""

    def __init__(self, watch: int, **options: Any) -> None:
        super().__init__(**options)
        self.watch = str(watch)
        self.arrived = threading.Event()

    def make_app(self) -> web.Application:
        app = super().make_app()

        @web.middleware
        async def spot(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            if request.query.get("start_time") == self.watch:
                self.arrived.set()
            return await handler(request)

        app.middlewares.append(spot)
        return app


@pytest.fixture
def stalling() -> Iterator[tuple[WatchedFake, dict[str, str]]]:
    """A fake that answers every window but the sixth, which it holds for a minute."""
    api = WatchedFake(D0 + 5 * DAY)
    api.add_fault(Fault.stall(60), path="/usage", start_time=D0 + 5 * DAY)
    with api.serve_in_thread() as url:
        yield api, clean_env(R9S_API_KEY=TEST_API_KEY, R9S_BASE_URL=url)


def test_ctrl_c_stops_a_backfill_cleanly_and_a_rerun_resumes(
    stalling: tuple[WatchedFake, dict[str, str]], tmp_path: Path
) -> None:
    api, env = stalling
    db = tmp_path / "usage.db"
    command = [sys.executable, "-m", "r9s_async", "backfill", "--db", str(db)]
    command += ["--start", "2024-10-04", "--end", "2024-10-14"]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    assert api.arrived.wait(timeout=60)  # windows 0-4 are answered; window 5 hangs

    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)

    assert 130 == process.returncode
    assert "Traceback" not in stderr
    if not db.exists():  # interrupted before a day was stored: no empty file is left behind
        assert f"interrupted; nothing was stored, so {db} was not kept" in stderr
        kept = 0
    else:
        assert f"interrupted; the days stored so far are kept in {db}" in stderr
        assert "run the same command again to resume" in stderr
        with UsageStore(db) as store:
            kept = len(store.windows())
            assert truth(api, D0, D0 + kept * DAY) == list(store.iter_records())
    assert kept <= 5

    api.clear_faults()
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

    assert 0 == rerun.returncode, rerun.stderr
    assert f"({10 - kept} fetched, {kept} already complete)" in rerun.stderr
    with UsageStore(db) as store:
        assert truth(api, D0, D0 + 10 * DAY) == list(store.iter_records())


# -- demo and serve-fake ----------------------------------------------------------------------


def test_demo_needs_no_key_and_prints_a_summary_per_model(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"

    done = r9s("demo", "--db", str(db))

    assert 0 == done.returncode, done.stderr
    lines = done.stdout.splitlines()
    assert "(90 UTC days)" in lines[0]
    assert ["model", "tokens", "share"] == lines[1].split()
    assert set(DEFAULT_MODELS) == {line.split()[0] for line in lines[3:7]}
    assert "total" == lines[7].split()[0]
    with UsageStore(db, create=False) as store:
        assert 90 == len(store.windows())
        assert f"{sum(store.tokens_by_model().values()):,}" == lines[7].split()[1]


@pytest.mark.parametrize("columns", [80, 60])
def test_demo_draws_a_progress_bar_that_fits_the_terminal(columns: int) -> None:
    controller, terminal = pty.openpty()
    termios.tcsetwinsize(terminal, (24, columns))
    env = {k: v for k, v in clean_env().items() if k != "COLUMNS"}  # the terminal's own width
    process = subprocess.Popen(
        [sys.executable, "-m", "r9s_async", "demo"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=terminal,
    )
    os.close(terminal)
    screen = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the demo closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    os.close(controller)
    stdout = process.communicate(timeout=60)[0]

    assert 0 == process.returncode
    redraws = [part.split(b"\x1b[K")[0] for part in screen.split(b"\r") if part.startswith(b"[")]
    assert len(redraws) >= 2
    assert all(len(line) <= columns - 1 for line in redraws), redraws
    assert re.match(rb"\[#+\] 90/90 days  [\d,]+ tokens", redraws[-1]), redraws[-1]
    assert b"model" in stdout


def test_serve_fake_prints_its_url_and_key_and_stops_on_sigterm(tmp_path: Path) -> None:
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "r9s_async",
            "serve-fake",
            "--mode",
            "events",
            "--end-time",
            "exclusive",
        ],
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip().removeprefix("export R9S_BASE_URL=")
        key = server.stdout.readline().strip().removeprefix("export R9S_API_KEY=")
        env = clean_env(R9S_API_KEY=key, R9S_BASE_URL=url)
        done = r9s(
            "usage", "--start", str(D0), "--end", str(D0 + DAY), "--format", "jsonl", env=env
        )
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)

    assert 0 == server.returncode
    assert url.startswith("http://127.0.0.1:")
    assert TEST_API_KEY == key
    expected = FakeR9sAPI(mode="events", end_inclusive=False).records(D0, D0 + DAY)
    assert expected == [json.loads(line) for line in done.stdout.splitlines()]
    assert D0 + DAY - 1 == expected[-1]["timestamp"]  # the exclusive end was honoured


def test_help_says_naive_times_are_utc_and_backfill_ends_are_exclusive(
    capsys: pytest.CaptureFixture[str],
) -> None:
    helps = []
    for args in (["--help"], ["backfill", "--help"], ["export", "--help"]):
        with pytest.raises(SystemExit) as exited:
            main(args)
        assert 0 == exited.value.code
        helps.append(" ".join(capsys.readouterr().out.split()))
    top, backfill, export = helps

    for text in helps:
        assert "a date-time without an offset is taken as UTC" in text
    assert "--end TIME exclusive end (default: now)" in backfill
    assert "--end TIME exclusive end (default: now)" in export
    assert "R9S_API_KEY (never from an argument)" in top


def test_export_filters_by_account_name_and_an_unknown_account_exits_2(
    api: FakeR9sAPI, env: dict[str, str], tmp_path: Path
) -> None:
    db = tmp_path / "usage.db"
    other = FakeR9sAPI(api_key="sk_mg_" + "1" * 64, seed=5)
    with other.serve_in_thread() as other_url:
        named = r9s(
            "backfill", "--start", "2024-10-04", "--end", "2024-10-06", "--db", str(db),
            "--account-name", "prod", env=env,
        )  # fmt: skip
        second = r9s(
            "backfill", "--start", "2024-10-04", "--end", "2024-10-06", "--db", str(db),
            env=clean_env(R9S_API_KEY=other.api_key, R9S_BASE_URL=other_url),
        )  # fmt: skip
    only_prod = r9s("export", "--db", str(db), "--format", "csv", "--account", "prod")
    everything = r9s("export", "--db", str(db), "--format", "csv")
    unknown = r9s("export", "--db", str(db), "--format", "csv", "--account", "nope")

    assert (0, 0, 0) == (named.returncode, second.returncode, only_prod.returncode), second.stderr
    assert "2 days stored (2 fetched, 0 already complete)" in second.stderr
    rows = list(csv.reader(io.StringIO(only_prod.stdout)))[1:]
    expected = [
        [str(r.timestamp), r.model, str(r.tokens), "prod", ""] for r in truth(api, D0, D0 + 2 * DAY)
    ]
    assert expected == rows
    assert len(expected) + len(truth(other, D0, D0 + 2 * DAY)) + 1 == len(
        everything.stdout.splitlines()
    )
    assert (2, "") == (unknown.returncode, unknown.stdout)
    assert "--account: no account 'nope'" in unknown.stderr


def test_backfill_refuses_an_account_name_that_looks_like_a_fingerprint(
    env: dict[str, str], tmp_path: Path
) -> None:
    db = tmp_path / "usage.db"

    done = r9s(
        "backfill", "--start", "2024-10-04", "--db", str(db), "--account-name", "a" * 16, env=env
    )

    assert 2 == done.returncode
    assert "looks like a fingerprint" in done.stderr
    assert not db.exists()


@pytest.mark.parametrize(
    ("start", "end"),
    [("2024-10-04", "2024-10-07"), ("2024-10-04T06:00:00Z", "2024-10-06T00:00:00Z")],
)
def test_usage_and_export_agree_to_the_token_for_the_same_start_and_end(
    api: FakeR9sAPI, env: dict[str, str], tmp_path: Path, start: str, end: str
) -> None:
    db = tmp_path / "usage.db"
    window = ["--start", start, "--end", end]
    backfilled = r9s(
        "backfill", "--start", "2024-10-03", "--end", "2024-10-09", "--db", str(db), env=env
    )
    usage = r9s("usage", *window, "--format", "csv", env=env)
    exported = r9s("export", "--db", str(db), "--format", "csv", *window, env=env)

    assert 0 == backfilled.returncode, backfilled.stderr
    assert 0 == usage.returncode, usage.stderr
    assert 0 == exported.returncode, exported.stderr
    from_usage = list(csv.reader(io.StringIO(usage.stdout)))[1:]
    from_store = [row[:3] for row in csv.reader(io.StringIO(exported.stdout))][1:]
    assert from_usage == from_store
    assert from_usage  # the daily records at the start's midnight at least
    assert sum(int(row[2]) for row in from_usage) == sum(int(row[2]) for row in from_store)


@pytest.mark.parametrize(
    ("progress", "shown"),
    [
        (BackfillProgress(3, 31, 0, 1_234, 99_999, 0, 5), ["3/31 days", "5 requests", "ETA"]),
        (
            BackfillProgress(1_000, 3_650, 0, 12_345_678, 10**12, 12, 40_000),
            ["1000/3650 days", "12 retries", "ETA"],
        ),
    ],
)
@pytest.mark.parametrize("columns", [40, 60, 80, 132])
def test_the_progress_bar_shows_days_and_tokens_and_stays_off_the_last_column(
    progress: BackfillProgress, shown: list[str], columns: int
) -> None:
    out = io.StringIO()
    printer = ProgressPrinter(out, "backfill", tty=True, columns=columns)

    printer(progress)

    line = out.getvalue().removeprefix("\r").removesuffix("\x1b[K")
    assert len(line) <= columns - 1
    assert "\n" not in line
    assert shown[0] in line
    if columns >= 80:
        assert all(text in line for text in shown)
        assert f"{progress.tokens:,} tokens" in line


def test_the_bar_reads_the_width_from_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "50")
    out = io.StringIO()

    ProgressPrinter(out, "backfill", tty=True)(BackfillProgress(3, 31, 0, 1_234, 99_999, 0, 5))

    assert 49 >= len(out.getvalue().removeprefix("\r").removesuffix("\x1b[K"))


def test_the_plain_progress_line_counts_requests_apart_from_days() -> None:
    out = io.StringIO()
    printer = ProgressPrinter(out, "backfill", tty=False)

    printer(BackfillProgress(2, 2, 0, 10, 100, 1, 9))

    assert "backfill: 2/2 days, 10 records, 100 tokens, 9 requests, 1 retries" in out.getvalue()
