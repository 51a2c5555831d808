"""``r9s-usage`` as a newcomer meets it: client flags, relative times, one JSON document per
command, ``| head``, errors that say what to do, read commands that create nothing, and files
with the umask's permissions. Subprocesses against the fake on loopback, as in test_cli.py."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _helpers import D0, DAY
from test_cli import clean_env, r9s, run_main

from r9s_async import UsageStore
from r9s_async._cli import parse_time
from r9s_async.testing import TEST_API_KEY, FakeR9sAPI, Fault

WRONG_KEY = "sk_mg_" + "f" * 64
OCTOBER = ["--start", "2024-10-04", "--end", "2024-10-08"]


@pytest.fixture
def env(threaded_base_url: str) -> dict[str, str]:
    return clean_env(R9S_API_KEY=TEST_API_KEY, R9S_BASE_URL=threaded_base_url)


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's 90 days (2,373 records) in a store, made once."""
    db = tmp_path_factory.mktemp("demo") / "usage.db"
    done = r9s("demo", "--db", str(db))
    assert 0 == done.returncode, done.stderr
    return db


def usage_requests(api: FakeR9sAPI) -> int:
    return sum(1 for r in api.requests if r.path.endswith("/usage"))


# -- --timeout, --max-retries, --max-rate -------------------------------------------------------


@pytest.mark.parametrize(
    "flags",
    [
        ["--timeout", "0"],
        ["--timeout", "soon"],
        ["--timeout", "-1"],
        ["--max-retries", "-1"],
        ["--max-retries", "two"],
        ["--max-rate", "0"],
        ["--max-rate", "inf"],
        ["--max-rate", "fast"],
    ],
)
@pytest.mark.parametrize(
    "command",
    [
        ["usage", "--start", "2024-10-04"],
        ["backfill", "--start", "2024-10-04", "--db", "x.db"],
        ["balance"],
        ["check", "--db", "x.db", "--refresh", "--min-balance", "1"],
        ["exporter", "--db", "x.db", "--sync-every", "15m"],
    ],
)
def test_bad_client_flags_exit_2_on_every_command_that_talks_to_the_api(
    command: list[str],
    flags: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("R9S_API_KEY", TEST_API_KEY)
    monkeypatch.chdir(tmp_path)

    status, stderr = run_main([*command, *flags], capsys)

    assert 2 == status
    assert f"argument {flags[0]}:" in stderr
    assert [] == list(tmp_path.iterdir())


def test_max_retries_reaches_the_client(api: FakeR9sAPI, env: dict[str, str]) -> None:
    api.add_fault(Fault.error(503, "busy"), path="/usage", start_time=D0, times=2)
    once = r9s("usage", *OCTOBER, "--max-retries", "1", env=env)
    api.clear_faults()
    api.add_fault(Fault.error(503, "busy"), path="/usage", start_time=D0, times=2)
    twice = r9s("--max-retries", "2", "usage", *OCTOBER, env=env)  # before the command too

    assert 1 == once.returncode
    assert "HTTP 503" in once.stderr
    assert 0 == twice.returncode, twice.stderr


def test_timeout_reaches_the_client(api: FakeR9sAPI, env: dict[str, str]) -> None:
    api.add_fault(Fault.stall(30), path="/usage", times=10)
    started = time.monotonic()

    done = r9s("usage", *OCTOBER, "--timeout", "0.3", "--max-retries", "0", env=env)

    assert 1 == done.returncode
    assert time.monotonic() - started < 20
    assert "did not answer in time" in done.stderr
    assert "--timeout" in done.stderr


def test_max_rate_paces_the_requests(api: FakeR9sAPI, env: dict[str, str]) -> None:
    started = time.monotonic()

    done = r9s("usage", *OCTOBER, "--max-rate", "4", env=env)

    assert 0 == done.returncode, done.stderr
    assert 4 == usage_requests(api)
    assert time.monotonic() - started >= 0.6  # 4 requests at 4 per second: 3 waits of 0.25 s


# -- times ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ago"),
    [("now", 0), ("-90m", 90 * 60), ("-12h", 12 * 3600), ("-30d", 30 * DAY), ("-2w", 14 * DAY)],
)
def test_now_and_times_before_now_count_back_from_the_clock(text: str, ago: int) -> None:
    before = int(time.time())
    value = parse_time(text)
    after = int(time.time())

    assert isinstance(value, int)
    assert before - ago <= value <= after - ago


