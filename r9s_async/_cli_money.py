"""The money commands of ``r9s-usage``: ``balance`` (kept with ``--db``), ``report``, ``check``.

The bodies live here and ``_cli.build_parser()`` registers them; the figures come from
``_report.py``, the checks from ``_budget.py``, the webhook post from ``_transport.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import IO, Any

from yarl import URL

from ._async_client import AsyncClient
from ._budget import CheckResult, checks_document, exit_code, failure_text, webhook_payload
from ._cli import (
    EXIT_OK,
    PROG,
    UsageError,
    _client,
    _half_open,
    _iso,
    _now,
    _output,
    _removed_if_left_empty,
    _time_options,
    account_name,
    check_store_path,
    user_id,
)
from ._exceptions import R9sError
from ._html_report import render_html
from ._models import Account, Balance
from ._prices import ESTIMATE_NOTE, PriceTable, display_amount
from ._report import (
    GROUPS,
    CheckLimits,
    FigureUnavailable,
    StoreReport,
    build_report,
    report_data,
    resolve_account,
    run_checks,
)
from ._store import UsageStore
from ._times import DAY, day_start
from ._transport import post_json

__all__ = ["add_money_commands", "record_balance_after_backfill", "write_html_report"]

REFRESH_DAYS = 35
"""``check --refresh`` backfills this many days: the spike check's 29 and some slack."""

WEBHOOK_TIMEOUT = 10.0
"""Seconds a webhook post may take."""

logger = logging.getLogger("r9s_async")

Command = Callable[..., Any]  # _cli.build_parser's `command(name, help, run, api, *, times)`


# -- argument types ---------------------------------------------------------------------------


