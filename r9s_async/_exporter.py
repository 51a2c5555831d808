"""The Prometheus exporter: a collector that reads the usage store at each scrape, the textfile
writer for node_exporter, and the serving loop with its optional background sync.

Needs the ``prometheus`` extra (``prometheus_client``). Every figure counts the
organisation's own rows only (``user_id=None``): a member's backfill is a subset of its
organisation's usage, so adding it would count the same tokens twice.

Counters and settled days: ``r9s_usage_tokens_total`` sums the days whose window is
``"complete"``. A backfill does not fetch a complete day again once it ended
``refresh_recent`` ago, so a day's tokens move from the ``r9s_usage_recent_tokens`` gauge into
the counter once and then stay: the counter never decreases and, being read from the store,
survives restarts. (A later backfill with a *longer* ``refresh_recent`` may fetch a complete
day again; if the server's answer for it changed, the counter moves with it, and a drop is
seen by Prometheus as a counter reset.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sqlite3
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from attrs import frozen

from ._backfill import DEFAULT_REFRESH_RECENT, Duration
from ._budget import burn_rate_from_balances, runway_days
from ._exceptions import StoreError
from ._models import Account, Balance, BalanceSnapshot
from ._optional import import_optional
from ._store import UsageStore
from ._times import DAY, utc_day

if TYPE_CHECKING:
    from prometheus_client.metrics_core import GaugeMetricFamily, Metric
    from prometheus_client.registry import CollectorRegistry

    from ._async_client import AsyncClient
    from ._prices import PriceTable

__all__ = [
    "METRIC_NAMES",
    "SYNC_LOOKBACK_DAYS",
    "BalanceSource",
    "SyncState",
    "UsageCollector",
    "account_label",
    "balance_recorder",
    "make_registry",
    "render_metrics",
    "run_sync",
    "serve",
    "store_balances",
    "sync_forever",
    "sync_start",
    "write_textfile",
]

logger = logging.getLogger("r9s_async")

SYNC_LOOKBACK_DAYS = 7
"""A sync fetches at least this many UTC days before now (and every gap since the first)."""

# The sample names the exporter can produce (counters with their ``_total``), for the
# dashboard and rules tests.
METRIC_NAMES = frozenset(
    {
        "r9s_usage_tokens_total",
        "r9s_usage_recent_tokens",
        "r9s_usage_estimated_cost_total",
        "r9s_balance",
        "r9s_credit_limit",
        "r9s_balance_runway_seconds",
        "r9s_usage_last_sync_timestamp_seconds",
        "r9s_sync_errors_total",
        "r9s_up",
    }
)

# What a failing store read can raise: the scrape then says r9s_up 0 instead of failing.
_READ_ERRORS = (StoreError, sqlite3.Error, OSError, ValueError)


def _metrics_core() -> Any:
    return import_optional("prometheus_client.core", "prometheus")


# -- balances ---------------------------------------------------------------------------------


class BalanceSource(Protocol):
    """Where the collector finds balance snapshots."""

    def balance_snapshots(self, account: str) -> Sequence[BalanceSnapshot]:
        """The snapshots of ``account`` (name or fingerprint), oldest first."""


def store_balances(store: UsageStore) -> BalanceSource:
    """The store's balance snapshots (``UsageStore.balance_history``) as a
    :class:`BalanceSource`."""
    return _StoreBalances(store)


class _StoreBalances:
    def __init__(self, store: UsageStore) -> None:
        self._store = store

    def balance_snapshots(self, account: str) -> Sequence[BalanceSnapshot]:
        return self._store.balance_history(account=account)


def balance_recorder(store: UsageStore) -> Callable[[Account, Balance], None]:
    """What stores a balance the sync read: ``UsageStore.record_balance``, stamped now."""

    def record(account: Account, balance: Balance) -> None:
        store.record_balance(account, balance, taken_at=int(time.time()))

    return record


# -- the collector ----------------------------------------------------------------------------


class SyncState:
    """What the background sync reports to the collector; safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._errors: dict[str, int] = {}

    def failed(self, account: str) -> None:
        """Count one failed sync of ``account`` (its label in the store)."""
        with self._lock:
            self._errors[account] = self._errors.get(account, 0) + 1

    def watch(self, account: str) -> None:
        """Export ``account``'s error counter from now on, at 0 until a sync fails."""
        with self._lock:
            self._errors.setdefault(account, 0)

    def errors(self) -> dict[str, int]:
        """Failed syncs per account, in label order."""
        with self._lock:
            return dict(sorted(self._errors.items()))


@frozen
class _AccountFigures:
    label: str
    settled: dict[tuple[date, str], int]
    recent: dict[str, int]
    last_sync: int | None


def _read_account(store: UsageStore, fingerprint: str, label: str) -> _AccountFigures:
    # The windows first: a day complete here stays complete, so reading the records after
    # can only find a newer day still recent, which the next scrape counts as settled.
    windows = store.windows(account=fingerprint)
    settled_days = {w.day for w in windows if w.status == "complete"}
    settled: dict[tuple[date, str], int] = {}
    recent: dict[str, int] = {}
    for (day, model), tokens in store.tokens_by_day_and_model(account=fingerprint).items():
        if day in settled_days:
            settled[day, model] = tokens
        else:
            recent[model] = recent.get(model, 0) + tokens
    last_sync = max((w.fetched_at for w in windows), default=None)
    return _AccountFigures(label, settled, dict(sorted(recent.items())), last_sync)