def test_today_and_yesterday_are_utc_midnights() -> None:
    midnight = int(time.time()) // DAY * DAY

    assert midnight == parse_time("today")
    assert midnight - DAY == parse_time("yesterday")
    assert midnight == parse_time(" Today ")


def test_relative_times_work_as_separate_arguments(api: FakeR9sAPI, env: dict[str, str]) -> None:
    done = r9s("usage", "--start", "-3d", "--end", "now", "--format", "json", env=env)
    joined = r9s("usage", "--start=yesterday", "--end", "today", "--format", "json", env=env)

    assert 0 == done.returncode, done.stderr
    assert 0 == joined.returncode, joined.stderr
    document = json.loads(joined.stdout)
    assert DAY == document["end"] - document["start"]


def test_the_help_lists_the_relative_times() -> None:
    done = r9s("usage", "--help")

    assert "now, today" in done.stdout
    assert "-30d" in done.stdout


def test_a_bad_relative_time_is_an_argument_error() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="-30d, -12h"):
        parse_time("-30y")


# -- JSON and pipes ---------------------------------------------------------------------------


def test_every_json_output_is_one_document_on_stdout(env: dict[str, str], tmp_path: Path) -> None:
    db = tmp_path / "usage.db"
    assert 0 == r9s("backfill", *OCTOBER, "--db", str(db), env=env).returncode

    outputs = [
        r9s("usage", *OCTOBER, "--format", "json", env=env),
        r9s("balance", "--format", "json", env=env),
        r9s("report", "--db", str(db), "--by", "model", "--format", "json", env=env),
        r9s("check", "--db", str(db), "--max-daily-tokens", "1", "--format", "json", env=env),
    ]

    for done in outputs:
        assert done.returncode in (0, 3), done.stderr
        document = json.loads(done.stdout)  # one document: anything after it would fail
        assert isinstance(document, dict)


@pytest.mark.parametrize(
    "command",
    [
        ["export", "--format", "csv"],
        ["export", "--format", "jsonl"],
        ["report", "--by", "day", "--by", "model", "--format", "csv"],
    ],
)
def test_a_reader_that_stops_early_is_no_error(command: list[str], demo_db: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "r9s_async", *command, "--db", str(demo_db)],
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stdout.readline()  # like `| head -1`: one line, then the pipe closes
    process.stdout.close()
    stderr = process.communicate(timeout=60)[1]

    assert 0 == process.returncode, stderr
    assert b"Traceback" not in stderr
    assert b"Error" not in stderr


# -- errors by kind ---------------------------------------------------------------------------


def test_a_rejected_key_says_to_check_it_and_leaves_no_store(
    threaded_base_url: str, tmp_path: Path
) -> None:
    env = clean_env(R9S_API_KEY=WRONG_KEY, R9S_BASE_URL=threaded_base_url)
    db = tmp_path / "new.db"

    done = r9s("backfill", *OCTOBER, "--db", str(db), env=env)
    refresh = r9s("check", "--db", str(db), "--refresh", "--min-balance", "1", env=env)

    assert 1 == done.returncode
    (line,) = done.stderr.splitlines()[-1:]
    assert "HTTP 401" in line
    assert "check R9S_API_KEY" in line
    assert "usage:read scope" in line
    assert "again" not in line
    assert 1 == refresh.returncode
    assert [] == list(tmp_path.iterdir())
    assert WRONG_KEY not in done.stderr + refresh.stderr


