"""The ``r9s-usage`` command: argument parsing, output formats, progress, exit statuses."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import json
import logging
import math
import os
import re
import secrets
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import IO, Any

from . import __version__
from ._async_client import AsyncClient
from ._backfill import BackfillProgress, BackfillResult
from ._config import check_user_id, resolve_base_url
from ._exceptions import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    ConfigurationError,
    MalformedResponseError,
    PermissionDeniedError,
    R9sError,
    RateLimitError,
    ServerError,
    StoreConflictError,
    StoreError,
)
from ._models import Account, UsageReport
from ._optional import import_optional
from ._prices import PriceTable
from ._store import UsageStore, check_account_name
from ._times import DAY, day_start, to_half_open, to_unix

__all__ = ["main"]

PROG = "r9s-usage"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

TIME_HELP = (
    "Times: 2025-01-01 (UTC midnight), an ISO 8601 date-time with an offset or Z "
    "(2025-01-01T12:00:00+02:00); a date-time without an offset is taken as UTC; "
    "Unix seconds (1735689600); now, today (today's UTC midnight), yesterday (yesterday's); "
    "or a time before now: -90m, -12h, -30d, -2w (minutes, hours, days, weeks). "
    "Every range is half-open: --start counts, --end does not."
)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")
_AGO = re.compile(r"-(\d+)([smhdw])")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": DAY, "w": 7 * DAY}
_PLAIN_PROGRESS_EVERY = 5.0  # seconds between progress lines when stderr is not a terminal
_BAR_REDRAW_EVERY = 0.1

logger = logging.getLogger("r9s_async")


class UsageError(Exception):
    """A bad argument found after parsing; exit status 2."""


# -- argument types ---------------------------------------------------------------------------


def parse_time(text: str) -> int | datetime:
    """A time as the library takes it.

    ``2025-01-01``, ISO 8601 (naive = UTC), Unix seconds, ``now``, ``today`` and ``yesterday``
    (UTC midnights), or a time before now such as ``-30d`` or ``-12h``.
    """
    value = text.strip()
    if value.isdigit():
        return int(value)
    word = value.lower()
    if word == "now":
        return int(_now().timestamp())
    if word in ("today", "yesterday"):
        midnight = day_start(int(_now().timestamp()))
        return midnight - (DAY if word == "yesterday" else 0)
    ago = _AGO.fullmatch(word)
    if ago is not None:
        return int(_now().timestamp()) - int(ago[1]) * _UNITS[ago[2]]
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: use 2025-01-01, an ISO 8601 date-time "
            "(2025-01-01T12:00:00Z), Unix seconds, now, today, yesterday, or -30d, -12h, -90m"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def parse_duration(text: str) -> float:
    """``90s``, ``30m``, ``12h``, ``1d``, ``1w`` or plain seconds, as seconds."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: use seconds or a number with s, m, h, d or w (1d)"
        )
    return float(match[1]) * _UNITS[match[2]]


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= {minimum}")
    return value


def positive_int(text: str) -> int:
    """An int >= 1."""
    return _whole_number(text, 1)


def non_negative_int(text: str) -> int:
    """An int >= 0."""
    return _whole_number(text, 0)


def positive_seconds(text: str) -> float:
    """A duration > 0: seconds, or a number with s, m, h (``30``, ``1.5``, ``2m``)."""
    seconds = parse_duration(text)
    if not 0 < seconds < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration longer than 0s")
    return seconds


