"""Fixtures of the dlt integration tests: real destinations (DuckDB, a throwaway PostgreSQL).

Collected only with ``R9S_INTEGRATION=1`` (the ``dlt`` nox session sets it): the main suite runs
without dlt installed. ``R9S_DAGSTER=1`` collects the Dagster recipe's test instead (nox -s
dagster). A missing PostgreSQL binary fails the tests, it never skips them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from integration._figures import FIGURES

os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"  # no network beyond loopback

PG_BIN = Path(os.environ.get("R9S_PG_BIN", "/usr/lib/postgresql/15/bin"))


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if os.environ.get("R9S_INTEGRATION") != "1":
        return True
    # The Dagster recipe needs dagster, which only its own session (nox -s dagster) installs.
    dagster = collection_path.name == "test_dagster_recipe.py"
    if dagster != (os.environ.get("R9S_DAGSTER") == "1") and collection_path.suffix == ".py":
        return True
    return None


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("load figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _as_owner(argv: list[str]) -> list[str]:
    # initdb refuses to run as root: CI runs the tests as root, so the cluster runs as nobody.
    if os.geteuid() == 0:
        return ["runuser", "-u", "nobody", "--", *argv]
    return argv


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server of its own: a cluster in a temp dir, trust auth, 127.0.0.1 only."""
    for tool in ("initdb", "pg_ctl", "postgres"):
        assert (PG_BIN / tool).is_file(), f"PostgreSQL is missing: no {PG_BIN / tool}"
    root = Path(tempfile.mkdtemp(prefix="r9s-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "nobody", "nogroup")
    data, sockets = root / "data", root / "sock"
    port = _free_port()
    run = _as_owner
    subprocess.run(
        run(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        ),
        check=True,
        capture_output=True,
    )
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(sockets, "nobody", "nogroup")
    options = f"-h 127.0.0.1 -p {port} -k {sockets} -F -c fsync=off"
    started = time.perf_counter()
    subprocess.run(
        run(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(root / "server.log"),
                "-w",
                "-t",
                "60",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    FIGURES.append(f"postgresql: cluster started in {time.perf_counter() - started:.2f} s")
    try:
        # dlt insists on a password; trust auth ignores it.
        yield f"postgresql://postgres:trust@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
            check=False,
            capture_output=True,
        )
        with contextlib.suppress(OSError):
            shutil.rmtree(root)
