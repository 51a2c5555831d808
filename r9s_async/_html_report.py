"""The HTML usage report: report figures in, one self-contained HTML5 page out (no I/O).

The page needs nothing but itself: inline CSS, inline SVG charts, no JavaScript, no URL to
fetch, so it opens offline, mails as one file, and prints. The charts are drawn here, by a small
SVG writer (~200 lines) rather than a plotting library: bars, a line and axes are all this page
needs, it adds no dependency to the base install, and it keeps the output byte-reproducible
(plotting libraries embed dates, random ids and float noise), so the same figures always give
the same bytes. Every text that reaches the page goes through ``html.escape``: model names and
account labels come from the server or the user.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from attrs import field, frozen

__all__ = [
    "PALETTE",
    "BalancePoint",
    "DayUsage",
    "MemberUsage",
    "ModelUsage",
    "ReportData",
    "render_html",
]

PALETTE = (
    "#2563eb",  # blue
    "#c2410c",  # orange
    "#047857",  # green
    "#7c3aed",  # violet
    "#be185d",  # pink
    "#0e7490",  # teal
    "#a16207",  # ochre
    "#475569",  # slate: also "other models"
)
"""Series colours, given to models largest first; each has at least 3:1 contrast on white."""

OTHER_MODELS = "Other models"
_MAX_SERIES = len(PALETTE)


@frozen
class DayUsage:
    """Tokens of one UTC day.

    Attributes:
        day: The UTC day.
        tokens_by_model: Tokens per model on that day.
        recent: ``True`` for a day whose figures may still change (within the store's
            ``refresh_recent``): the charts mark it.
    """

    day: date
    tokens_by_model: Mapping[str, int]
    recent: bool = False


@frozen
class ModelUsage:
    """One model over the whole report.

    Attributes:
        model: The model name, as the server sent it.
        tokens: Its tokens in the report's range.
        estimated_cost: Its estimated cost, or ``None`` when the price table has no price for
            it (shown as "unpriced", never as 0).
    """

    model: str
    tokens: int
    estimated_cost: Decimal | None = None


@frozen
class MemberUsage:
    """One account, or one member of an organisation, over the whole report.

    Attributes:
        account: The account's label.
        member: The ``user_id`` the usage was read for, or ``None`` for the whole organisation.
        tokens: Its tokens in the report's range.
        estimated_cost: The estimated cost of its priced tokens, or ``None`` if none are priced.
        unpriced_tokens: Its tokens of models without a price.
    """

    account: str
    member: str | None
    tokens: int
    estimated_cost: Decimal | None = None
    unpriced_tokens: int = 0


@frozen
class BalancePoint:
    """One balance reading.

    Attributes:
        at: When it was read (timezone-aware).
        balance: The balance then.
    """

    at: datetime
    balance: Decimal


@frozen(kw_only=True)
class ReportData:
    """Everything the report shows, already computed by the caller.

    Attributes:
        title: The page's title.
        start: The first day of the range.
        end: The day after the last one: the range is ``[start, end)``.
        as_of: When the data was last synchronised ("data as of"; timezone-aware).
        currency: The currency of every amount, for example ``"USD"``; ``None`` if unknown.
        total_tokens: Tokens in the range.
        estimated_cost: Estimated cost of the priced tokens; ``None`` without a price table.
        unpriced_tokens: Tokens of models the price table has no price for.
        balance: The latest balance, or ``None`` if never read.
        credit_limit: The latest credit limit, or ``None`` if never read.
        runway_days: Days the balance lasts at the recent rate, or ``None`` when unknown.
        runway_note: How the runway was estimated, or why it is unknown.
        days: Tokens per day and model; days of the range left out count as no usage.
        models: One row per model.
        members: One row per account or member; the page shows a table when there are two
            or more.
        balance_history: Balance readings over time, charted when there are any.
    """

    title: str
    start: date
    end: date
    as_of: datetime
    currency: str | None
    total_tokens: int
    estimated_cost: Decimal | None
    unpriced_tokens: int = 0
    balance: Decimal | None = None
    credit_limit: Decimal | None = None
    runway_days: Decimal | None = None
    runway_note: str | None = None
    days: Sequence[DayUsage] = field(default=())
    models: Sequence[ModelUsage] = field(default=())
    members: Sequence[MemberUsage] = field(default=())
    balance_history: Sequence[BalancePoint] = field(default=())


def render_html(data: ReportData) -> str:
    """The report as one self-contained HTML5 page; the same ``data`` gives the same text.

    Args:
        data: The figures to show. Input order does not matter: rows, days and readings are
            sorted here.

    Returns:
        The page, ending with a newline.

    Raises:
        ValueError: ``end`` is not after ``start``, a time is naive, or a day is outside the
            range or given twice.
    """
    _check(data)
    models = sorted(data.models, key=lambda m: (-m.tokens, m.model))
    series = _series(models, data.days)
    priced = data.estimated_cost is not None
    sections = [
        _headline(data),
        _daily_section(data, series),
        _share_section(models, series),
    ]
    if priced:
        sections.append(_cost_section(data, models))
    if data.balance_history:
        sections.append(_balance_section(data))
    sections.append(_model_table(data, models, series))
    if len(data.members) > 1:
        sections.append(_member_table(data))
    title = _e(data.title)
    body = "\n".join(sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="color-scheme" content="light">\n'
        f"<title>{title}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f'<header class="top"><div class="wrap"><p class="kicker">r9s usage report</p>'
        f"<h1>{title}</h1>"
        f'<p class="range">{_e(_range_text(data))} &middot; data as of '
        f"{_e(_when(data.as_of))}</p></div></header>\n"
        f'<main class="wrap">\n{body}\n</main>\n'
        f'<footer class="wrap"><p>{_e(_COST_NOTE)} Days are UTC days. '
        "This page is self-contained: it loads nothing from the network.</p></footer>\n"
        "</body>\n</html>\n"
    )


_COST_NOTE = (
    "Costs are estimates: the API reports one token count per record (no input/output split), "
    "so each model is priced at one blended price per token."
)


def _check(data: ReportData) -> None:
    if data.end <= data.start:
        raise ValueError(f"end {data.end} is not after start {data.start}")
    times = [data.as_of, *(point.at for point in data.balance_history)]
    if any(t.utcoffset() is None for t in times):
        raise ValueError("as_of and balance readings must be timezone-aware datetimes")
    seen: set[date] = set()
    for day in data.days:
        if not data.start <= day.day < data.end:
            raise ValueError(f"day {day.day} is outside [{data.start}, {data.end})")
        if day.day in seen:
            raise ValueError(f"day {day.day} is given twice")
        seen.add(day.day)


# -- formatting: fixed, locale-free ----------------------------------------------------------

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_CENT = Decimal("0.01")


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def format_tokens(tokens: int) -> str:
    """Tokens with thousands separators: ``1,234,567``."""
    return f"{tokens:,}"


def format_money(amount: Decimal, currency: str | None) -> str:
    """An amount to the cent, with its currency code: ``USD 1,234.56``."""
    code = f"{currency}\u00a0" if currency else ""
    cents = amount.quantize(_CENT, rounding=ROUND_HALF_EVEN)
    if amount > 0 and cents == 0:
        return f"<\u00a0{code}0.01"
    return f"{code}{cents:,.2f}"


def format_share(part: int, whole: int) -> str:
    """``part`` of ``whole`` as a percentage with one decimal: ``42.5%``."""
    if whole <= 0 or part <= 0:
        return "0.0%"
    share = (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.1"), ROUND_HALF_EVEN)
    return "<0.1%" if share == 0 else f"{share}%"


def _compact(value: float) -> str:
    """An axis label: ``950``, ``1.5k``, ``2.25M``."""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return _trim(value / size, 2) + suffix
    return _trim(value, 2)


def _trim(value: float, places: int) -> str:
    text = f"{value:.{places}f}"
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return "0" if text in ("-0", "") else text


def _n(value: float) -> str:
    """An SVG coordinate: at most two decimals, so output does not depend on float noise."""
    return _trim(value, 2)


def _day_label(day: date) -> str:
    return f"{_MONTHS[day.month - 1]} {day.day}"


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _range_text(data: ReportData) -> str:
    days = (data.end - data.start).days
    last = data.end - timedelta(days=1)
    span = f"{data.start.isoformat()} to {last.isoformat()}" if days > 1 else str(data.start)
    return f"{span} ({days} day{'s' if days != 1 else ''})"


def _runway(days: Decimal) -> str:
    if days >= 3650:
        return "over 10 years"
    places = Decimal("1") if days >= 10 else Decimal("0.1")
    rounded = days.quantize(places, ROUND_HALF_EVEN)
    return f"\u2248\u00a0{rounded:,} day{'' if rounded == 1 else 's'}"


# -- series and colours ----------------------------------------------------------------------


@frozen
class _Series:
    name: str
    colour: str
    index: int
    members: frozenset[str]


def _series(models: Sequence[ModelUsage], days: Sequence[DayUsage]) -> list[_Series]:
    """Chart series, largest model first; past the palette, the smallest share one colour."""
    names = [m.model for m in models]
    known = set(names)
    extra: dict[str, int] = {}
    for day in days:
        for name, tokens in day.tokens_by_model.items():
            if name not in known:
                extra[name] = extra.get(name, 0) + tokens
    names += sorted(extra, key=lambda name: (-extra[name], name))
    if len(names) <= _MAX_SERIES:
        return [_Series(n, PALETTE[i], i, frozenset([n])) for i, n in enumerate(names)]
    kept = names[: _MAX_SERIES - 1]
    series = [_Series(n, PALETTE[i], i, frozenset([n])) for i, n in enumerate(kept)]
    last = _MAX_SERIES - 1
    series.append(_Series(OTHER_MODELS, PALETTE[last], last, frozenset(names[last:])))
    return series


def _colour_of(series: Sequence[_Series], model: str) -> str:
    return next(s.colour for s in series if model in s.members)


def _swatch(colour: str, *, hatched: bool = False) -> str:
    kind = "swatch hatched" if hatched else "swatch"
    return f'<span class="{kind}" style="--c:{colour}" aria-hidden="true"></span>'


# -- the SVG writer ----------------------------------------------------------------------------


@frozen
class _Frame:
    """A chart's drawing area in viewBox units; text is ``font`` units high."""

    name: str
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    font: int
    x_labels: int

    @property
    def plot_width(self) -> float:
        return float(self.width - self.left - self.right)

    @property
    def plot_height(self) -> float:
        return float(self.height - self.top - self.bottom)


