"""Shared plumbing: the API double's process, timing, repetition, tables and goals."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DAY = 86_400
START = 1_735_689_600  # 2025-01-01T00:00:00Z: every range starts on a UTC midnight


@dataclass(frozen=True)
class Options:
    """What the command line chose."""

    quick: bool
    pin: bool
    repeat: int | None


def server_cpu() -> int:
    """The CPU the API double is pinned to: the last one (the client keeps the others)."""
    return (os.cpu_count() or 1) - 1


def pin_client(options: Options) -> None:
    """Keep the client off the server's CPU, so the two never take turns on one core."""
    cpus = os.cpu_count() or 1
    if options.pin and cpus >= 2 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(range(cpus - 1)))


class FakeServer:
    """``FakeR9sAPI`` served by ``benchmarks._server`` in a child process."""

    def __init__(self, options: Options, **settings: Any) -> None:
        self.argv = [sys.executable, "-m", "benchmarks._server"]
        for name, value in settings.items():
            flag = "--" + name.replace("_", "-")
            if value is True:
                self.argv.append(flag)
            elif value not in (False, None):
                self.argv += [flag, str(value)]
        if options.pin and (os.cpu_count() or 1) >= 2:
            self.argv += ["--cpu", str(server_cpu())]
        self._process: subprocess.Popen[bytes] | None = None
        self.base_url = ""
        self.root = ""

    def __enter__(self) -> FakeServer:
        self._process = subprocess.Popen(
            self.argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline().decode().strip()
        if not line.startswith("http://"):
            self.__exit__(None, None, None)
            raise RuntimeError(f"the benchmark server did not start: {line!r}")
        self.base_url = line
        self.root = line.split("/api/", 1)[0]
        return self

    def __exit__(self, *_: object) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()

    def stats(self) -> dict[str, int]:
        """Requests and distinct TCP connections the fake has seen since the last reset."""
        with urllib.request.urlopen(self.root + "/_bench/stats") as response:
            result: dict[str, int] = json.load(response)
        return result

    def cpu_seconds(self) -> float:
        """CPU time the server process has used so far (Linux; 0.0 elsewhere)."""
        if self._process is None:
            return 0.0
        try:
            with open(f"/proc/{self._process.pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def reset(self) -> None:
        request = urllib.request.Request(self.root + "/_bench/reset", data=b"", method="POST")
        with urllib.request.urlopen(request) as response:
            response.read()


@dataclass(frozen=True)
class Run:
    """One timed run of one contender."""

    seconds: float
    cpu_seconds: float
    records: int
    tokens: int
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class Row:
    """All runs of one contender."""

    name: str
    runs: list[Run] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(r.seconds for r in self.runs)

    @property
    def best(self) -> float:
        return min(r.seconds for r in self.runs)

    @property
    def cpu_median(self) -> float:
        return statistics.median(r.cpu_seconds for r in self.runs)

    @property
    def records(self) -> int:
        return self.runs[-1].records

    @property
    def tokens(self) -> int:
        return self.runs[-1].tokens

    def extra_median(self, key: str) -> float:
        return statistics.median(r.extra[key] for r in self.runs)

    def extra_max(self, key: str) -> float:
        return max(r.extra[key] for r in self.runs)


Measured = tuple[int, int] | tuple[int, int, dict[str, float]]
"""What a contender returns: (records, tokens) and optionally extra figures."""


def timed(work: Callable[[], Measured]) -> Run:
    """Wall and CPU time (all threads of this process) of ``work``."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    seconds, cpu_seconds = time.perf_counter() - wall, time.process_time() - cpu
    extra = result[2] if len(result) == 3 else {}
    return Run(seconds, cpu_seconds, result[0], result[1], extra)


def repeat(contenders: dict[str, Callable[[], Run]], times: int) -> list[Row]:
    """Run every contender ``times`` times, round-robin, so drift hits all of them alike."""
    rows = {name: Row(name) for name in contenders}
    for _ in range(times):
        for name, run in contenders.items():
            rows[name].runs.append(run())
    return list(rows.values())


@dataclass(frozen=True)
class Goal:
    """A figure the issue sets a limit for."""

    name: str
    value: float
    limit: float
    unit: str = "x"

    @property
    def met(self) -> bool:
        return self.value <= self.limit

    def line(self) -> str:
        verdict = "met" if self.met else "MISSED"
        goal = f"goal <= {self.limit:g}{self.unit}"
        shown = f"{self.value:.3f}" if self.unit == "x" else f"{self.value:.1f}"
        if not self.unit:
            shown = f"{self.value:g}"
        return f"{self.name}: {shown}{self.unit} ({goal}) {verdict}"


@dataclass
class Report:
    """One benchmark's outcome: a title, what was run, a table and its goals."""

    title: str
    setup: str
    table: str
    goals: list[Goal]
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        parts = [f"### {self.title}", "", self.setup, "", self.table, ""]
        parts += [f"- {goal.line()}" for goal in self.goals]
        parts += [f"- {note}" for note in self.notes]
        return "\n".join(parts)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown pipe table, columns padded so it also reads well in a terminal."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        padded = [cells[0].ljust(widths[0])]
        padded += [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "| " + " | ".join(padded) + " |"

    rule = "| " + " | ".join(["-" * widths[0]] + ["-" * (w - 1) + ":" for w in widths[1:]]) + " |"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"


@contextmanager
def section(title: str) -> Iterator[None]:
    """Say on stderr what is running, so a long run shows progress."""
    started = time.perf_counter()
    print(f"[bench] {title} ...", file=sys.stderr, flush=True)
    yield
    print(
        f"[bench] {title} done in {time.perf_counter() - started:.1f}s", file=sys.stderr, flush=True
    )