def positive_rate(text: str) -> float:
    """A number of requests per second > 0 (``5``, ``0.5``)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of requests per second > 0")
    return value


def user_id(text: str) -> str:
    """A member id as the API takes it."""
    try:
        check_user_id(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def account_name(text: str) -> str:
    """A readable account name, as the store takes it."""
    try:
        check_account_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _half_open(args: argparse.Namespace) -> tuple[int, int]:
    """``--start`` (default: the earliest) and ``--end`` (default: now) as the half-open
    ``[start, end)``, by the library's one conversion: both round up, an empty range is an
    error."""
    start = 0 if args.start is None else args.start
    try:
        return to_half_open(start, args.end)
    except ValueError as exc:
        raise UsageError(f"--start/--end: {exc}") from None


_CLIENT_FLAGS = ("timeout", "max_retries", "max_rate")


def _client(args: argparse.Namespace, **options: Any) -> AsyncClient:
    for name in _CLIENT_FLAGS:  # given flags win; the others keep the client's defaults
        if getattr(args, name, None) is not None:
            options[name] = getattr(args, name)
    if not os.environ.get("R9S_API_KEY"):
        raise ConfigurationError(
            "set R9S_API_KEY to your management key (it is never taken as an argument, "
            "so it stays out of shell history and process lists)"
        )
    try:
        return AsyncClient(base_url=args.base_url, **options)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


# -- progress ---------------------------------------------------------------------------------


def terminal_columns(stream: IO[str]) -> int:
    """The width of the terminal ``stream`` draws on: ``$COLUMNS`` if set, else the
    terminal's own, else 80."""
    with contextlib.suppress(ValueError):
        columns = int(os.environ.get("COLUMNS", ""))
        if columns > 0:
            return columns
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
        return 80


class ProgressPrinter:
    """Draws backfill progress on stderr: a bar on a terminal, else a line every few seconds.

    The bar never reaches the terminal's last column, so a redraw never wraps to a new line.
    """

    def __init__(
        self,
        stream: IO[str],
        label: str,
        *,
        tty: bool | None = None,
        columns: int | None = None,
    ) -> None:
        self._stream = stream
        self._label = label
        self._tty = stream.isatty() if tty is None else tty
        self._columns = columns
        self._started = time.monotonic()
        self._last_output = -math.inf
        self._drawn = False
        self.latest: BackfillProgress | None = None

    def __call__(self, progress: BackfillProgress) -> None:
        first = self.latest is None
        self.latest = progress
        now = time.monotonic()
        finished = progress.windows_done == progress.windows_total
        if self._tty:
            if finished or now - self._last_output >= _BAR_REDRAW_EVERY:
                self._stream.write("\r" + self._bar(progress, now) + "\x1b[K")
                self._stream.flush()
                self._drawn = True
                self._last_output = now
        elif first or finished or now - self._last_output >= _PLAIN_PROGRESS_EVERY:
            self._stream.write(f"{self._label}: {self._line(progress, now)}\n")
            self._stream.flush()
            self._last_output = now

    def close(self) -> None:
        """End the bar's line."""
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = False

    def _rate(self, progress: BackfillProgress, now: float) -> float:
        fetched = progress.windows_done - progress.windows_skipped
        elapsed = now - self._started
        return fetched / elapsed if elapsed > 0 and fetched else 0.0

    def _line(self, p: BackfillProgress, now: float) -> str:
        text = f"{p.windows_done}/{p.windows_total} days"
        if p.windows_skipped:
            text += f" ({p.windows_skipped} already stored)"
        text += f", {p.records:,} records, {p.tokens:,} tokens"
        if p.requests:
            text += f", {p.requests:,} requests"
        if p.retries:
            text += f", {p.retries} retries"
        rate = self._rate(p, now)
        if rate:
            text += f", {rate:.1f} days/s"
        return text

    def _bar(self, p: BackfillProgress, now: float) -> str:
        """One line shorter than the terminal: the bar, then the figures that fit."""
        columns = (self._columns or terminal_columns(self._stream)) - 1
        rate = self._rate(p, now)
        left = p.windows_total - p.windows_done
        eta = _clock(left / rate) if rate and left else ("-" if left else "0:00")
        # (text, rank): the lowest ranks are dropped first when the line is too long.
        figures = [
            (f"{p.windows_done}/{p.windows_total} days", 9),
            (f"{p.tokens:,} tokens", 7),
            (f"{p.records:,} records", 4),
            (f"{p.requests:,} requests", 3),
            (f"{p.retries} retries" if p.retries else "", 6),
            (f"{rate:.1f} days/s", 1),
            (f"ETA {eta}", 8),
        ]
        shown = [(text, rank) for text, rank in figures if text]
        while len(shown) > 1 and len(_bar_text(_MIN_BAR, shown)) > columns:
            shown.remove(min(shown, key=lambda figure: figure[1]))
        width = max(_MIN_BAR, min(_MAX_BAR, columns - len(_bar_text(0, shown))))
        filled = width * p.windows_done // p.windows_total if p.windows_total else width
        return _bar_text(width, shown, filled)[:columns]