# The wide frame for screens and print; the narrow one for phones, where a wide viewBox would
# shrink its text below reading size. CSS shows exactly one of them.
_WIDE = _Frame("wide", 960, 300, 64, 12, 18, 30, 13, 7)
_NARROW = _Frame("narrow", 360, 250, 40, 6, 16, 26, 12, 3)


def _nice_step(top: float, count: int) -> float:
    raw = top / count
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)


def _ticks(low: float, high: float, count: int = 4) -> list[float]:
    """Round gridline values covering ``[low, high]``, ``low`` at most 0."""
    if high <= low:
        high = low + 1
    step = _nice_step(high - low, count)
    first = math.floor(low / step)
    last = math.ceil(high / step)
    return [k * step for k in range(first, last + 1)]


def _svg_open(frame: _Frame, label: str, css_class: str) -> str:
    return (
        f'<svg class="chart {css_class} chart-{frame.name}" viewBox="0 0 {frame.width} '
        f'{frame.height}" role="img" aria-label="{_e(label)}" '
        f'font-size="{frame.font}">'
    )


def _y_axis(frame: _Frame, ticks: Sequence[float], y_of: _Scale) -> list[str]:
    parts = []
    for tick in ticks:
        y = _n(y_of(tick))
        grid = "axis-zero" if tick == 0 else "grid"
        parts.append(
            f'<line class="{grid}" x1="{frame.left}" x2="{frame.width - frame.right}" '
            f'y1="{y}" y2="{y}"/>'
            f'<text class="tick" x="{frame.left - 6}" y="{y}" text-anchor="end" '
            f'dominant-baseline="middle">{_e(_compact(tick))}</text>'
        )
    return parts


