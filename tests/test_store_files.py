"""Which files UsageStore accepts: never a write to a file that is not ours, one typed error for
every unusable file, reads that do not write, and stores on read-only media."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from _helpers import D0, DAY

from r9s_async import Account, StoreError, UsageRecord, UsageStore

ORG = Account("https://api.example/v1", "aaaaaaaaaaaaaaaa", "prod")

V1_SCHEMA = """
CREATE TABLE windows (scope TEXT NOT NULL, day INTEGER NOT NULL, start INTEGER NOT NULL,
    end INTEGER NOT NULL, status TEXT NOT NULL, fetched_at INTEGER NOT NULL, request_id TEXT,
    record_count INTEGER NOT NULL, tokens INTEGER NOT NULL, PRIMARY KEY (scope, day))
    WITHOUT ROWID;
CREATE TABLE records (scope TEXT NOT NULL, day INTEGER NOT NULL, seq INTEGER NOT NULL,
    timestamp INTEGER NOT NULL, model TEXT NOT NULL, tokens INTEGER NOT NULL,
    PRIMARY KEY (scope, day, seq)) WITHOUT ROWID;
PRAGMA application_id = 1916367733;  -- "r9su", as 0.1 wrote it
PRAGMA user_version = 1;
"""


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def foreign_sqlite(path: Path) -> Path:
    """Another application's database, in the default rollback-journal mode."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (body TEXT)")
    db.execute("INSERT INTO notes VALUES ('keep me')")
    db.commit()
    db.close()
    return path


def version_1_store(path: Path) -> Path:
    """A store as r9s_async 0.1 wrote it: no accounts."""
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA)
    db.execute("INSERT INTO records VALUES ('', ?, 0, ?, 'm', 5)", (D0, D0))
    db.commit()
    db.close()
    return path