_MIN_BAR, _MAX_BAR = 10, 24


def _bar_text(width: int, figures: list[tuple[str, int]], filled: int = 0) -> str:
    bar = f"[{'#' * filled}{'.' * (width - filled)}] "
    return bar + "  ".join(text for text, _ in figures)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


# -- output -----------------------------------------------------------------------------------


def _group(report: UsageReport, group_by: str | None) -> tuple[list[str], list[tuple[Any, ...]]]:
    if group_by is None:
        rows = [(r.timestamp, r.model, r.tokens) for r in report.records]
        return ["timestamp", "model", "tokens"], rows
    if group_by == "model":
        return ["model", "tokens"], list(report.tokens_by_model().items())
    if group_by == "day":
        return ["day", "tokens"], [(d.isoformat(), t) for d, t in report.tokens_by_day().items()]
    pairs = report.tokens_by_day_and_model().items()
    return ["day", "model", "tokens"], [(d.isoformat(), m, t) for (d, m), t in pairs]


def write_report(
    out: IO[str], report: UsageReport, *, output_format: str, group_by: str | None
) -> None:
    """Write a usage report as a table, CSV, JSON lines or one JSON document."""
    columns, rows = _group(report, group_by)
    if output_format == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
    elif output_format == "jsonl":
        for row in rows:
            out.write(json.dumps(dict(zip(columns, row, strict=True))) + "\n")
    elif output_format == "json":
        document = {
            "start": report.start,
            "end": report.end,
            "total_tokens": report.total_tokens,
            "records" if group_by is None else "groups": [
                dict(zip(columns, row, strict=True)) for row in rows
            ],
        }
        out.write(json.dumps(document, indent=2) + "\n")
    else:
        shown = [
            tuple(_iso(v) if c == "timestamp" else v for c, v in zip(columns, row, strict=True))
            for row in rows
        ]
        footer = ("total",) + ("",) * (len(columns) - 2) + (report.total_tokens,)
        _write_table(out, columns, [*shown, footer])


def _write_table(out: IO[str], columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
    cells = [[f"{v:,}" if isinstance(v, int) else str(v) for v in row] for row in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    numeric = [c == "tokens" for c in columns]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if right else v.ljust(w)
            for v, w, right in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip() + "\n"

    out.write(line(columns))
    out.write(line(["-" * w for w in widths]))
    for row in cells:
        out.write(line(row))


@contextlib.contextmanager
def _output(path: str | None, *, binary: bool) -> Iterator[IO[Any]]:
    """stdout, or a file that appears (atomically) only once it is complete."""
    if path is None:
        if binary:
            if sys.stdout.isatty():
                raise UsageError("Parquet is binary; give --out FILE or redirect stdout")
            yield sys.stdout.buffer
            sys.stdout.buffer.flush()
        else:
            yield sys.stdout
            sys.stdout.flush()
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"--out: there is no folder {folder}")
    fd, partial = _create_partial(folder)
    try:
        with open(fd, "wb" if binary else "w", encoding=None if binary else "utf-8") as file:
            yield file
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise


def _create_partial(folder: str) -> tuple[int, str]:
    """A new file in ``folder`` with the mode the user's umask gives (``mkstemp`` would make
    it 0600), under a name no one else has."""
    while True:
        partial = os.path.join(folder, f".r9s-usage-{secrets.token_hex(8)}.partial")
        try:
            return os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), partial
        except FileExistsError:
            continue


@contextlib.contextmanager
def _removed_if_left_empty(args: argparse.Namespace, user_id: str | None) -> Iterator[None]:
    """A store ``args.db`` this run creates is removed again if the run fails before storing
    anything, so a bad key or an unreachable API leaves no empty file behind."""
    path: str = args.db
    if os.path.exists(path):
        yield
        return
    try:
        yield
    except BaseException:
        if _remove_if_empty(path, user_id):
            args.resume_hint = f"nothing was stored, so {path} was not kept; run it again later"
        raise


