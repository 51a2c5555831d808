"""``r9s-usage report --html`` and the demo's report: the page the command writes holds the
store's figures (read back from a real Chromium's DOM), and the same store gives the same bytes."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path

import pytest
from _browser import Chromium, Page
from test_cli import r9s

from r9s_async import UsageStore
from r9s_async._html_report import format_money, format_share, format_tokens
from r9s_async._prices import PriceTable

EXAMPLE_PRICES = str(files("r9s_async") / "example_prices.toml")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """The demo run once with --db: its store, the report it wrote, and its stdout."""
    folder = tmp_path_factory.mktemp("demo")
    db = folder / "usage.db"
    done = r9s("demo", "--db", str(db))
    assert 0 == done.returncode, done.stderr
    return db, folder / "usage.html", done.stdout


def test_the_demo_writes_its_report_beside_the_store_and_prints_the_path(
    demo: tuple[Path, Path, str],
) -> None:
    _, page, stdout = demo

    assert f"Report (priced with the example price table): {page}" in stdout
    assert page.read_text(encoding="utf-8").startswith("<!DOCTYPE html>\n")


def test_the_demo_without_db_keeps_only_its_report() -> None:
    done = r9s("demo")

    assert 0 == done.returncode, done.stderr
    match = re.search(r"^Report \(priced with the example price table\): (\S+)$", done.stdout, re.M)
    assert match is not None, done.stdout
    page = Path(match[1])
    try:
        assert ["report.html"] == [p.name for p in page.parent.iterdir()]
        assert "Usage of demo" in page.read_text(encoding="utf-8")
    finally:
        shutil.rmtree(page.parent)


def test_the_example_price_table_ships_in_the_wheel(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), "."],
        cwd=Path(__file__).parent.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert 0 == done.returncode, done.stderr
    (wheel,) = tmp_path.glob("*.whl")

    names = zipfile.ZipFile(wheel).namelist()
    assert "r9s_async/example_prices.toml" in names
    assert "r9s_async/_html_report.py" in names


def test_the_same_store_gives_the_same_bytes(demo: tuple[Path, Path, str], tmp_path: Path) -> None:
    db, _, _ = demo
    first, second = tmp_path / "a.html", tmp_path / "b.html"

    one = r9s("report", "--db", str(db), "--html", str(first), "--prices", EXAMPLE_PRICES)
    two = r9s("report", "--db", str(db), "--html", str(second), "--prices", EXAMPLE_PRICES)

    assert 0 == one.returncode, one.stderr
    assert 0 == two.returncode, two.stderr
    assert "" == one.stdout
    assert f"r9s-usage report: wrote {first}" in one.stderr
    assert first.read_bytes() == second.read_bytes()


def test_the_page_covers_the_range_asked_for(demo: tuple[Path, Path, str], tmp_path: Path) -> None:
    db, _, _ = demo
    out = tmp_path / "week.html"
    with UsageStore(db, create=False) as store:
        windows = store.windows()
    first, last = windows[10].day, windows[16].day

    done = r9s(
        "report", "--db", str(db), "--html", str(out), "--start", str(first), "--end", str(last)
    )

    assert 0 == done.returncode, done.stderr
    page = out.read_text(encoding="utf-8")
    assert f"{first} to {windows[15].day} (6 days)" in page
    assert 6 * 2 == page.count('<g class="day')  # the wide and the narrow chart
    assert f"{sum(w.tokens for w in windows[10:16]):,}" in page


def test_html_takes_no_grouping(demo: tuple[Path, Path, str], tmp_path: Path) -> None:
    done = r9s("report", "--db", str(demo[0]), "--html", str(tmp_path / "x.html"), "--by", "day")

    assert 2 == done.returncode
    assert "takes no --by" in done.stderr
    assert [] == list(tmp_path.iterdir())


# -- in a real browser ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> Iterator[Chromium]:
    browser = Chromium()
    try:
        yield browser
    finally:
        browser.stop()


async def texts(page: Page, selector: str) -> list[list[str]]:
    rows: list[list[str]] = await page.evaluate(
        f"[...document.querySelectorAll('{selector}')]"
        ".map(tr => [...tr.cells].map(cell => cell.innerText.trim()))"
    )
    return rows


@pytest.mark.parametrize(("width", "height", "mobile"), [(1280, 900, False), (390, 844, True)])
async def test_a_cli_written_report_shows_the_stores_figures_in_chromium(
    chromium: Chromium, demo: tuple[Path, Path, str], width: int, height: int, mobile: bool
) -> None:
    db, page_file, _ = demo
    prices = PriceTable.load(EXAMPLE_PRICES)
    with UsageStore(db, create=False) as store:
        by_model = store.tokens_by_model()
        windows = store.windows()
        cells = store.tokens_by_day_and_model()
        balance = store.balance_history()[-1]
    total = sum(by_model.values())
    costs = prices.costs(cells)

    async with chromium.page() as page:
        await page.open(page_file.as_uri(), width=width, height=height, mobile=mobile)

        assert [page_file.as_uri()] == page.requests()
        assert width == await page.evaluate("document.documentElement.scrollWidth")
        headline = await page.evaluate(
            "Object.fromEntries([...document.querySelectorAll('.card')]"
            ".map(c => [c.dataset.figure, c.querySelector('.value').innerText.trim()]))"
        )
        assert format_tokens(total) == headline["tokens"]
        assert format_money(costs.total, "USD") == headline["cost"].replace(" ", "\u00a0")
        assert format_money(balance.balance, "USD") == headline["balance"].replace(" ", "\u00a0")
        assert headline["runway"].startswith("\u2248")
        newest = max([balance.taken_at, *(w.fetched_at for w in windows)])
        as_of = datetime.fromtimestamp(newest, tz=UTC)
        assert as_of.date().isoformat() == headline["as-of"]  # the newest data, not the clock

        chart = await page.evaluate(
            "(svg => ({days: svg.querySelectorAll('g.day').length,"
            " recent: svg.querySelectorAll('g.day.recent').length,"
            " tokens: [...svg.querySelectorAll('g.day')]"
            ".map(g => Number(g.dataset.tokens))}))"
            "([...document.querySelectorAll('svg.daily')]"
            ".find(svg => svg.getBoundingClientRect().width > 0))"
        )
        assert len(windows) == chart["days"]
        assert sum(w.status == "recent" for w in windows) == chart["recent"] >= 1
        assert [w.tokens for w in windows] == chart["tokens"]

        rows = await texts(page, "table.models tbody tr")
        by_cost = costs.by_model()
        expected = [
            [
                model,
                format_tokens(tokens),
                format_share(tokens, total),
                format_money(by_cost[model], "USD"),
            ]
            for model, tokens in sorted(by_model.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
        assert expected == [[cell.replace(" ", "\u00a0") for cell in row] for row in rows]
