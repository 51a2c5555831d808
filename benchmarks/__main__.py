"""``python -m benchmarks [--quick] [--only NAME ...]``: run the suite and print the tables."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable

import aiohttp

import r9s_async

from . import latency, memory, parse, rate_limit, sync_facade
from ._harness import Options, Report, pin_client, section

BENCHMARKS: dict[str, Callable[[Options], Report]] = {
    "latency": latency.run,
    "parse": parse.run,
    "memory": memory.run,
    "sync": sync_facade.run,
    "rate_limit": rate_limit.run,
}


def machine() -> str:
    """Cores, CPU model and versions, for the record."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores, {model}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}, "
        f"r9s_async {r9s_async.__version__}"
    )


def idle_share(seconds: float = 1.0) -> float:
    """How idle the CPUs were over ``seconds``: other work on the machine makes noise."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            ticks = [int(v) for v in stat.readline().split()[1:]]
        return ticks[3] + ticks[4], sum(ticks)  # idle + iowait, all

    try:
        idle, total = sample()
        time.sleep(seconds)
        idle2, total2 = sample()
    except OSError:
        return 1.0
    return (idle2 - idle) / max(total2 - total, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument(
        "--only", nargs="+", choices=sorted(BENCHMARKS), help="run only these benchmarks"
    )
    parser.add_argument("--repeat", type=int, help="runs per contender (default: per benchmark)")
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin the server and client to separate CPUs"
    )
    parser.add_argument(
        "--check", action="store_true", help="exit with status 1 when a goal is missed"
    )
    args = parser.parse_args(argv)
    options = Options(quick=args.quick, pin=not args.no_pin, repeat=args.repeat)
    pin_client(options)
    idle_before = idle_share()
    if idle_before < 0.9:
        print(
            f"[bench] the machine is busy ({idle_before:.0%} idle): figures will be noisy",
            file=sys.stderr,
        )
    started = time.perf_counter()
    reports: list[Report] = []
    for name in args.only or list(BENCHMARKS):
        with section(name):
            reports.append(BENCHMARKS[name](options))
    elapsed = time.perf_counter() - started
    command = "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"## Benchmarks{' (--quick)' if args.quick else ''}\n")
    print(f"Machine: {machine()}  ")
    print(f"Command: `{command.strip()}`; whole run {elapsed:.0f} s.  ")
    print(f"CPU idle in the second before the run: {idle_before:.0%}\n")
    for report in reports:
        print(report.render(), end="\n\n")
    goals = [goal for report in reports for goal in report.goals]
    print("### Goals\n")
    for goal in goals:
        print(f"- {goal.line()}")
    missed = [goal for goal in goals if not goal.met]
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