def _remove_if_empty(path: str, user_id: str | None) -> bool:
    try:
        store = UsageStore(path, create=False)
    except (OSError, StoreError):
        return False
    with store:
        if store.windows(user_id=user_id) or store.balance_history():
            return False
    for name in (path, f"{path}-wal", f"{path}-shm", f"{path}-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
    return True


# -- commands ---------------------------------------------------------------------------------


def cmd_usage(args: argparse.Namespace) -> int:
    start, end = _half_open(args)
    client = _client(args)

    async def fetch() -> UsageReport:
        async with client:
            return await client.usage(start, end, user_id=args.user_id)

    report = asyncio.run(fetch())
    write_report(sys.stdout, report, output_format=args.format, group_by=args.group_by)
    return EXIT_OK


def _backfill(
    client: AsyncClient,
    start: int,
    end: int,
    *,
    db: str,
    user_id: str | None,
    refresh_recent: float,
    account_name: str | None = None,
) -> BackfillResult:
    label = f"backfill {_iso(start)} .. {_iso(end)}"
    printer = ProgressPrinter(sys.stderr, label)

    async def run() -> BackfillResult:
        async with client:
            return await client.backfill(
                start,
                end,
                db=db,
                user_id=user_id,
                refresh_recent=refresh_recent,
                progress=printer,
                account_name=account_name,
            )

    started = time.monotonic()
    try:
        result = asyncio.run(run())
    finally:
        printer.close()
    retries = f", {result.retries} retries" if result.retries else ""
    print(
        f"{label}: {result.windows_total} days stored ({result.windows_fetched} fetched, "
        f"{result.windows_skipped} already complete), {result.records:,} records fetched "
        f"in {result.requests:,} requests{retries} in {time.monotonic() - started:.1f}s -> {db}",
        file=sys.stderr,
    )
    return result


def check_store_path(path: str) -> None:
    """Refuse a ``--db`` that cannot become a store, naming the path and the cause, before
    anything is sent."""
    if os.path.isdir(path):
        raise UsageError(f"--db: {path} is a folder; give the path of a file in it")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"--db: there is no folder {folder}")
    if not os.path.exists(path) and not os.access(folder, os.W_OK):
        raise UsageError(f"--db: cannot create {path}: no permission to write in {folder}")


def cmd_backfill(args: argparse.Namespace) -> int:
    start, end = _half_open(args)
    check_store_path(args.db)
    client = _client(args, max_concurrency=args.max_concurrency)
    args.resume_hint = (
        f"the days stored so far are kept in {args.db}; run the same command again to resume"
    )
    try:
        with _removed_if_left_empty(args, args.user_id):
            _backfill(
                client,
                start,
                end,
                db=args.db,
                user_id=args.user_id,
                refresh_recent=args.refresh_recent,
                account_name=args.account_name,
            )
    except ValueError as exc:  # bad input found once the store is open: a taken name
        raise UsageError(str(exc)) from None
    from ._cli_money import record_balance_after_backfill

    record_balance_after_backfill(args)
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    start, end = _half_open(args)
    if args.format == "parquet":
        try:
            import_optional("pyarrow", "parquet")
        except ImportError as exc:
            raise UsageError(str(exc)) from None
    try:
        store = UsageStore(args.db, create=False)
    except FileNotFoundError:
        raise UsageError(f"--db: no usage store at {args.db}") from None
    with store:
        try:
            store.count_records(0, 1, account=args.account)  # an unknown account, before output
        except ValueError as exc:
            raise UsageError(f"--account: {exc}") from None
        with _output(args.out, binary=args.format == "parquet") as out:
            options: dict[str, Any] = {"user_id": args.user_id, "account": args.account}
            if args.format == "csv":
                count = store.export_csv(out, start, end, **options)
            elif args.format == "jsonl":
                count = store.export_jsonl(out, start, end, **options)
            else:
                count = store.export_parquet(out, start, end, **options)
    print(f"exported {count:,} records to {args.out or 'stdout'}", file=sys.stderr)
    return EXIT_OK


