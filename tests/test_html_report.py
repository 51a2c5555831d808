"""The HTML report: a pure renderer (escaping, reproducible bytes, unpriced never shown as 0,
recent days marked, nothing external), and the same page checked in a real headless Chromium
at desktop and phone widths: pixels drawn, no horizontal overflow, charts and tables as given.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pytest
from _browser import Chromium, Page, decode_png
from _report_sample import DAYS, RECENT_DAYS, sample_report

from r9s_async._html_report import (
    OTHER_MODELS,
    PALETTE,
    BalancePoint,
    DayUsage,
    MemberUsage,
    ModelUsage,
    ReportData,
    format_money,
    format_share,
    format_tokens,
    render_html,
)

D0 = date(2025, 3, 1)
AS_OF = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)


def small_report(**changes: Any) -> ReportData:
    """Three days, two models, one of them unpriced, one recent day."""
    report = ReportData(
        title="Small report",
        start=D0,
        end=D0 + timedelta(days=3),
        as_of=AS_OF,
        currency="USD",
        total_tokens=1_750,
        estimated_cost=Decimal("0.75"),
        unpriced_tokens=250,
        days=[
            DayUsage(D0, {"alpha": 1_000}),
            DayUsage(D0 + timedelta(days=2), {"alpha": 500, "beta": 250}, recent=True),
        ],
        models=[ModelUsage("alpha", 1_500, Decimal("0.75")), ModelUsage("beta", 250, None)],
    )
    return attrs.evolve(report, **changes)


def table_row(page: str, model: str) -> str:
    match = re.search(rf'<tr data-model="{re.escape(model)}">(.*?)</tr>', page)
    assert match is not None, f"no table row for {model}"
    return match.group(1)


# -- the renderer ------------------------------------------------------------------------------


def test_the_same_figures_give_the_same_bytes_whatever_their_order() -> None:
    report = sample_report()
    shuffled = attrs.evolve(
        report,
        days=list(reversed(report.days)),
        models=list(reversed(report.models)),
        members=list(reversed(report.members)),
        balance_history=list(reversed(report.balance_history)),
    )

    assert render_html(report) == render_html(sample_report())
    assert render_html(report) == render_html(shuffled)


def test_every_text_from_outside_is_escaped() -> None:
    hostile = '<script>alert("x")</script> & "co"'
    report = small_report(
        title="<b>Q1</b>",
        models=[ModelUsage(hostile, 1_750, Decimal(1))],
        days=[DayUsage(D0, {hostile: 1_750})],
        members=[MemberUsage("<i>acct</i>", "u'1", 1_000), MemberUsage("b", None, 750)],
    )

    page = render_html(report)

    for raw in (hostile, "<b>Q1</b>", "<i>acct</i>", "u'1"):
        assert raw not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &quot;co&quot;" in page
    assert "<title>&lt;b&gt;Q1&lt;/b&gt;</title>" in page
    assert "&lt;i&gt;acct&lt;/i&gt;" in page
    assert "u&#x27;1" in page


def test_the_page_needs_nothing_from_outside() -> None:
    page = render_html(sample_report())

    assert "://" not in page
    assert [] == re.findall(r"""(?:src|href|action)\s*=""", page)
    assert "<script" not in page.lower()
    assert "@import" not in page
    assert [] == re.findall(r"url\((?!#)", page)  # only references to the page's own patterns
    assert page.startswith("<!DOCTYPE html>\n")
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page


def test_an_unpriced_model_is_shown_as_unpriced_never_as_zero() -> None:
    page = render_html(small_report())

    assert '<td class="num unpriced">unpriced</td>' in table_row(page, "beta")
    assert "USD\u00a00.00" not in page
    assert '<li class="cost-row unpriced" data-model="beta">' in page
    assert "250 tokens unpriced" in page


def test_without_a_price_table_there_is_no_cost_and_no_cost_chart() -> None:
    page = render_html(
        small_report(
            estimated_cost=None, unpriced_tokens=0, models=[ModelUsage("alpha", 1_750, None)]
        )
    )

    assert 'id="cost"' not in page
    assert "not priced" in page
    assert "USD" not in page


def test_recent_days_are_hatched_and_explained_in_the_legend() -> None:
    page = render_html(small_report())

    assert 1 * 2 == page.count('<g class="day recent"')  # in the wide and the narrow chart
    assert 2 * 2 == page.count('<g class="day"')  # the day without data is drawn empty
    assert 'fill="url(#wide-hatch-0)"' in page
    assert 'fill="url(#wide-hatch-1)"' in page
    assert "still changing: recent days may still grow" in page
    assert "last 1 day still changing" in page


def test_without_recent_days_nothing_is_marked() -> None:
    page = render_html(small_report(days=[DayUsage(D0, {"alpha": 1_750})]))
    body = page.split("</style>")[1]

    assert "recent" not in body
    assert "hatch-0)" not in body
    assert "still changing" not in body


def test_models_take_the_palette_in_order_of_tokens() -> None:
    models = [ModelUsage(f"m{i}", 100 + i, None) for i in range(10)]

    page = render_html(small_report(models=models, days=[]))

    legend = re.findall(r'<li data-series="([^"]+)">', page.split('id="share"')[0])
    assert ["m9", "m8", "m7", "m6", "m5", "m4", "m3", OTHER_MODELS] == legend
    assert f'--c:{PALETTE[0]}" aria-hidden="true"></span>m9</th>' in page
    assert f'--c:{PALETTE[-1]}" aria-hidden="true"></span>m0</th>' in page  # one of "other"


def test_the_palette_has_three_to_one_contrast_on_white() -> None:
    def luminance(colour: str) -> float:
        channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    contrasts = {colour: 1.05 / (luminance(colour) + 0.05) for colour in PALETTE}

    assert {} == {colour: c for colour, c in contrasts.items() if c < 3}
    assert len(PALETTE) == len(set(PALETTE))


def test_figures_are_formatted_the_same_everywhere() -> None:
    assert "1,234,567" == format_tokens(1_234_567)
    assert "USD\u00a01,234.57" == format_money(Decimal("1234.565001"), "USD")
    assert "<\u00a0USD\u00a00.01" == format_money(Decimal("0.0004"), "USD")
    assert "0.00" == format_money(Decimal(0), None)
    assert "USD\u00a0-5.00" == format_money(Decimal("-5"), "USD")
    assert "42.5%" == format_share(425, 1_000)
    assert "<0.1%" == format_share(1, 10_000)
    assert "0.0%" == format_share(0, 0)


def test_headline_figures_say_what_is_unknown() -> None:
    page = render_html(small_report(runway_note="no usage in the last 7 days"))

    assert '<div class="card" data-figure="balance">' in page
    assert "never read" in page
    assert (
        '<p class="value muted">unknown</p><p class="note">no usage in the last 7 days</p>' in page
    )


def test_runway_and_balance_when_known() -> None:
    page = render_html(
        small_report(
            balance=Decimal("470.010481"),
            credit_limit=Decimal("50"),
            runway_days=Decimal("41.6"),
            runway_note="at the last 7 days' rate",
        )
    )

    assert "USD\u00a0470.01" in page
    assert "credit limit USD\u00a050.00" in page
    assert "\u2248\u00a042 days" in page


def test_accounts_and_members_get_a_table_only_when_there_are_several() -> None:
    one = render_html(small_report(members=[MemberUsage("prod", None, 1_750)]))
    two = render_html(
        small_report(
            members=[
                MemberUsage("prod", "u-1", 1_000, Decimal("0.50")),
                MemberUsage("prod", None, 750, Decimal("0.25"), 250),
            ]
        )
    )

    assert 'id="members"' not in one
    assert 'id="members"' in two
    # The organisation as a whole comes before its members.
    assert two.index("whole organisation") < two.index("u-1")


def test_balance_chart_only_with_readings() -> None:
    readings = [
        BalancePoint(AS_OF - timedelta(days=1), Decimal("10")),
        BalancePoint(AS_OF, Decimal("7.5")),
    ]

    assert 'id="balance"' not in render_html(small_report())
    page = render_html(small_report(balance_history=readings))
    assert 'id="balance"' in page
    assert 2 == page.count('<polyline class="line"')  # wide and narrow


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"end": D0}, "is not after start"),
        ({"as_of": datetime(2025, 3, 4)}, "timezone-aware"),
        ({"days": [DayUsage(D0 + timedelta(days=3), {"alpha": 1})]}, "outside"),
        ({"days": [DayUsage(D0, {"alpha": 1}), DayUsage(D0, {"alpha": 2})]}, "given twice"),
    ],
)
def test_inconsistent_figures_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_html(small_report(**changes))


# -- in a real browser ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> Iterator[Chromium]:
    browser = Chromium()
    try:
        yield browser
    finally:
        browser.stop()


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(render_html(sample_report()), encoding="utf-8")
    return path


VISIBLE_DAILY_CHART = (
    "[...document.querySelectorAll('svg.daily')].find(svg => svg.getBoundingClientRect().width > 0)"
)


async def rendered_table(page: Page, name: str) -> list[list[str]]:
    rows: list[list[str]] = await page.evaluate(
        f"[...document.querySelectorAll('table.{name} tbody tr')]"
        ".map(tr => [...tr.cells].map(cell => cell.innerText.trim()))"
    )
    return rows


@pytest.mark.parametrize(("width", "height", "mobile"), [(1280, 900, False), (390, 844, True)])
async def test_the_report_in_chromium(
    chromium: Chromium, report_file: Path, width: int, height: int, mobile: bool
) -> None:
    report = sample_report()
    async with chromium.page() as page:
        await page.open(report_file.as_uri(), width=width, height=height, mobile=mobile)

        # Nothing but the file itself was loaded.
        assert [report_file.as_uri()] == page.requests()

        # No horizontal overflow: the page is as wide as the viewport.
        page_width, inner_width = await page.evaluate(
            "[document.documentElement.scrollWidth, innerWidth]"
        )
        assert (width, width) == (page_width, inner_width)

        # One chart is visible, spans the content's width, and has a group per day.
        chart = await page.evaluate(
            f"(svg => ({{variant: svg.classList.contains('chart-wide') ? 'wide' : 'narrow',"
            " width: svg.getBoundingClientRect().width,"
            " room: (style => svg.parentElement.clientWidth - parseFloat(style.paddingLeft)"
            " - parseFloat(style.paddingRight))(getComputedStyle(svg.parentElement)),"
            " days: svg.querySelectorAll('g.day').length,"
            " recent: svg.querySelectorAll('g.day.recent').length,"
            " bars: svg.querySelectorAll('rect.bar').length,"
            " tokens: [...svg.querySelectorAll('g.day')]"
            ".reduce((sum, g) => sum + Number(g.dataset.tokens), 0)}))"
            f"({VISIBLE_DAILY_CHART})"
        )
        assert ("wide" if width > 640 else "narrow") == chart["variant"]
        assert chart["room"] == chart["width"]
        assert DAYS == chart["days"]
        assert RECENT_DAYS == chart["recent"]
        assert DAYS * len(report.models) == chart["bars"]  # every model every day in the sample
        assert report.total_tokens == chart["tokens"]

        legend = await page.evaluate(
            "[...document.querySelectorAll('#daily .legend li')].map(li => li.innerText.trim())"
        )
        by_tokens = sorted(report.models, key=lambda m: -m.tokens)
        expected_legend = [m.model for m in by_tokens]
        assert [*expected_legend, "still changing: recent days may still grow"] == legend

        # The tables hold the renderer's figures.
        models = await rendered_table(page, "models")
        expected_models = [
            [
                m.model,
                format_tokens(m.tokens),
                format_share(m.tokens, report.total_tokens),
                "unpriced"
                if m.estimated_cost is None
                else format_money(m.estimated_cost, report.currency),
            ]
            for m in by_tokens
        ]
        assert expected_models == models
        members = await rendered_table(page, "members")
        assert [["production", "u-1042"], ["production", "u-2201"], ["staging"]] == [
            row[:2] if row[1] != "whole organisation" else row[:1] for row in members
        ]

        # The screenshot has the page drawn: chart colours present, not one flat colour.
        image = decode_png(await page.screenshot())
        assert width == image.width
        colours = image.colours()
        assert len(colours) > 50
        for colour in PALETTE[: len(report.models)]:
            assert tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5)) in colours
