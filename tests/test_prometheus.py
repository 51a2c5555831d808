"""The exporter scraped by a real Prometheus, and the shipped dashboard and rules checked.

Prometheus and promtool are Debian's ``prometheus`` package (``.ci/run`` installs it). The test
starts ``/usr/bin/prometheus`` on loopback with its configuration and database in a temporary
folder, scraping the exporter every second, and stops it at the end. A missing binary fails
the test: it is part of CI, not optional.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from _exporter_sample import Expected, exporter_process, fill_store, scrape

from r9s_async import UsageStore
from r9s_async._exporter import METRIC_NAMES

PROMETHEUS = Path("/usr/bin/prometheus")
PROMTOOL = Path("/usr/bin/promtool")
MONITORING = resources.files("r9s_async") / "monitoring"
RULES = "r9s-alerts.yml"
DASHBOARD = "r9s-grafana-dashboard.json"
Completed = subprocess.CompletedProcess[str]
METRIC = re.compile(r"\br9s_[a-z_]+\b")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.load(answer)


@contextmanager
def prometheus(tmp: Path, target: str, rules: Path) -> Iterator[str]:
    """A Prometheus scraping ``target`` (host:port) every second; yields its API root."""
    assert PROMETHEUS.exists(), f"{PROMETHEUS} is missing: apt-get install prometheus"
    port = free_port()
    config = tmp / "prometheus.yml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules)],
                "scrape_configs": [{"job_name": "r9s", "static_configs": [{"targets": [target]}]}],
            }
        )
    )
    log = (tmp / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            str(PROMETHEUS),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


def query(api: str, promql: str) -> list[dict[str, Any]]:
    url = f"{api}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    answer = get_json(url)
    assert "success" == answer["status"], answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def poll(api: str, promql: str, *, within: float = 20.0) -> list[dict[str, Any]]:
    """The first non-empty answer to ``promql``, waiting for Prometheus to start and scrape."""
    deadline = time.monotonic() + within
    while True:
        try:
            result = query(api, promql)
        except OSError:  # not listening yet
            result = []
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"no answer to {promql!r} after {within}s")
        time.sleep(0.2)


async def test_prometheus_scrapes_the_settled_total_of_the_store(tmp_path: Path) -> None:
    db = str(tmp_path / "usage.db")
    expected: Expected = await fill_store(db)
    with UsageStore(db, create=False) as store:
        settled = sum(w.tokens for w in store.windows() if w.status == "complete")
    assert expected.settled_total() == settled

    def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]], Completed]:
        with (
            exporter_process("--db", db) as (url, _),
            resources.as_file(MONITORING / RULES) as rules,
        ):
            target = urllib.parse.urlsplit(url).netloc
            with prometheus(tmp_path, target, rules) as api:
                total = poll(api, "sum(r9s_usage_tokens_total)")
                deadline = time.monotonic() + 10
                while True:  # each rule is "unknown" until its first evaluation
                    groups = get_json(f"{api}/api/v1/rules")["data"]["groups"]
                    health = {r["health"] for g in groups for r in g["rules"]}
                    if "unknown" not in health or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
                checked = subprocess.run(
                    [str(PROMTOOL), "check", "metrics"],
                    input=scrape(url),
                    capture_output=True,
                    text=True,
                )
                return total, groups, checked

    total, groups, checked = await asyncio.to_thread(run)

    assert float(settled) == float(total[0]["value"][1])
    loaded = [(r["name"], r["health"]) for g in groups for r in g["rules"]]
    assert {
        ("R9sExporterDown", "ok"),
        ("R9sSyncStale", "ok"),
        ("R9sSyncErrors", "ok"),
        ("R9sRunwayLow", "ok"),
    } == set(loaded)
    assert 0 == checked.returncode, checked.stdout + checked.stderr
    assert "" == checked.stdout + checked.stderr  # no lint complaint either


def test_promtool_accepts_the_alert_rules() -> None:
    assert PROMTOOL.exists(), f"{PROMTOOL} is missing: apt-get install prometheus"
    with resources.as_file(MONITORING / RULES) as rules:
        checked = subprocess.run(
            [str(PROMTOOL), "check", "rules", str(rules)], capture_output=True, text=True
        )

    assert 0 == checked.returncode, checked.stdout + checked.stderr
    assert "SUCCESS: 4 rules found" in checked.stdout


def test_the_rules_name_only_exported_metrics() -> None:
    lines = (MONITORING / RULES).read_text().splitlines()
    exprs = [line.split("expr:", 1)[1] for line in lines if line.strip().startswith("expr:")]

    used = {name for expr in exprs for name in METRIC.findall(expr)}

    assert {
        "r9s_up",
        "r9s_usage_last_sync_timestamp_seconds",
        "r9s_sync_errors_total",
        "r9s_balance_runway_seconds",
    } == used


def expressions(node: Any) -> Iterator[str]:
    """Every PromQL expression of a dashboard: panel targets and variable queries."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield value
            elif key == "query" and isinstance(value, dict | str):
                yield from ([value] if isinstance(value, str) else expressions(value))
            else:
                yield from expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from expressions(item)


def test_the_dashboard_parses_and_queries_only_exported_metrics() -> None:
    dashboard = json.loads((MONITORING / DASHBOARD).read_text())

    found = list(expressions(dashboard))
    used = {name for expr in found for name in METRIC.findall(expr)}

    assert len(found) >= 10
    assert all(METRIC.search(expr) for expr in found)
    assert set() == used - METRIC_NAMES
    assert METRIC_NAMES == used  # every metric has a panel


@pytest.mark.parametrize("name", [RULES, DASHBOARD])
def test_the_monitoring_files_ship_in_the_package(name: str) -> None:
    assert (MONITORING / name).is_file()