def cmd_exporter(args: argparse.Namespace) -> int:
    from . import _exporter as exporter

    try:
        import_optional("prometheus_client", "prometheus")
    except ImportError as exc:
        raise UsageError(str(exc)) from None
    if args.textfile is not None and args.sync_every is not None:
        raise UsageError(
            "--textfile writes the metrics once and exits, so it takes no --sync-every; "
            f"run `{PROG} backfill` before it instead"
        )
    if args.sync_every is not None and args.sync_every <= 0:
        raise UsageError("--sync-every must be longer than 0s")
    prices = PriceTable.load(args.prices) if args.prices is not None else None
    client = _client(args) if args.sync_every is not None else None  # the key, checked first
    try:
        store = UsageStore(args.db, create=False)
    except FileNotFoundError:
        raise UsageError(
            f"--db: no usage store at {args.db}; fill it first: {PROG} backfill --db {args.db}"
        ) from None
    with store:
        state = exporter.SyncState() if client is not None else None
        balances = exporter.store_balances(store)
        collector = exporter.UsageCollector(store, prices=prices, sync=state, balances=balances)
        registry = exporter.make_registry(collector)
        if args.textfile is not None:
            exporter.write_textfile(args.textfile, registry)
            print(f"{PROG} exporter: wrote the metrics to {args.textfile}", file=sys.stderr)
            return EXIT_OK if collector.store_read else EXIT_FAILURE

        async def sync() -> None:
            assert client is not None
            assert state is not None
            record = exporter.balance_recorder(store)
            await exporter.run_sync(
                client, store, every=args.sync_every, state=state, record_balance=record
            )

        def ready(url: str) -> None:
            print(f"{PROG} exporter: serving {url} (SIGTERM or Ctrl-C stops)", file=sys.stderr)
            sys.stderr.flush()

        background = sync if client is not None else None
        asyncio.run(
            exporter.serve(
                registry, host=args.host, port=args.port, background=background, ready=ready
            )
        )
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from importlib.resources import as_file, files

    from ._cli_money import write_html_report
    from .testing import TEST_API_KEY, FakeR9sAPI

    today = _now().date()
    first, last = today - timedelta(days=90), today
    start = to_unix(first, "start")
    end = to_unix(last, "end")
    api = FakeR9sAPI(mode="events", latency=0.01)
    # Without --db the usage goes to a new temporary folder; the report stays there after the
    # store is removed, under a name no other user can take.
    folder = None if args.db is not None else tempfile.mkdtemp(prefix="r9s-usage-demo-")
    db = args.db if folder is None else os.path.join(folder, "usage.db")
    page = args.html or (
        os.path.join(folder, "report.html") if folder else os.path.splitext(db)[0] + ".html"
    )
    if folder is None:
        args.resume_hint = f"run `{PROG} demo --db {db}` again to resume"
    try:
        with api.serve_in_thread() as base_url:
            print(
                f"{PROG} demo: a fake r9s API on {base_url.split('/api/')[0]} (loopback; no key "
                "and no network needed)",
                file=sys.stderr,
            )
            client = AsyncClient(TEST_API_KEY, base_url=base_url)
            _backfill(
                client, start, end, db=db, user_id=None, refresh_recent=DAY, account_name="demo"
            )
            balance_client = AsyncClient(TEST_API_KEY, base_url=base_url)

            async def read_balance() -> Any:
                async with balance_client:
                    return await balance_client.balance()

            balance = asyncio.run(read_balance())
        with UsageStore(db, create=False) as store:
            account = Account(client.account.base_url, client.account.fingerprint, "demo")
            store.record_balance(account, balance, taken_at=int(time.time()))
            by_model = store.tokens_by_model(start, end)
            with as_file(files("r9s_async") / "example_prices.toml") as table:
                prices = PriceTable.load(table)
            write_html_report(store, page, start=start, end=end, prices=prices)
    finally:
        if folder is not None:
            for name in ("usage.db", "usage.db-wal", "usage.db-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(folder, name))
    total = sum(by_model.values())
    print(f"Usage {first} to {last - timedelta(days=1)} (90 UTC days): {total:,} tokens")
    rows = [(m, t, f"{100 * t / total:.1f}%" if total else "-") for m, t in by_model.items()]
    _write_table(sys.stdout, ["model", "tokens", "share"], [*rows, ("total", total, "")])
    if folder is not None:
        print(f"(stored in a temporary {db}, now removed; keep it with --db PATH)")
    else:
        print(f"Stored in {db}; try: {PROG} report --db {db} --by model")
    print(
        f"Report (priced with the example price table): {os.path.abspath(page)}\n"
        "  open it in a browser; it is one self-contained file"
    )
    return EXIT_OK


def cmd_serve_fake(args: argparse.Namespace) -> int:
    from .testing import TEST_API_KEY, FakeR9sAPI

    api = FakeR9sAPI(mode=args.mode, end_inclusive=args.end_time == "inclusive")

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        async with api.serve(port=args.port) as base_url:
            print(f"export R9S_BASE_URL={base_url}")
            print(f"export R9S_API_KEY={TEST_API_KEY}")
            sys.stdout.flush()
            print(
                f"fake r9s API ({args.mode} records, end_time {args.end_time}) on {base_url}; "
                "the key above is the fake's public test key. Ctrl-C stops it.",
                file=sys.stderr,
            )
            await stop.wait()

    asyncio.run(serve())
    return EXIT_OK


# -- the parser -------------------------------------------------------------------------------


def _global_options(parser: argparse.ArgumentParser, *, api: bool, top: bool) -> None:
    # Accepted before or after the command; a command's copy must not reset the top's value.
    default: Any = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--debug",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="log every request and show tracebacks",
    )
    if api:
        parser.add_argument(
            "--base-url",
            metavar="URL",
            default=default,
            help="API root (default: $R9S_BASE_URL, else the public endpoint)",
        )
        parser.add_argument(
            "--timeout",
            type=positive_seconds,
            metavar="SECONDS",
            default=default,
            help="seconds one request may take, e.g. 30 or 2m (default: 30)",
        )
        parser.add_argument(
            "--max-retries",
            type=non_negative_int,
            metavar="N",
            default=default,
            help="times a failed request is tried again; 0 never (default: 3)",
        )
        parser.add_argument(
            "--max-rate",
            type=positive_rate,
            metavar="PER_SECOND",
            default=default,
            help="at most this many requests per second (default: no limit)",
        )