def test_a_rejected_key_keeps_a_store_that_existed(env: dict[str, str], tmp_path: Path) -> None:
    db = tmp_path / "usage.db"
    assert 0 == r9s("backfill", *OCTOBER, "--db", str(db), env=env).returncode
    env["R9S_API_KEY"] = WRONG_KEY

    done = r9s("backfill", "--start", "2024-10-08", "--end", "2024-10-09", "--db", str(db), env=env)

    assert 1 == done.returncode
    with UsageStore(db, create=False) as store:
        assert 4 == len(store.windows())


def test_a_missing_scope_says_which_scope(api: FakeR9sAPI, env: dict[str, str]) -> None:
    api.add_fault(Fault.error(403, "forbidden"), path="/balance")

    done = r9s("balance", env=env)

    assert 1 == done.returncode
    assert "balance:read" in done.stderr
    assert "again" not in done.stderr


def test_an_unreachable_api_names_the_url_and_r9s_base_url(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9/api/v1"  # the discard port: nothing listens
    env = clean_env(R9S_API_KEY=TEST_API_KEY, R9S_BASE_URL=url)
    db = tmp_path / "usage.db"

    done = r9s("backfill", *OCTOBER, "--db", str(db), "--max-retries", "0", env=env)

    assert 1 == done.returncode
    last = done.stderr.splitlines()[-1]
    assert f"could not reach {url}" in last
    assert "R9S_BASE_URL" in last
    assert f"nothing was stored, so {db} was not kept" in last
    assert not db.exists()


@pytest.mark.parametrize(
    "command",
    [
        ["export", "--format", "csv", "--out", "{missing}/out.csv"],
        ["report", "--html", "{missing}/report.html"],
    ],
)
def test_an_output_path_in_a_missing_folder_exits_2_naming_it(
    command: list[str], demo_db: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "no" / "such"
    args = [part.format(missing=missing) for part in command]

    done = r9s(*args, "--db", str(demo_db))

    assert 2 == done.returncode
    assert f"there is no folder {missing}" in done.stderr
    assert "again" not in done.stderr
    assert "Traceback" not in done.stderr


def test_a_store_path_that_is_a_folder_exits_2_naming_it(
    env: dict[str, str], tmp_path: Path
) -> None:
    done = r9s("backfill", *OCTOBER, "--db", str(tmp_path), env=env)

    assert 2 == done.returncode
    assert str(tmp_path) in done.stderr.splitlines()[-1]
    assert "again" not in done.stderr


# -- read commands create nothing -------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["report"],
        ["report", "--html", "out.html"],
        ["export", "--format", "csv"],
        ["exporter", "--textfile", "metrics.prom"],
        ["exporter", "--port", "0"],
        ["check", "--min-balance", "1"],
    ],
)
def test_read_commands_exit_2_naming_a_missing_store_and_create_nothing(
    command: list[str], tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "r9s_async", *command, "--db", "missing.db"],
        cwd=tmp_path,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert 2 == done.returncode
    assert "no usage store at missing.db" in done.stderr
    assert [] == list(tmp_path.iterdir())


# -- permissions ------------------------------------------------------------------------------


@pytest.mark.parametrize(("mask", "mode"), [("022", 0o644), ("077", 0o600), ("002", 0o664)])
@pytest.mark.parametrize(
    "command",
    [
        ["export", "--format", "csv", "--out", "{out}"],
        ["report", "--html", "{out}"],
    ],
)
def test_written_files_get_the_mode_the_umask_gives(
    command: list[str], mask: str, mode: int, demo_db: Path, tmp_path: Path
) -> None:
    out = tmp_path / "written"
    args = " ".join(part.format(out=out) for part in command)
    script = f"umask {mask} && exec {sys.executable} -m r9s_async {args} --db {demo_db}"

    done = subprocess.run(["sh", "-c", script], env=clean_env(), capture_output=True, timeout=60)

    assert 0 == done.returncode, done.stderr
    assert mode == out.stat().st_mode & 0o777
    assert ["written"] == [p.name for p in tmp_path.iterdir()]  # no partial file left