class _Scale:
    """Maps a value in ``[low, high]`` onto ``[bottom, top]`` (SVG y grows downwards)."""

    def __init__(self, low: float, high: float, bottom: float, top: float) -> None:
        self.low, self.high, self.bottom, self.top = low, high, bottom, top

    def __call__(self, value: float) -> float:
        return self.bottom - (value - self.low) / (self.high - self.low) * (self.bottom - self.top)


def _label_every(count: int, labels: int) -> int:
    return max(1, math.ceil(count / labels))


def _daily_chart(
    frame: _Frame, days: Sequence[DayUsage], series: Sequence[_Series], label: str
) -> str:
    totals = [sum(day.tokens_by_model.values()) for day in days]
    ticks = _ticks(0, max(totals, default=0))
    bottom = frame.top + frame.plot_height
    y_of = _Scale(0, ticks[-1], bottom, frame.top)
    slot = frame.plot_width / len(days)
    bar = max(slot * 0.78, min(slot, 1.0))
    parts = [_svg_open(frame, label, "daily"), "<defs>"]
    for s in series:
        parts.append(
            f'<pattern id="{frame.name}-hatch-{s.index}" width="6" height="6" '
            'patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
            f'<rect width="6" height="6" fill="{s.colour}"/>'
            '<rect width="2.5" height="6" fill="#ffffff" fill-opacity="0.6"/></pattern>'
        )
    parts.append("</defs>")
    recent = [i for i, day in enumerate(days) if day.recent]
    if recent:
        x0 = frame.left + recent[0] * slot
        x1 = frame.left + (recent[-1] + 1) * slot
        parts.append(
            f'<rect class="recent-band" x="{_n(x0)}" y="{frame.top}" width="{_n(x1 - x0)}" '
            f'height="{_n(frame.plot_height)}"/>'
            f'<text class="recent-label" x="{_n(x1)}" y="{frame.top - 5}" '
            'text-anchor="end">still changing</text>'
        )
    parts += _y_axis(frame, ticks, y_of)
    for i, (day, total) in enumerate(zip(days, totals, strict=True)):
        x = _n(frame.left + i * slot + (slot - bar) / 2)
        state = " (still changing)" if day.recent else ""
        title = f"{day.day.isoformat()}: {format_tokens(total)} tokens{state}"
        recent_class = " recent" if day.recent else ""
        parts.append(
            f'<g class="day{recent_class}" data-day="{day.day.isoformat()}" '
            f'data-tokens="{total}"><title>{_e(title)}</title>'
        )
        level = 0
        for s in series:
            tokens = sum(day.tokens_by_model.get(name, 0) for name in s.members)
            if tokens <= 0:
                continue
            y_top = y_of(level + tokens)
            height = y_of(level) - y_top
            fill = f"url(#{frame.name}-hatch-{s.index})" if day.recent else s.colour
            parts.append(
                f'<rect class="bar" x="{x}" y="{_n(y_top)}" width="{_n(bar)}" '
                f'height="{_n(height)}" fill="{fill}"/>'
            )
            level += tokens
        parts.append("</g>")
    every = _label_every(len(days), frame.x_labels)
    for i in range(0, len(days), every):
        x = _n(frame.left + (i + 0.5) * slot)
        parts.append(
            f'<text class="tick" x="{x}" y="{frame.height - 8}" text-anchor="middle">'
            f"{_day_label(days[i].day)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _line_chart(frame: _Frame, points: Sequence[BalancePoint], label: str) -> str:
    values = [float(p.balance) for p in points]
    ticks = _ticks(min(0.0, *values), max(values))
    bottom = frame.top + frame.plot_height
    y_of = _Scale(ticks[0], ticks[-1], bottom, frame.top)
    first, last = points[0].at.timestamp(), points[-1].at.timestamp()
    span = (last - first) or 1.0
    inset = 8  # keeps the first and last dots off the axis

    def x_of(moment: datetime) -> float:
        width = frame.plot_width - 2 * inset
        return frame.left + inset + (moment.timestamp() - first) / span * width

    parts = [_svg_open(frame, label, "balance"), *_y_axis(frame, ticks, y_of)]
    coords = " ".join(
        f"{_n(x_of(p.at))},{_n(y_of(v))}" for p, v in zip(points, values, strict=True)
    )
    parts.append(f'<polyline class="line" points="{coords}"/>')
    if len(points) <= 60:  # beyond that the dots become a thick line
        for point, value in zip(points, values, strict=True):
            text = f"{_when(point.at)}: {value:,.2f}"
            parts.append(
                f'<circle class="dot" cx="{_n(x_of(point.at))}" cy="{_n(y_of(value))}" r="3">'
                f"<title>{_e(text)}</title></circle>"
            )
    short = last - first < 2 * 86_400
    count = min(frame.x_labels, len(points))
    for k in range(count):
        moment = first + (span * k / (count - 1) if count > 1 else 0)
        when = datetime.fromtimestamp(moment, UTC)
        text = when.strftime("%H:%M") if short else _day_label(when.date())
        anchor = "start" if k == 0 and count > 1 else "end" if k == count - 1 else "middle"
        x = _n(x_of(when))
        parts.append(
            f'<text class="tick" x="{x}" y="{frame.height - 8}" text-anchor="{anchor}">'
            f"{text}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _hbar(fraction: float, colour: str) -> str:
    width = _n(1000 * max(0.0, min(1.0, fraction)))
    return (
        '<svg class="hbar" viewBox="0 0 1000 12" preserveAspectRatio="none" aria-hidden="true" '
        '><rect class="track" width="1000" height="12"/>'
        f'<rect width="{width}" height="12" fill="{colour}"/></svg>'
    )


# -- sections ------------------------------------------------------------------------------------


def _card(label: str, value: str, note: str, *, name: str, muted: bool = False) -> str:
    value_class = "value muted" if muted else "value"
    return (
        f'<div class="card" data-figure="{name}"><p class="label">{_e(label)}</p>'
        f'<p class="{value_class}">{_e(value)}</p><p class="note">{_e(note)}</p></div>'
    )


def _headline(data: ReportData) -> str:
    span = (data.end - data.start).days
    over = f"over {span} day{'s' if span != 1 else ''}"
    cards = [_card("Tokens", format_tokens(data.total_tokens), over, name="tokens")]
    if data.estimated_cost is None:
        cards.append(
            _card("Estimated cost", "not priced", "no price table given", name="cost", muted=True)
        )
    else:
        note = "blended price per token"
        if data.unpriced_tokens:
            note = f"{format_tokens(data.unpriced_tokens)} tokens unpriced, not included"
        cards.append(
            _card(
                "Estimated cost",
                format_money(data.estimated_cost, data.currency),
                note,
                name="cost",
            )
        )
    if data.balance is None:
        cards.append(_card("Balance", "unknown", "never read", name="balance", muted=True))
    else:
        limit = data.credit_limit
        note = f"credit limit {format_money(limit, data.currency)}" if limit else "no credit limit"
        cards.append(
            _card("Balance", format_money(data.balance, data.currency), note, name="balance")
        )
    if data.runway_days is None:
        cards.append(_card("Runway", "unknown", data.runway_note or "", name="runway", muted=True))
    else:
        cards.append(
            _card("Runway", _runway(data.runway_days), data.runway_note or "", name="runway")
        )
    recent = sum(1 for day in data.days if day.recent)
    as_of = data.as_of.astimezone(UTC)
    note = f"{as_of:%H:%M} UTC"
    if recent:
        note += f"; last {recent} day{'s' if recent != 1 else ''} still changing"
    cards.append(_card("Data as of", as_of.date().isoformat(), note, name="as-of"))
    return f'<section class="cards" aria-label="Headline figures">{"".join(cards)}</section>'


def _legend(series: Sequence[_Series], *, recent: bool) -> str:
    items = [f'<li data-series="{_e(s.name)}">{_swatch(s.colour)}{_e(s.name)}</li>' for s in series]
    if recent:
        items.append(
            f'<li class="recent-key">{_swatch("#475569", hatched=True)}'
            "still changing: recent days may still grow</li>"
        )
    return f'<ul class="legend">{"".join(items)}</ul>'


def _daily_section(data: ReportData, series: Sequence[_Series]) -> str:
    given = {day.day: day for day in data.days}
    count = (data.end - data.start).days
    days = []
    for offset in range(count):
        day = data.start + timedelta(days=offset)
        days.append(given.get(day, DayUsage(day, {})))
    label = f"Tokens per day, stacked by model, {_range_text(data)}"
    charts = "".join(_daily_chart(frame, days, series, label) for frame in (_WIDE, _NARROW))
    recent = any(day.recent for day in days)
    return (
        '<section class="panel" id="daily"><h2>Tokens per day</h2>'
        '<p class="sub">Stacked by model; hover a bar for its total.</p>'
        f"{charts}{_legend(series, recent=recent)}</section>"
    )


def _share_section(models: Sequence[ModelUsage], series: Sequence[_Series]) -> str:
    whole = sum(m.tokens for m in models)
    totals = [sum(m.tokens for m in models if m.model in s.members) for s in series]
    parts = [
        '<svg class="share-bar" viewBox="0 0 1000 28" preserveAspectRatio="none" role="img" '
        'aria-label="Share of tokens by model">'
        '<rect class="track" width="1000" height="28"/>'
    ]
    x = 0.0
    for s, tokens in zip(series, totals, strict=True):
        if tokens <= 0 or whole <= 0:
            continue
        width = 1000 * tokens / whole
        parts.append(
            f'<rect class="share" x="{_n(x)}" width="{_n(width)}" height="28" fill="{s.colour}">'
            f"<title>{_e(s.name)}: {format_share(tokens, whole)}</title></rect>"
        )
        x += width
    parts.append("</svg>")
    items = [
        f'<li data-series="{_e(s.name)}">{_swatch(s.colour)}<span class="name">{_e(s.name)}'
        f'</span><span class="num">{format_share(tokens, whole)}</span></li>'
        for s, tokens in zip(series, totals, strict=True)
    ]
    return (
        '<section class="panel" id="share"><h2>Share by model</h2>'
        '<p class="sub">Of all tokens in the range.</p>'
        f'{"".join(parts)}<ul class="legend share-legend">{"".join(items)}</ul></section>'
    )


def _cost_section(data: ReportData, models: Sequence[ModelUsage]) -> str:
    by_cost = sorted(
        models,
        key=lambda m: (m.estimated_cost is None, -(m.estimated_cost or 0), -m.tokens, m.model),
    )
    series = _series(models, ())
    top = max((m.estimated_cost for m in models if m.estimated_cost is not None), default=None)
    rows = []
    for m in by_cost:
        if m.estimated_cost is None:
            value = '<span class="unpriced">unpriced</span>'
            bar = '<div class="hbar-none" aria-hidden="true"></div>'
        else:
            value = _e(format_money(m.estimated_cost, data.currency))
            fraction = float(m.estimated_cost / top) if top else 0.0
            bar = _hbar(fraction, _colour_of(series, m.model))
        unpriced = " unpriced" if m.estimated_cost is None else ""
        rows.append(
            f'<li class="cost-row{unpriced}" data-model="{_e(m.model)}">'
            f'<span class="name">{_e(m.model)}</span><span class="num">{value}</span>{bar}</li>'
        )
    return (
        '<section class="panel" id="cost"><h2>Estimated cost per model</h2>'
        f'<p class="sub">{_e(_COST_NOTE)}</p><ul class="bars">{"".join(rows)}</ul></section>'
    )


def _balance_section(data: ReportData) -> str:
    points = sorted(data.balance_history, key=lambda p: (p.at.timestamp(), p.balance))
    currency = f" ({data.currency})" if data.currency else ""
    label = f"Balance over time{currency}"
    charts = "".join(_line_chart(frame, points, label) for frame in (_WIDE, _NARROW))
    count = len(points)
    return (
        f'<section class="panel" id="balance"><h2>Balance over time</h2>'
        f'<p class="sub">{count} reading{"s" if count != 1 else ""}{_e(currency)}, '
        f"{_e(_when(points[0].at))} to {_e(_when(points[-1].at))}.</p>{charts}</section>"
    )


def _cost_cell(cost: Decimal | None, unpriced: int, currency: str | None) -> str:
    if cost is None:
        return '<td class="num unpriced">unpriced</td>'
    extra = (
        f'<span class="aside">+ {format_tokens(unpriced)} tokens unpriced</span>'
        if unpriced
        else ""
    )
    return f'<td class="num">{_e(format_money(cost, currency))}{extra}</td>'


def _table(caption: str, head: Sequence[str], rows: Sequence[str], foot: str, name: str) -> str:
    figures = len(head) - 3  # the last three columns are figures
    cells = "".join(
        f'<th scope="col" class="num">{_e(h)}</th>'
        if i >= figures
        else f'<th scope="col">{_e(h)}</th>'
        for i, h in enumerate(head)
    )
    return (
        f'<section class="panel" id="{name}"><h2>{_e(caption)}</h2>'
        f'<div class="table-scroll"><table class="{name}"><thead><tr>{cells}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody><tfoot>{foot}</tfoot></table></div></section>"
    )


def _model_table(data: ReportData, models: Sequence[ModelUsage], series: Sequence[_Series]) -> str:
    whole = sum(m.tokens for m in models)
    rows = [
        f'<tr data-model="{_e(m.model)}"><th scope="row" class="name">'
        f"{_swatch(_colour_of(series, m.model))}{_e(m.model)}</th>"
        f'<td class="num">{format_tokens(m.tokens)}</td>'
        f'<td class="num">{format_share(m.tokens, whole)}</td>'
        f"{_cost_cell(m.estimated_cost, 0, data.currency)}</tr>"
        for m in models
    ]
    if data.estimated_cost is None:
        total_cost = '<td class="num unpriced">not priced</td>'
    else:
        total_cost = _cost_cell(data.estimated_cost, data.unpriced_tokens, data.currency)
    foot = (
        f'<tr><th scope="row">Total</th><td class="num">{format_tokens(whole)}</td>'
        f'<td class="num">{format_share(whole, whole)}</td>{total_cost}</tr>'
    )
    head = ("Model", "Tokens", "Share", "Estimated cost")
    return _table("Per model", head, rows, foot, "models")


def _member_table(data: ReportData) -> str:
    members = sorted(
        data.members, key=lambda m: (m.account, m.member is not None, -m.tokens, m.member or "")
    )
    whole = sum(m.tokens for m in members)
    rows = []
    for m in members:
        who = (
            _e(m.member)
            if m.member is not None
            else '<span class="muted">whole organisation</span>'
        )
        cost = (
            '<td class="num muted">not priced</td>'
            if data.estimated_cost is None
            else _cost_cell(m.estimated_cost, m.unpriced_tokens, data.currency)
        )
        rows.append(
            f'<tr><th scope="row" class="name">{_e(m.account)}</th><td class="name">{who}</td>'
            f'<td class="num">{format_tokens(m.tokens)}</td>'
            f'<td class="num">{format_share(m.tokens, whole)}</td>{cost}</tr>'
        )
    foot = (
        f'<tr><th scope="row">Total</th><td></td><td class="num">{format_tokens(whole)}</td>'
        f'<td class="num">{format_share(whole, whole)}</td><td></td></tr>'
    )
    head = ("Account", "Member", "Tokens", "Share", "Estimated cost")
    return _table("Per account and member", head, rows, foot, "members")


_CSS = """
:root{--ink:#0f172a;--muted:#475569;--line:#e2e8f0;--panel:#ffffff;--bg:#f1f5f9;
--accent:#1e3a8a}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%;text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--ink);line-height:1.45;
font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","Liberation Sans",
Arial,sans-serif;-webkit-print-color-adjust:exact;print-color-adjust:exact}
.wrap{max-width:1040px;margin:0 auto;padding:0 16px}
.top{background:var(--accent);color:#fff;padding:20px 0 22px;margin-bottom:20px}
.top h1{margin:0;font-size:1.6rem;line-height:1.2;overflow-wrap:anywhere}
.kicker{margin:0 0 4px;font-size:.75rem;letter-spacing:.08em;text-transform:uppercase;
color:#c7d2fe}
.range{margin:6px 0 0;color:#e0e7ff;font-size:.9rem}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px;
margin-bottom:16px}
.card{background:var(--panel);border:1px solid var(--line);border-radius:10px;
padding:12px 14px;min-width:0}
.card p{margin:0}
.card .label{font-size:.75rem;letter-spacing:.06em;text-transform:uppercase;color:var(--muted)}
.card .value{font-size:1.3rem;font-weight:650;margin:4px 0 2px;
font-variant-numeric:tabular-nums;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.card .value.muted{color:var(--muted);font-weight:500}
.card .note{font-size:.8rem;color:var(--muted)}
.panel{background:var(--panel);border:1px solid var(--line);border-radius:10px;
padding:14px 16px 16px;margin-bottom:16px;min-width:0}
.panel h2{margin:0;font-size:1.1rem}
.sub{margin:2px 0 10px;color:var(--muted);font-size:.85rem}
svg.chart{display:block;width:100%;height:auto}
svg.chart-narrow{display:none}
@media (max-width:640px){svg.chart-wide{display:none}svg.chart-narrow{display:block}
.top h1{font-size:1.3rem}.panel{padding:12px}.cards{gap:8px}.card{padding:10px 12px}
.card .value{font-size:1.15rem}}
.chart .grid{stroke:#e2e8f0;stroke-width:1}
.chart .axis-zero{stroke:#94a3b8;stroke-width:1}
.chart .tick{fill:#475569}
.chart .bar{stroke:#ffffff;stroke-width:.5}
.chart .recent-band{fill:#f1f5f9}
.chart .recent-label{fill:#475569;font-style:italic}
.chart .line{fill:none;stroke:#2563eb;stroke-width:2.5;stroke-linejoin:round}
.chart .dot{fill:#ffffff;stroke:#2563eb;stroke-width:2}
.legend{list-style:none;margin:10px 0 0;padding:0;display:flex;flex-wrap:wrap;gap:6px 16px;
font-size:.85rem}
.legend li{display:flex;align-items:center;gap:6px;min-width:0;overflow-wrap:anywhere}
.swatch{display:inline-block;flex:none;width:12px;height:12px;border-radius:3px;
background:var(--c);vertical-align:-1px;margin-right:6px}
.legend .swatch,.bars .swatch{margin-right:0}
.swatch.hatched{background:repeating-linear-gradient(45deg,var(--c) 0 3px,#ffffff 3px 5px);
outline:1px solid var(--c);outline-offset:-1px}
.share-bar{display:block;width:100%;height:28px;border-radius:6px}
.track{fill:#e2e8f0}
.share{stroke:#ffffff;stroke-width:2}
.share-legend .num{color:var(--muted);font-variant-numeric:tabular-nums}
.bars{list-style:none;margin:0;padding:0}
.cost-row{display:grid;grid-template-columns:minmax(0,1fr) auto;gap:2px 12px;margin:0 0 10px}
.cost-row .name{overflow-wrap:anywhere}
.cost-row .num{font-variant-numeric:tabular-nums;font-weight:600}
.hbar{grid-column:1/-1;display:block;width:100%;height:12px;border-radius:4px}
.hbar-none{grid-column:1/-1;height:12px;border:1px dashed #94a3b8;border-radius:4px}
.unpriced{color:#9a3412;font-style:italic;font-weight:500}
.muted{color:var(--muted)}
.table-scroll{overflow-x:auto;-webkit-overflow-scrolling:touch;max-width:100%}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{padding:7px 8px;border-bottom:1px solid var(--line);text-align:left;
vertical-align:top}
thead th{font-size:.75rem;letter-spacing:.05em;text-transform:uppercase;color:var(--muted);
border-bottom:2px solid var(--line)}
tbody th{font-weight:500}
th.name,td.name{overflow-wrap:break-word;min-width:6em}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.aside{display:block;font-size:.75rem;color:var(--muted);font-weight:400}
tfoot th,tfoot td{font-weight:650;border-bottom:0;border-top:2px solid var(--line)}
footer{color:var(--muted);font-size:.8rem;padding-bottom:28px}
@media (max-width:640px){table{font-size:.78rem}th,td{padding:6px 3px}
thead th{font-size:.65rem;letter-spacing:.02em}th.name,td.name{min-width:0}
thead th.num,.num .aside{white-space:normal}}
@media print{body{background:#fff;font-size:11pt}
.top{background:#fff;color:var(--ink);padding:0 0 8px;border-bottom:2px solid var(--ink)}
.kicker,.range{color:var(--muted)}
.panel,.card{break-inside:avoid;border-color:#cbd5e1}
svg.chart-wide{display:block}svg.chart-narrow{display:none}
.table-scroll{overflow:visible}
@page{margin:14mm}}
"""