def _time_options(parser: argparse.ArgumentParser, *, start_required: bool, end_help: str) -> None:
    parser.add_argument(
        "--start",
        type=parse_time,
        required=start_required,
        metavar="TIME",
        help="first second of the range" + ("" if start_required else " (default: the earliest)"),
    )
    parser.add_argument("--end", type=parse_time, default=None, metavar="TIME", help=end_help)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``r9s-usage``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Usage of the r9s Manager API from the command line. The key is read from "
        "R9S_API_KEY (never from an argument), the API root from --base-url or R9S_BASE_URL.",
        epilog=TIME_HELP + " Start with: r9s-usage demo",
    )
    parser.add_argument("--version", action="version", version=f"r9s_async {__version__}")
    _global_options(parser, api=True, top=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str,
        help: str,
        run: Callable[[argparse.Namespace], int],
        api: bool,
        *,
        times: bool = True,
    ) -> Any:
        description = help + ". " + TIME_HELP if times else help + "."
        sub = commands.add_parser(name, help=help, description=description)
        _global_options(sub, api=api, top=False)
        sub.set_defaults(run=run)
        return sub

    usage = command("usage", "print usage records or totals for a range", cmd_usage, True)
    _time_options(
        usage,
        start_required=True,
        end_help="exclusive end (default: now)",
    )
    usage.add_argument(
        "--user-id", type=user_id, metavar="U", help="one member's usage (admin keys only)"
    )
    usage.add_argument(
        "--format",
        choices=["table", "csv", "jsonl", "json"],
        default="table",
        help="output format (default: table; csv has the header timestamp,model,tokens)",
    )
    usage.add_argument(
        "--group-by",
        choices=["model", "day", "day,model"],
        metavar="model|day|day,model",
        help="token totals per model, UTC day, or both (default: every record)",
    )

    backfill = command(
        "backfill",
        "fetch a range into a SQLite file, resumably (stop it any time, run it again)",
        cmd_backfill,
        True,
    )
    _time_options(backfill, start_required=True, end_help="exclusive end (default: now)")
    backfill.add_argument("--db", required=True, metavar="PATH", help="SQLite file to fill")
    backfill.add_argument(
        "--user-id", type=user_id, metavar="U", help="one member's usage (admin keys only)"
    )
    backfill.add_argument(
        "--account-name",
        type=account_name,
        metavar="NAME",
        help="a readable name for the key's account in the file, shown in exports instead of "
        "its fingerprint (kept for later runs)",
    )
    backfill.add_argument(
        "--refresh-recent",
        type=parse_duration,
        default=float(DAY),
        metavar="DURATION",
        help="fetch again days that ended less than this long ago, since their usage may "
        "still change: seconds, or 30m, 12h, 1d, 1w (default: 1d)",
    )
    backfill.add_argument(
        "--max-concurrency", type=positive_int, default=8, metavar="N", help="requests at once (8)"
    )

    export = command("export", "write the records of a backfill's SQLite file", cmd_export, False)
    export.add_argument("--db", required=True, metavar="PATH", help="SQLite file to read")
    export.add_argument(
        "--format",
        choices=["csv", "jsonl", "parquet"],
        required=True,
        help="csv (header timestamp,model,tokens,account,user_id), jsonl, or parquet (needs "
        "r9s_async[parquet])",
    )
    export.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    _time_options(export, start_required=False, end_help="exclusive end (default: now)")
    export.add_argument("--user-id", type=user_id, metavar="U", help="export a member's backfill")
    export.add_argument(
        "--account",
        metavar="NAME_OR_FINGERPRINT",
        help="export one account's records (default: every account in the file)",
    )

    # Imported here: the money commands build on this module's helpers.
    from ._cli_money import add_money_commands

    add_money_commands(command)

    exp = command(
        "exporter",
        "serve a usage store's metrics to Prometheus on /metrics (needs r9s_async[prometheus])",
        cmd_exporter,
        True,
        times=False,
    )
    exp.add_argument("--db", required=True, metavar="PATH", help="the usage store to read")
    exp.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    exp.add_argument("--port", type=int, default=9464, help="TCP port (9464; 0: any free port)")
    exp.add_argument(
        "--sync-every",
        type=parse_duration,
        metavar="DURATION",
        help="also back up the key's account into --db on this period, in the background: "
        "the last 7 days and any gap since the first stored day (needs R9S_API_KEY); "
        "a failed sync is logged and counted in r9s_sync_errors_total",
    )
    exp.add_argument(
        "--prices",
        metavar="FILE",
        help="a price table (TOML) for r9s_usage_estimated_cost_total",
    )
    exp.add_argument(
        "--textfile",
        metavar="PATH",
        help="write the metrics once to PATH, atomically, for node_exporter's textfile "
        "collector, and exit",
    )

    demo = command(
        "demo",
        "backfill 90 days from a fake API on loopback and summarise them (no key, no network)",
        cmd_demo,
        False,
        times=False,
    )
    demo.add_argument("--db", metavar="PATH", help="keep the SQLite file here (default: temporary)")
    demo.add_argument(
        "--html",
        metavar="FILE",
        help="write the HTML report here (default: beside --db, else report.html in a new "
        "temporary folder)",
    )

    fake = command(
        "serve-fake",
        "run the fake API on loopback until Ctrl-C",
        cmd_serve_fake,
        False,
        times=False,
    )
    fake.add_argument("--port", type=int, default=0, help="TCP port (default: any free port)")
    fake.add_argument(
        "--mode",
        choices=["daily", "events"],
        default="daily",
        help="daily: a record per model at each UTC midnight; events: many per day, with "
        "boundary seconds and identical twins (default: daily)",
    )
    fake.add_argument(
        "--end-time",
        choices=["inclusive", "exclusive"],
        default="inclusive",
        help="how the fake treats end_time (default: inclusive)",
    )
    return parser