def amount(text: str) -> Decimal:
    """An exact decimal amount such as ``25`` or ``12.50``."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite():
        raise argparse.ArgumentTypeError(f"{text!r} is not a decimal number such as 25 or 12.50")
    return value


def non_negative_amount(text: str) -> Decimal:
    """An exact decimal >= 0."""
    value = amount(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def positive_amount(text: str) -> Decimal:
    """An exact decimal > 0."""
    value = amount(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not greater than zero")
    return value


def token_count(text: str) -> int:
    """A whole number of tokens >= 0 (``1_000_000`` and ``1,000,000`` are taken too)."""
    cleaned = text.strip().replace("_", "").replace(",", "")
    if not cleaned.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of tokens")
    return int(cleaned)


def webhook_url(text: str) -> str:
    """An ``http`` or ``https`` URL with a host."""
    try:
        url = URL(text)
    except ValueError:
        url = URL()
    if url.scheme not in ("http", "https") or not url.host:
        raise argparse.ArgumentTypeError("the webhook must be an http:// or https:// URL")
    return text


# -- shared -----------------------------------------------------------------------------------


def _load_prices(path: str | None) -> PriceTable | None:
    # A PriceTableError is a ConfigurationError: exit 2, naming the file, entry and field.
    return None if path is None else PriceTable.load(path)


def _open_store(path: str) -> UsageStore:
    if os.path.isdir(path):
        raise UsageError(f"--db: {path} is a folder, not a usage store")
    try:
        return UsageStore(path, create=False)
    except FileNotFoundError:
        raise UsageError(f"--db: no usage store at {path}") from None


def _today() -> date:
    return _now().date()


def _write_json(out: IO[str], document: Any) -> None:
    out.write(json.dumps(document, indent=2) + "\n")


def _table(out: IO[str], columns: Sequence[str], rows: Sequence[Sequence[str]], right: int) -> None:
    """A plain table; the columns from ``right`` on are numbers, aligned right."""
    widths = [max([len(c), *(len(row[i]) for row in rows)]) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if i >= right else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return "  ".join(parts).rstrip() + "\n"

    out.write(line(columns))
    out.write(line(["-" * w for w in widths]))
    for row in rows:
        out.write(line(row))


# -- balance ----------------------------------------------------------------------------------


def _fetch_balance(client: AsyncClient) -> Balance:
    async def fetch() -> Balance:
        async with client:
            return await client.balance()

    return asyncio.run(fetch())


def _balance_document(balance: Balance, taken_at: int, account: Account) -> dict[str, Any]:
    return {
        "account": account.label,
        "taken_at": _iso(taken_at),
        "balance": str(balance.balance),
        "currency": balance.currency_code,
        "coupon_balance": str(balance.coupon_balance),
        "credit_limit": str(balance.credit_limit),
        "total_coupon_amount": str(balance.total_coupon_amount),
        "request_id": balance.request_id,
    }


def cmd_balance(args: argparse.Namespace) -> int:
    if args.db is not None:
        check_store_path(args.db)
    client = _client(args)
    account = client.account
    if args.account_name is not None:
        account = Account(account.base_url, account.fingerprint, args.account_name)
    balance = _fetch_balance(client)
    taken_at = int(time.time())
    if args.db is not None:
        with UsageStore(args.db) as store:
            try:
                store.record_balance(account, balance, taken_at=taken_at)
            except ValueError as exc:  # a name another account of the file has
                raise UsageError(str(exc)) from None
    if args.format == "json":
        _write_json(sys.stdout, _balance_document(balance, taken_at, account))
        return EXIT_OK
    rows = [
        ("balance", f"{balance.balance} {balance.currency_code}"),
        ("coupon balance", str(balance.coupon_balance)),
        ("credit limit", str(balance.credit_limit)),
        ("total coupon amount", str(balance.total_coupon_amount)),
    ]
    for name, value in rows:
        print(f"{name:<20} {value}")
    return EXIT_OK


def record_balance_after_backfill(args: argparse.Namespace) -> None:
    """Read the balance and keep it in ``args.db``; a failure is only a warning.

    A key without the ``balance:read`` scope must not fail a backfill that succeeded.
    """
    try:
        client = _client(args)
        balance = _fetch_balance(client)
        with UsageStore(args.db, create=False) as store:
            store.record_balance(client.account, balance, taken_at=int(time.time()))
    except (R9sError, OSError) as exc:
        logger.warning(
            "the backfill is stored, but its balance snapshot is not: %s (a key needs the "
            "balance:read scope for runway and balance checks)",
            exc,
        )


# -- report -----------------------------------------------------------------------------------


def _cost(value: Decimal | None) -> str:
    return "" if value is None else display_amount(value)


def _report_rows(report: StoreReport, *, shown: bool) -> list[list[Any]]:
    priced = report.currency is not None
    rows: list[list[Any]] = []
    for row in report.rows:
        key = ["(org)" if v is None and shown else v for v in row.key]
        values: list[Any] = [*key, row.tokens]
        if priced:
            values += [_cost(row.cost) if shown else row.cost, row.unpriced_tokens]
        rows.append(values)
    return rows


def _money(value: Decimal | None, currency: str | None) -> str:
    return "-" if value is None else f"{display_amount(value)} {currency or ''}".rstrip()


def headline(report: StoreReport, prices_path: str | None) -> list[str]:
    """The lines under a report table: unpriced tokens, the estimate note, burn and runway."""
    lines = []
    if report.unpriced_by_model:
        models = ", ".join(f"{m} {t:,}" for m, t in report.unpriced_by_model.items())
        lines.append(
            f"unpriced: {report.unpriced_tokens:,} tokens ({models}): no price in {prices_path}"
        )
    if report.currency is not None:
        lines.append(f"note: {ESTIMATE_NOTE}")
    burn = report.burn
    if burn is None:
        lines.append(str(report.runway_note))
        return lines
    span = f"{burn.first_day} to {burn.last_day}"
    source = (
        "estimated from prices"
        if burn.source == "prices"
        else "from the decreases between stored balance snapshots"
    )
    if burn.per_day is None:
        lines.append(f"burn rate: unknown ({source}, {span})")
    else:
        lines.append(f"burn rate: {_money(burn.per_day, burn.currency)}/day, {source}, {span}")
    balance = report.balance
    if report.runway_days is not None and balance is not None:
        days = display_amount(report.runway_days, 1, rounding=ROUND_DOWN)
        lines.append(
            f"runway: {days} days (balance {_money(balance.balance, balance.currency)} + credit "
            f"limit {_money(balance.credit_limit, balance.currency)} on {balance.day})"
        )
    else:
        lines.append(f"runway: {report.runway_note}")
    return lines


def report_document(report: StoreReport) -> dict[str, Any]:
    """The ``--format json`` document of a report: exact amounts as decimal strings."""
    columns = [*report.columns, "tokens"]
    if report.currency is not None:
        columns += ["cost", "unpriced_tokens"]
    rows = [dict(zip(columns, row, strict=True)) for row in _report_rows(report, shown=False)]
    for row in rows:
        if "cost" in row:
            row["cost"] = None if row["cost"] is None else str(row["cost"])
    burn = report.burn
    balance = report.balance
    return {
        "start": None if report.start is None else _iso(report.start),
        "end": _iso(report.end),
        "by": list(report.columns),
        "rows": rows,
        "total_tokens": report.total_tokens,
        "currency": report.currency,
        "total_cost": None if report.total_cost is None else str(report.total_cost),
        "unpriced_tokens": report.unpriced_tokens,
        "unpriced_by_model": report.unpriced_by_model,
        "note": ESTIMATE_NOTE if report.currency is not None else None,
        "account": report.account,
        "balance": None
        if balance is None
        else {
            "taken_at": _iso(balance.taken_at),
            "balance": str(balance.balance),
            "credit_limit": str(balance.credit_limit),
            "currency": balance.currency,
        },
        "burn": None
        if burn is None
        else {
            "per_day": None if burn.per_day is None else str(burn.per_day),
            "currency": burn.currency,
            "source": burn.source,
            "first_day": burn.first_day.isoformat(),
            "last_day": burn.last_day.isoformat(),
        },
        "runway_days": None if report.runway_days is None else str(report.runway_days),
        "runway_note": report.runway_note,
    }


def write_html_report(
    store: UsageStore,
    out_path: str,
    *,
    start: int | None,
    end: int | None,
    account: str | None = None,
    user_id: str | None = None,
    prices: PriceTable | None = None,
) -> None:
    """Write the store's HTML report to ``out_path``, atomically."""
    try:
        data = report_data(
            store, start=start, end=end, account=account, user_id=user_id, prices=prices
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    page = render_html(data)
    with _output(out_path, binary=False) as out:
        out.write(page)


def _html_report(args: argparse.Namespace) -> int:
    if args.by:
        raise UsageError("--html draws every view on one page; it takes no --by")
    start, end = _half_open(args)  # checks the range; a missing --start/--end: the store's
    prices = _load_prices(args.prices)
    with _open_store(args.db) as store:
        write_html_report(
            store,
            args.html,
            start=None if args.start is None else start,
            end=None if args.end is None else end,
            account=args.account,
            user_id=args.user_id,
            prices=prices,
        )
    print(f"{PROG} report: wrote {os.path.abspath(args.html)}", file=sys.stderr)
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    if args.html is not None:
        return _html_report(args)
    start, end = _half_open(args)
    prices = _load_prices(args.prices)
    with _open_store(args.db) as store:
        try:
            report = build_report(
                store,
                start=start,
                end=end,
                by=args.by or (),
                account=args.account,
                user_id=args.user_id,
                prices=prices,
                today=_today(),
            )
        except ValueError as exc:
            raise UsageError(f"--account: {exc}") from None
    out = sys.stdout
    if args.format == "json":
        _write_json(out, report_document(report))
        return EXIT_OK
    columns = [*report.columns, "tokens"]
    if prices is not None:
        columns += [f"cost ({prices.currency})", "unpriced tokens"]
    if args.format == "csv":
        writer = csv.writer(out, lineterminator="\n")
        names = [*report.columns, "tokens"] + (["cost", "unpriced_tokens"] if prices else [])
        writer.writerow(names)
        for row in _report_rows(report, shown=False):
            writer.writerow(["" if v is None else v for v in row])
        return EXIT_OK
    rows = [
        [f"{v:,}" if isinstance(v, int) else str(v) for v in row]
        for row in _report_rows(report, shown=True)
    ]
    total: list[Any] = ["total", *[""] * (len(report.columns) - 1)] if report.columns else ["total"]
    total.append(f"{report.total_tokens:,}")
    if prices is not None:
        total += [_cost(report.total_cost), f"{report.unpriced_tokens:,}"]
    names = columns if report.columns else ["", *columns]
    body = rows if report.columns else []
    _table(out, names, [*body, total], right=max(len(report.columns), 1))
    for line in headline(report, args.prices):
        out.write(line + "\n")
    return EXIT_OK


# -- check ------------------------------------------------------------------------------------


def _refresh(args: argparse.Namespace) -> Account:
    """Backfill the last ``REFRESH_DAYS`` days into ``args.db`` and store a balance, quietly."""
    now = int(time.time())
    start = day_start(now) - REFRESH_DAYS * DAY
    client = _client(args)
    account = client.account

    async def run() -> None:
        async with client:
            await client.backfill(start, now, db=args.db)

    check_store_path(args.db)
    with _removed_if_left_empty(args, None):
        asyncio.run(run())
    balance = _fetch_balance(_client(args))
    with UsageStore(args.db, create=False) as store:
        store.record_balance(account, balance, taken_at=int(time.time()))
    return account


def _choose_account(store: UsageStore, wanted: str | None, refreshed: Account | None) -> Account:
    if wanted is None and refreshed is not None:
        return next(a for a in store.accounts() if a.fingerprint == refreshed.fingerprint)
    try:
        accounts = resolve_account(store, wanted)
    except ValueError as exc:
        raise UsageError(f"--account: {exc}") from None
    if not accounts:
        raise UsageError(f"{store.path} holds no account yet: run a backfill or `balance --db`")
    if len(accounts) > 1:
        names = ", ".join(a.label for a in accounts)
        raise UsageError(
            f"{store.path} holds several accounts ({names}): choose one with --account"
        )
    return accounts[0]


def _warn_if_yesterday_missing(store: UsageStore, account: Account, limits: CheckLimits) -> None:
    daily = (limits.max_daily_tokens, limits.max_daily_cost, limits.spike_factor)
    if all(value is None for value in daily):
        return
    today = day_start(int(time.time()))
    if not store.coverage(account, "", today - DAY, today):
        logger.warning(
            "the store holds no usage of account %s for %s (counted as none): run a backfill "
            "first, or pass --refresh",
            account.label,
            datetime.fromtimestamp(today - DAY, tz=UTC).date(),
        )


def _send_webhook(
    args: argparse.Namespace, store: UsageStore, account: Account, results: list[CheckResult]
) -> str | None:
    """Post the failures once per check and day; what happened, for the JSON document."""
    failed = [r for r in results if not r.passed]
    if args.webhook is None or not failed:
        return None
    keys = [r.dedupe_key(account.fingerprint) for r in failed]
    if not args.repeat and not set(keys) - store.alerts_sent(keys):
        return "already sent"
    payload = webhook_payload(results, account=account.label)
    origin = URL(args.webhook).origin()
    try:
        status = asyncio.run(post_json(args.webhook, payload, seconds=WEBHOOK_TIMEOUT))
    except R9sError as exc:
        print(f"r9s-usage: webhook post failed: {exc}; it is tried again next run", file=sys.stderr)
        return "failed"
    if not 200 <= status < 300:
        print(
            f"r9s-usage: webhook post failed: {origin} answered HTTP {status}; it is tried "
            "again next run",
            file=sys.stderr,
        )
        return "failed"
    store.record_alerts_sent(keys, sent_at=int(time.time()))
    return "sent"


def cmd_check(args: argparse.Namespace) -> int:
    limits = CheckLimits(
        min_balance=args.min_balance,
        min_runway_days=args.min_runway_days,
        max_daily_tokens=args.max_daily_tokens,
        max_daily_cost=args.max_daily_cost,
        spike_factor=args.spike_factor,
    )
    if not limits.any:
        raise UsageError(
            "no check asked for: give --min-balance, --min-runway-days, --max-daily-tokens, "
            "--max-daily-cost or --spike-factor"
        )
    if limits.max_daily_cost is not None and args.prices is None:
        raise UsageError("--max-daily-cost needs --prices FILE")
    prices = _load_prices(args.prices)
    refreshed = _refresh(args) if args.refresh else None
    with _open_store(args.db) as store:
        account = _choose_account(store, args.account, refreshed)
        try:
            results = run_checks(store, account, limits, prices=prices, today=_today())
        except FigureUnavailable as exc:
            raise UsageError(str(exc)) from None
        _warn_if_yesterday_missing(store, account, limits)
        webhook = _send_webhook(args, store, account, results)
    if args.format == "json":
        document = checks_document(results, account=account.label)
        document["webhook"] = webhook
        _write_json(sys.stdout, document)
    else:
        sys.stdout.write(failure_text(results))
    return exit_code(results)


# -- the parser -------------------------------------------------------------------------------


def add_money_commands(command: Command) -> None:
    """Register ``balance``, ``report`` and ``check`` with ``_cli.build_parser``'s factory."""
    balance = command(
        "balance",
        "print the account balance, and keep it in a store with --db",
        cmd_balance,
        True,
        times=False,
    )
    balance.add_argument(
        "--db",
        metavar="PATH",
        help="also keep the balance in this SQLite file (created if missing)",
    )
    balance.add_argument(
        "--account-name",
        type=account_name,
        metavar="NAME",
        help="with --db: a readable name for the key's account in the file",
    )
    balance.add_argument(
        "--format",
        choices=["table", "json"],
        default="table",
        help="output format (default: table; json: one document, amounts as exact strings)",
    )

    report = command(
        "report",
        "print token totals (and estimated costs, burn rate and runway) from a SQLite file",
        cmd_report,
        False,
    )
    report.add_argument("--db", required=True, metavar="PATH", help="SQLite file to read")
    report.add_argument(
        "--by",
        action="append",
        choices=GROUPS,
        metavar="|".join(GROUPS),
        help="group by model, UTC day, month or account (account and member); repeat to "
        "group by several, e.g. --by day --by model (default: one total)",
    )
    _time_options(report, start_required=False, end_help="exclusive end (default: now)")
    report.add_argument(
        "--account",
        metavar="NAME_OR_FINGERPRINT",
        help="one account's usage (default: every account in the file)",
    )
    report.add_argument("--user-id", type=user_id, metavar="U", help="a member's backfill")
    report.add_argument(
        "--format",
        choices=["table", "csv", "json"],
        default="table",
        help="output format (default: table; json: one document, amounts as exact strings)",
    )
    report.add_argument(
        "--prices",
        metavar="FILE",
        help="a TOML price table: adds estimated costs, and the burn rate comes from them",
    )
    report.add_argument(
        "--html",
        metavar="FILE",
        help="write one self-contained HTML page (charts and tables; opens offline) instead; "
        "without --start/--end it covers the stored days, so the same store gives the same file",
    )

    check = command(
        "check",
        "exit 3 when a budget check fails, for cron and CI (one line per failed check)",
        cmd_check,
        True,
        times=False,
    )
    check.add_argument("--db", required=True, metavar="PATH", help="SQLite file to read")
    check.add_argument(
        "--min-balance", type=amount, metavar="X", help="fail when the latest balance is below X"
    )
    check.add_argument(
        "--min-runway-days",
        type=non_negative_amount,
        metavar="N",
        help="fail when the runway is shorter than N days",
    )
    check.add_argument(
        "--max-daily-tokens",
        type=token_count,
        metavar="N",
        help="fail when the last complete UTC day used more than N tokens",
    )
    check.add_argument(
        "--max-daily-cost",
        type=non_negative_amount,
        metavar="X",
        help="fail when the last complete UTC day's estimated cost is above X (needs --prices)",
    )
    check.add_argument(
        "--spike-factor",
        type=positive_amount,
        metavar="F",
        help="fail when the last complete UTC day used more than F times the median of the "
        "28 days before it",
    )
    check.add_argument("--prices", metavar="FILE", help="a TOML price table")
    check.add_argument(
        "--account",
        metavar="NAME_OR_FINGERPRINT",
        help="the account to check (needed when the file holds several)",
    )
    check.add_argument(
        "--refresh",
        action="store_true",
        help=f"first backfill the last {REFRESH_DAYS} days and read the balance (R9S_API_KEY)",
    )
    check.add_argument(
        "--webhook",
        type=webhook_url,
        metavar="URL",
        help="on failure, POST a JSON payload with a `text` field (Slack-compatible), once "
        "per check and day",
    )
    check.add_argument(
        "--repeat", action="store_true", help="post to the webhook even if already sent"
    )
    check.add_argument(
        "--format",
        choices=["text", "json"],
        default="text",
        help="text: one line per failed check; json: one document with every check",
    )