def r9s(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("R9S_")}
    env["R9S_API_KEY"] = "sk_mg_" + "0" * 64
    env["R9S_BASE_URL"] = "http://127.0.0.1:9/api"  # never reached: the store is refused first
    return subprocess.run(
        [sys.executable, "-m", "r9s_async", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("create", [True, False])
def test_a_foreign_sqlite_file_is_refused_with_its_bytes_unchanged(
    tmp_path: Path, create: bool
) -> None:
    path = foreign_sqlite(tmp_path / "other.db")
    before = digest(path)

    with pytest.raises(StoreError, match=r"another application.* left unchanged") as caught:
        UsageStore(path, create=create)

    assert str(path) == caught.value.path
    assert before == digest(path)
    assert ["other.db"] == sorted(p.name for p in tmp_path.iterdir())


@pytest.mark.parametrize("command", ["export", "backfill"])
def test_the_command_refuses_a_foreign_file_with_exit_2_and_leaves_it_unchanged(
    tmp_path: Path, command: str
) -> None:
    path = foreign_sqlite(tmp_path / "other.db")
    before = digest(path)
    args = ["--format", "csv"] if command == "export" else ["--start", "2024-10-04"]

    done = r9s(command, "--db", str(path), *args)

    assert 2 == done.returncode
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"r9s-usage: error: {str(path)!r} is an SQLite file of another")
    assert "choose another path" in line
    assert "resume" not in line
    assert before == digest(path)


@pytest.mark.parametrize("content", [b"this is not a database, just text\n" * 200, b"\x00" * 4096])
def test_a_file_that_is_not_sqlite_is_a_store_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(content)

    with pytest.raises(StoreError, match="cannot be used as a usage store"):
        UsageStore(path)

    assert content == path.read_bytes()


def test_a_corrupt_store_exits_2_and_does_not_advise_a_resume(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)

    done = r9s("backfill", "--db", str(path), "--start", "2024-10-04")

    assert 2 == done.returncode
    assert "cannot be used as a usage store" in done.stderr
    assert "move it aside" in done.stderr
    assert "resume" not in done.stderr
    assert "Traceback" not in done.stderr


def test_a_store_of_schema_version_1_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = version_1_store(tmp_path / "usage.db")
    before = digest(path)

    with pytest.raises(StoreError, match=r"schema version 1, written by r9s_async 0\.1") as caught:
        UsageStore(path)
    done = r9s("export", "--db", str(path), "--format", "csv")

    assert "move the file aside and run the backfill again" in str(caught.value)
    assert 2 == done.returncode
    assert "move the file aside and run the backfill again" in done.stderr
    assert before == digest(path)


def test_a_store_missing_its_tables_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    UsageStore(path).close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE accounts")
    db.commit()
    db.close()

    with pytest.raises(StoreError, match="lacks the tables accounts"):
        UsageStore(path)


@pytest.mark.parametrize("path", [":memory:", ""])
def test_an_in_memory_store_is_refused_at_construction(path: str) -> None:
    with pytest.raises(ValueError, match="needs a file"):
        UsageStore(path)


def test_an_empty_file_becomes_a_store_but_is_not_one_to_read(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    path.touch()

    with pytest.raises(StoreError, match="empty file"):
        UsageStore(path, create=False)
    with UsageStore(path) as store:
        store.register_account(ORG)

    with UsageStore(path, create=False) as store:
        assert [ORG] == store.accounts()


def filled(path: Path) -> Path:
    with UsageStore(path) as store:
        store.replace_window(
            ORG,
            "",
            D0,
            D0 + DAY,
            [UsageRecord(D0, 5, "m"), UsageRecord(D0 + 9, 7, "n")],
            status="complete",
            fetched_at=0,
            request_id="r",
        )
    return path


def test_reading_a_store_writes_nothing_to_it(tmp_path: Path) -> None:
    path = filled(tmp_path / "usage.db")
    before = digest(path)

    with UsageStore(path, create=False) as store:
        assert 2 == len(list(store.iter_records()))
        assert {"n": 7, "m": 5} == store.tokens_by_model()
        assert [ORG] == store.accounts()

    assert before == digest(path)
    assert not Path(f"{path}-journal").exists()


@pytest.fixture
def read_only_store() -> Iterator[Path]:
    """A store in a folder of mode 0o555, the file 0o444, with no -wal or -shm beside it."""
    with tempfile.TemporaryDirectory() as top:
        os.chmod(top, 0o755)  # others may enter: the reader below may run as nobody
        folder = Path(top) / "media"
        folder.mkdir()
        path = filled(folder / "usage.db")
        assert ["usage.db"] == [p.name for p in folder.iterdir()]
        path.chmod(0o444)
        folder.chmod(0o555)
        try:
            yield path
        finally:
            folder.chmod(0o755)


READ_AS_ANOTHER_USER = """
import os, sys
from r9s_async._cli import main  # imported while still root: nobody cannot read the venv
import r9s_async._cli_money
if os.geteuid() == 0:  # root ignores permission bits: read as nobody, who has only them
    os.setgid(65534)
    os.setuid(65534)
try:
    open(os.path.join(os.path.dirname(sys.argv[1]), "probe"), "w")
except PermissionError:
    pass
else:
    sys.exit("the folder is writable")
sys.exit(main([sys.argv[2], "--db", sys.argv[1], *sys.argv[3:]]))
"""


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        (["export", "--format", "jsonl"], '"account": "prod"'),
        (["report", "--by", "model"], "total      12"),
        (["report", "--by", "account", "--format", "json"], '"total_tokens": 12'),
    ],
)
def test_a_store_on_read_only_media_can_be_exported_and_reported(
    read_only_store: Path, command: list[str], shown: str
) -> None:
    before = digest(read_only_store)

    done = subprocess.run(
        [sys.executable, "-c", READ_AS_ANOTHER_USER, str(read_only_store), *command],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert 0 == done.returncode, done.stderr
    assert shown in done.stdout
    assert before == digest(read_only_store)
    assert ["usage.db"] == [p.name for p in read_only_store.parent.iterdir()]