# -- main -------------------------------------------------------------------------------------


def _fail(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


def _relative_times_joined(argv: Sequence[str]) -> list[str]:
    """``--start -30d`` as ``--start=-30d``: argparse takes a value that starts with ``-``
    (and is not a plain number) for an option."""
    joined: list[str] = []
    for arg in argv:
        if joined and joined[-1] in _TIME_FLAGS and _AGO.fullmatch(arg.strip().lower()):
            joined[-1] = f"{joined[-1]}={arg}"
        else:
            joined.append(arg)
    return joined


_TIME_FLAGS = ("--start", "--end")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``r9s-usage``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(_relative_times_joined(sys.argv[1:] if argv is None else argv))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if args.debug else logging.WARNING)
    try:
        return _run(args)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _run(args: argparse.Namespace) -> int:
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        status = run(args)
        sys.stdout.flush()  # here, so a reader gone away (`| head`) is caught below
        return status
    except KeyboardInterrupt:
        hint = getattr(args, "resume_hint", "")
        print(f"{PROG}: interrupted" + (f"; {hint}" if hint else ""), file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`): it has what it wanted, so this is no error. Point
        # stdout at /dev/null so Python's own flush at exit does not complain again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_OK
    except (UsageError, ConfigurationError) as exc:
        _report(args, exc)
        return EXIT_USAGE
    except StoreError as exc:
        _report(args, exc)
        # A file that cannot be a store is a bad --db; a conflict is fixed by running again.
        return EXIT_FAILURE if isinstance(exc, StoreConflictError) else EXIT_USAGE
    except OSError as exc:
        _report(args, exc)
        # A path that cannot be used (no such folder, permission denied) is a bad argument.
        return EXIT_FAILURE if exc.filename is None else EXIT_USAGE
    except Exception as exc:
        _report(args, exc)
        return EXIT_FAILURE


# Failures that a later run can get past; only these say "run the same command again".
_TRANSIENT = (APIConnectionError, RateLimitError, ServerError, StoreConflictError)


def _advice(args: argparse.Namespace, exc: Exception) -> str:
    """What to do about ``exc``, by its kind; empty when its own text says it all."""
    if isinstance(exc, AuthenticationError):
        return (
            "check R9S_API_KEY: it must be an active management key (sk_mg_...) of "
            f"{_base_url(args)} with the usage:read scope (balance:read for balances)"
        )
    if isinstance(exc, PermissionDeniedError):
        return (
            "the key lacks a scope this needs: usage:read for usage and backfills, "
            "balance:read for balances; give the key that scope or use another key"
        )
    if isinstance(exc, APITimeoutError):
        return (
            f"{_base_url(args)} did not answer in time: try again later or with a longer "
            "--timeout; the API root comes from --base-url or R9S_BASE_URL"
        )
    if isinstance(exc, APIConnectionError):
        return (
            f"could not reach {_base_url(args)}: check the address (--base-url or "
            "R9S_BASE_URL) and the network"
        )
    if isinstance(exc, RateLimitError):
        return "the API limits this key's request rate: try later, or lower --max-rate"
    if isinstance(exc, MalformedResponseError):
        # Running again would meet the same answer: resuming cannot help.
        return (
            "the server's answer does not fit the API's schema, and running again would "
            "meet the same answer: report it to r9s with the request id"
        )
    return ""


def _base_url(args: argparse.Namespace) -> str:
    try:
        return str(resolve_base_url(getattr(args, "base_url", None)))
    except ValueError:
        return str(getattr(args, "base_url", None) or os.environ.get("R9S_BASE_URL"))


def _describe(exc: Exception) -> str:
    if isinstance(exc, R9sError | UsageError):
        return str(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        cause = (exc.strerror or type(exc).__name__).lower()
        return f"{exc.filename}: {cause}"
    return f"{type(exc).__name__}: {exc}"


def _report(args: argparse.Namespace, exc: Exception) -> None:
    """One line on stderr (R9sError text carries the request id) that says what to do; a
    traceback with --debug."""
    if args.debug:
        traceback.print_exception(exc, file=sys.stderr)
    text = _describe(exc)
    advice = _advice(args, exc)
    if advice:
        text += f"; {advice}"
    hint = getattr(args, "resume_hint", "")
    if hint and isinstance(exc, _TRANSIENT):
        text += f"; {hint}"
    _fail(text)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