def _by_model(cells: dict[tuple[date, str], int]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for (_, model), tokens in cells.items():
        totals[model] = totals.get(model, 0) + tokens
    return dict(sorted(totals.items()))


class UsageCollector:
    """A ``prometheus_client`` collector that reads the usage store at every scrape.

    Args:
        store: The store, opened by the caller (reads only).
        prices: With a table, ``r9s_usage_estimated_cost_total`` per model of the settled days.
        sync: The background sync's state; with it, ``r9s_sync_errors_total`` is exported.
        balances: Where balance snapshots come from; without it, no balance metrics.
        now: The clock (Unix seconds) that decides "today" for the runway's burn rate.
    """

    def __init__(
        self,
        store: UsageStore,
        *,
        prices: PriceTable | None = None,
        sync: SyncState | None = None,
        balances: BalanceSource | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._prices = prices
        self._sync = sync
        self._balances = balances
        self._now = now
        self.store_read: bool | None = None
        """Whether the last scrape read the store (``None`` before the first)."""

    def collect(self) -> Iterator[Metric]:
        """The metric families of one scrape; ``r9s_up`` is 0 when the store could not be read."""
        core = _metrics_core()
        try:
            families = self._store_families(core)
        except _READ_ERRORS as exc:
            logger.warning("the exporter could not read the usage store: %s", exc)
            families, up = [], 0
        else:
            up = 1
        self.store_read = bool(up)
        yield from families
        if self._sync is not None:
            errors = core.CounterMetricFamily(
                "r9s_sync_errors",
                "Background syncs (backfill and balance read) that failed, since the exporter "
                "started.",
                labels=["account"],
            )
            for label, count in self._sync.errors().items():
                errors.add_metric([label], count)
            yield errors
        yield core.GaugeMetricFamily(
            "r9s_up", "1 when this scrape read the usage store, 0 when it failed.", value=up
        )

    def _store_families(self, core: Any) -> list[Metric]:
        tokens = core.CounterMetricFamily(
            "r9s_usage_tokens",
            "Tokens used on settled (complete) UTC days, organisation scope.",
            labels=["account", "model"],
        )
        recent = core.GaugeMetricFamily(
            "r9s_usage_recent_tokens",
            "Tokens used on UTC days still recent (their usage may change), organisation scope.",
            labels=["account", "model"],
        )
        last_sync = core.GaugeMetricFamily(
            "r9s_usage_last_sync_timestamp_seconds",
            "When the newest window of the account was stored, Unix seconds.",
            labels=["account"],
        )
        cost = core.CounterMetricFamily(
            "r9s_usage_estimated_cost",
            "Estimated cost of the settled days' tokens from the price table (blended prices; "
            "unpriced models are left out).",
            labels=["account", "model", "currency"],
        )
        families: list[Metric] = [tokens, recent]
        if self._prices is not None:
            families.append(cost)
        balances = _balance_families(core)
        if self._balances is not None:
            families += balances
        for account in self._store.accounts():
            figures = _read_account(self._store, account.fingerprint, account.label)
            for model, total in _by_model(figures.settled).items():
                tokens.add_metric([figures.label, model], total)
            for model, total in figures.recent.items():
                recent.add_metric([figures.label, model], total)
            if figures.last_sync is not None:
                last_sync.add_metric([figures.label], figures.last_sync)
            if self._prices is not None:
                breakdown = self._prices.costs(figures.settled)
                for model, amount in breakdown.by_model().items():
                    cost.add_metric([figures.label, model, breakdown.currency], float(amount))
            self._add_balance(balances, figures.label)
        families.append(last_sync)
        return families

    def _add_balance(self, families: list[GaugeMetricFamily], label: str) -> None:
        if self._balances is None:
            return
        snapshots = self._balances.balance_snapshots(label)
        if not snapshots:
            return
        balance, credit, runway = families
        latest = max(snapshots, key=lambda s: s.taken_at)
        balance.add_metric([label, latest.currency], float(latest.balance))
        credit.add_metric([label, latest.currency], float(latest.credit_limit))
        today = utc_day(int(self._now()))
        burn = burn_rate_from_balances(((s.taken_at, s.balance) for s in snapshots), today=today)
        if burn is None:
            return  # unknown (too few snapshots), not infinite
        days = runway_days(latest.balance, latest.credit_limit, burn)
        runway.add_metric([label], float("inf") if days is None else float(days * DAY))


def _balance_families(core: Any) -> list[GaugeMetricFamily]:
    return [
        core.GaugeMetricFamily(
            "r9s_balance",
            "The newest balance snapshot of the account.",
            labels=["account", "currency"],
        ),
        core.GaugeMetricFamily(
            "r9s_credit_limit",
            "The credit limit of the newest balance snapshot.",
            labels=["account", "currency"],
        ),
        core.GaugeMetricFamily(
            "r9s_balance_runway_seconds",
            "Seconds until balance plus credit limit reaches zero at the burn rate of the "
            "last 7 complete UTC days (from balance snapshots); +Inf when nothing was spent.",
            labels=["account"],
        ),
    ]


def make_registry(collector: UsageCollector) -> CollectorRegistry:
    """A registry holding only ``collector`` (no process or platform metrics)."""
    registry_module = import_optional("prometheus_client.registry", "prometheus")
    # auto_describe=False: registering must not read the store.
    registry: CollectorRegistry = registry_module.CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def render_metrics(registry: CollectorRegistry) -> bytes:
    """One scrape, in the Prometheus text format (version 0.0.4)."""
    exposition = import_optional("prometheus_client.exposition", "prometheus")
    data: bytes = exposition.generate_latest(registry)
    return data


def write_textfile(path: str, registry: CollectorRegistry) -> None:
    """Write one scrape to ``path`` atomically, for node_exporter's textfile collector.

    The text goes to a temporary file in the same folder (a name node_exporter ignores: it
    reads ``*.prom`` only), is flushed to disk, and replaces ``path`` in one rename: a reader
    sees the old file or the new one, never half of one.
    """
    data = render_metrics(registry)
    folder = os.path.dirname(os.path.abspath(path))
    fd, partial = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with open(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(partial, 0o644)  # node_exporter often runs as another user
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a power cut
    finally:
        os.close(directory)


# -- the background sync ----------------------------------------------------------------------


def sync_start(store: UsageStore, fingerprint: str, *, now: int) -> int:
    """The first second a sync of account ``fingerprint`` asks for: the first stored day of
    the account, or :data:`SYNC_LOOKBACK_DAYS` days before today, whichever is earlier (the
    backfill skips the complete days in between, and fills any gap)."""
    floor = (utc_day(now) - timedelta(days=SYNC_LOOKBACK_DAYS)).toordinal()
    first = floor
    if any(a.fingerprint == fingerprint for a in store.accounts()):
        windows = store.windows(account=fingerprint)
        if windows:
            first = min(floor, windows[0].day.toordinal())
    return (first - date(1970, 1, 1).toordinal()) * DAY


def account_label(store: UsageStore, account: Account) -> str:
    """How the store names ``account`` (its name there, else the fingerprint)."""
    with contextlib.suppress(*_READ_ERRORS):
        for held in store.accounts():
            if held.fingerprint == account.fingerprint:
                return held.label
    return account.label


async def run_sync(
    client: AsyncClient,
    store: UsageStore,
    *,
    every: float,
    state: SyncState,
    refresh_recent: Duration = DEFAULT_REFRESH_RECENT,
    record_balance: Callable[[Account, Balance], None] | None = None,
) -> None:
    """Back ``client``'s account up into ``store`` every ``every`` seconds, until cancelled.

    Each sync runs an incremental backfill from :func:`sync_start` to now into the store's
    file, then, with ``record_balance``, reads the balance and hands it over. The client is
    closed at the end.
    """
    account = client.account
    state.watch(account_label(store, account))

    async def once() -> None:
        now = int(time.time())
        start = sync_start(store, account.fingerprint, now=now)
        await client.backfill(start, now, db=store.path, refresh_recent=refresh_recent)
        if record_balance is not None:
            record_balance(account, await client.balance())

    async with client:
        await sync_forever(
            once, every=every, label=lambda: account_label(store, account), state=state
        )


async def sync_forever(
    sync_once: Callable[[], Awaitable[None]],
    *,
    every: float,
    label: Callable[[], str],
    state: SyncState,
) -> None:
    """Run ``sync_once`` now and then every ``every`` seconds until cancelled.

    A failed sync is logged and counted in ``state`` under ``label()``; the loop goes on.
    """
    while True:
        try:
            await sync_once()
        except Exception as exc:
            state.failed(label())
            logger.error("sync failed (the exporter keeps serving): %s", exc)
        await asyncio.sleep(every)


async def serve(
    registry: CollectorRegistry,
    *,
    host: str,
    port: int,
    background: Callable[[], Coroutine[Any, Any, None]] | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve ``/metrics`` on ``host:port`` until SIGTERM or SIGINT, running ``background``
    meanwhile (cancelled at the end).

    Args:
        registry: What to serve.
        host: The address to listen on.
        port: The TCP port; 0 picks a free one.
        background: A coroutine function to run beside the server (the sync loop).
        ready: Called with the URL of ``/metrics`` once the server listens.

    Raises:
        OSError: The address cannot be listened on.
    """
    exposition = import_optional("prometheus_client.exposition", "prometheus")
    server, thread = exposition.start_http_server(port, addr=host, registry=registry)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    task = asyncio.create_task(background()) if background is not None else None
    try:
        bound = server.server_address
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        if ready is not None:
            ready(f"http://{shown}:{bound[1]}/metrics")
        await stop.wait()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # shutdown() waits for serve_forever to return: off the loop, so it cannot stall it.
        await asyncio.to_thread(server.shutdown)
        server.server_close()
        thread.join()
