"""Price tables: exact prices per model and day, read from TOML, and the costs of token counts.

The API reports one token count per record, with no split between input and output tokens, so
every cost here is an **estimate from a blended price** per model. Whatever shows a cost should
say so (``ESTIMATE_NOTE``).

Money is :class:`~decimal.Decimal` throughout and nothing is rounded inside: a cost is
``tokens * per_million_tokens / 1_000_000`` computed exactly, and totals are exact sums.
Round only to show a figure (``display_amount()``).
"""

from __future__ import annotations

import os
import re
import tomllib
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import (
    MAX_EMAX,
    MAX_PREC,
    MIN_EMIN,
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    Inexact,
    InvalidOperation,
    Overflow,
    Rounded,
    localcontext,
)
from typing import Any, Self, TypeVar

from attrs import field, frozen

from ._exceptions import ConfigurationError

__all__ = [
    "ESTIMATE_NOTE",
    "CostBreakdown",
    "CostLine",
    "Price",
    "PriceTable",
    "PriceTableError",
    "display_amount",
]

ESTIMATE_NOTE = (
    "costs are estimates from one blended price per model: "
    "the API reports no split between input and output tokens"
)
"""The caveat to print beside any cost computed from a ``PriceTable``."""

# Products and sums of exact decimals are exact when the precision is unbounded; trapping
# Inexact and Rounded makes any rounding a loud error rather than a silently wrong cent.
_EXACT = Context(
    prec=MAX_PREC,
    Emax=MAX_EMAX,
    Emin=MIN_EMIN,
    traps=[InvalidOperation, Inexact, Rounded, Overflow],
)
_MILLION_EXPONENT = -6

_CURRENCY = re.compile(r"[A-Z]{3}")
_TOP_LEVEL_KEYS = frozenset({"currency", "price"})
_ENTRY_KEYS = frozenset({"model", "per_million_tokens", "valid_from"})


class PriceTableError(ConfigurationError):
    """A price table that cannot be used: unreadable, not TOML, or an entry that does not fit.

    The message names the file, the entry (1-based, with its model) and the field.

    Attributes:
        source: The file the table came from (or ``"<string>"``).
        problem: What is wrong, in a few words.
        entry: The 1-based position of the ``[[price]]`` entry, or ``None`` for the whole table.
        model: The entry's ``model`` when it has a usable one.
        field: The key that is wrong (for example ``"per_million_tokens"``), if one is.
    """

    def __init__(
        self,
        source: str,
        problem: str,
        *,
        entry: int | None = None,
        model: str | None = None,
        field: str | None = None,
    ) -> None:
        where = source
        if entry is not None:
            where += f": price entry {entry}"
            if model is not None:
                where += f" (model {model!r})"
        if field is not None:
            where += f": {field}"
        super().__init__(f"{where}: {problem}")
        self.source = source
        self.problem = problem
        self.entry = entry
        self.model = model
        self.field = field

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments: the default reduce would call cls(str(self)) and fail.
        kwargs = {"entry": self.entry, "model": self.model, "field": self.field}
        return _rebuild, (type(self), self.source, self.problem, kwargs)


def _rebuild(
    cls: type[PriceTableError], source: str, problem: str, kwargs: dict[str, Any]
) -> PriceTableError:
    return cls(source, problem, **kwargs)


@frozen
class Price:
    """One ``[[price]]`` entry.

    Attributes:
        model: An exact model name, or a pattern in which ``*`` stands for any run of
            characters (possibly none), such as ``"claude-*"``. No other character is special.
        per_million_tokens: The blended price of one million tokens, exact.
        valid_from: The first UTC day the price is in force; ``None`` means since always.
    """

    model: str
    per_million_tokens: Decimal
    valid_from: date | None = None

    @property
    def is_pattern(self) -> bool:
        """Whether ``model`` contains ``*``."""
        return "*" in self.model

    @property
    def literal_length(self) -> int:
        """How specific a pattern is, the number of characters of ``model`` other than ``*``."""
        return len(self.model) - self.model.count("*")


@frozen
class _Rule:
    """Every entry for one ``model`` key, as a timeline sorted by ``valid_from``."""

    key: str
    matcher: re.Pattern[str] | None  # None: an exact name
    order: tuple[int, int, int]  # smaller sorts first: more specific
    starts: tuple[date, ...]  # date.min stands for "since always"
    prices: tuple[Decimal, ...]

    def in_force(self, day: date) -> Decimal | None:
        index = bisect_right(self.starts, day) - 1
        return self.prices[index] if index >= 0 else None


def _build_rules(prices: tuple[Price, ...]) -> tuple[dict[str, _Rule], tuple[_Rule, ...]]:
    timelines: dict[str, list[Price]] = {}
    for entry in prices:
        timelines.setdefault(entry.model, []).append(entry)
    exact: dict[str, _Rule] = {}
    patterns: list[_Rule] = []
    for position, (key, entries) in enumerate(timelines.items()):
        entries.sort(key=lambda p: p.valid_from or date.min)
        starts = tuple(p.valid_from or date.min for p in entries)
        if len(set(starts)) != len(starts):
            raise ValueError(f"two prices for model {key!r} start on the same day")
        values = tuple(p.per_million_tokens for p in entries)
        if "*" in key:
            literal = len(key) - key.count("*")
            regex = ".*".join(re.escape(part) for part in key.split("*"))
            rule = _Rule(key, re.compile(regex, re.DOTALL), (1, -literal, position), starts, values)
            patterns.append(rule)
        else:
            exact[key] = _Rule(key, None, (0, 0, position), starts, values)
    patterns.sort(key=lambda r: r.order)
    return exact, tuple(patterns)


def _as_prices(entries: Iterable[Price]) -> tuple[Price, ...]:
    return tuple(entries)


@frozen
class PriceTable:
    """Blended prices per model and day, in one currency.

    Which price applies to ``model`` on ``day``: of the entries whose ``model`` matches and
    that are in force that day (the latest ``valid_from`` on or before it), an exact name beats
    any pattern; among patterns, the one with the longest literal part (characters other than
    ``*``) wins, and of patterns equally long, the one that first appears earlier in the table.
    So a pattern still prices the days before an exact entry's ``valid_from``. A model that no
    entry prices on a day is **unpriced** that day (``None``), never free: an explicit price
    of ``"0"`` is how to say free.

    Costs are estimates from a blended price: the API gives one token count per record, with
    no split between input and output tokens.

    Build one with ``load()`` or ``from_string()``; constructing it directly from
    ``Price`` entries works too.

    Attributes:
        currency: The ISO currency code of every price, for example ``"USD"``.
        prices: The entries, in table order.
        source: Where the table came from (a path, or ``"<string>"``), for messages.
    """

    currency: str
    prices: tuple[Price, ...] = field(converter=_as_prices)
    source: str = field(default="<string>", kw_only=True, eq=False)
    _exact: dict[str, _Rule] = field(init=False, repr=False, eq=False)
    _patterns: tuple[_Rule, ...] = field(init=False, repr=False, eq=False)
    _resolved: dict[str, tuple[_Rule, ...]] = field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        exact, patterns = _build_rules(self.prices)
        # Frozen to users; the lookup index is derived once here.
        object.__setattr__(self, "_exact", exact)
        object.__setattr__(self, "_patterns", patterns)
        object.__setattr__(self, "_resolved", {})

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Self:
        """Read a price table from a TOML file.

        Args:
            path: The file.

        Returns:
            The table, with ``source`` set to ``path``.

        Raises:
            PriceTableError: The file cannot be read, is not UTF-8 TOML, or does not fit the
                format; the message names the file, the entry and the field.
        """
        source = os.fspath(path)
        try:
            with open(source, "rb") as stream:
                raw = stream.read()
        except OSError as exc:
            raise PriceTableError(source, f"cannot read the file ({exc.strerror})") from exc
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PriceTableError(source, "not UTF-8 text") from exc
        return cls.from_string(text, source=source)

    @classmethod
    def from_string(cls, text: str, *, source: str = "<string>") -> Self:
        """Parse a price table from TOML text.

        The format::

            currency = "USD"
            [[price]]
            model = "gpt-4o-mini"          # an exact name, or a pattern with "*"
            per_million_tokens = "0.60"    # a decimal string (or an integer); not a float
            valid_from = 2025-01-01        # optional TOML date

        Args:
            text: The TOML document.
            source: What to call it in error messages.

        Returns:
            The table.

        Raises:
            PriceTableError: The text is not TOML or does not fit the format: a missing or
                malformed ``currency``, no ``[[price]]`` entries, an unknown key, a missing or
                empty ``model``, a price that is a float, not a decimal, or negative, a
                ``valid_from`` that is not a date, or two entries for the same model and
                ``valid_from``.
        """
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PriceTableError(source, f"not valid TOML ({exc})") from exc
        unknown = sorted(set(document) - _TOP_LEVEL_KEYS)
        if unknown:
            raise PriceTableError(
                source, "unknown key (expected currency and [[price]])", field=unknown[0]
            )
        currency = document.get("currency")
        if currency is None:
            raise PriceTableError(source, 'missing; for example currency = "USD"', field="currency")
        if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
            raise PriceTableError(
                source,
                f'expected a 3-letter ISO code such as "USD", got {currency!r}',
                field="currency",
            )
        entries = document.get("price")
        if entries is None:
            raise PriceTableError(source, "no [[price]] entries", field="price")
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise PriceTableError(source, "expected [[price]] tables", field="price")
        prices: list[Price] = []
        seen: dict[tuple[str, date | None], int] = {}
        for index, entry in enumerate(entries, start=1):
            price = _parse_entry(entry, source=source, index=index)
            key = (price.model, price.valid_from)
            if key in seen:
                when = "no valid_from" if price.valid_from is None else str(price.valid_from)
                raise PriceTableError(
                    source,
                    f"same model and {when} as entry {seen[key]}",
                    entry=index,
                    model=price.model,
                    field="valid_from",
                )
            seen[key] = index
            prices.append(price)
        return cls(currency, prices, source=source)

    def price(self, model: str, day: date) -> Decimal | None:
        """The blended price of a million tokens of ``model`` on UTC ``day``.

        Args:
            model: The model name as the API reports it.
            day: The UTC day.

        Returns:
            The price per million tokens, or ``None`` when the model is unpriced that day.

        Raises:
            TypeError: ``day`` is not a :class:`~datetime.date` (a ``datetime`` is refused too).
        """
        if not isinstance(day, date) or isinstance(day, datetime):
            raise TypeError(f"day must be a datetime.date, got {type(day).__name__}")
        rules = self._resolved.get(model)
        if rules is None:
            exact = self._exact.get(model)
            matching = [r for r in self._patterns if r.matcher and r.matcher.fullmatch(model)]
            rules = ((exact,) if exact else ()) + tuple(matching)
            self._resolved[model] = rules
        for rule in rules:
            value = rule.in_force(day)
            if value is not None:
                return value
        return None

    def cost(self, model: str, tokens: int, day: date) -> Decimal | None:
        """The estimated cost of ``tokens`` tokens of ``model`` used on UTC ``day``.

        Exact: ``tokens * price / 1_000_000`` with no rounding (round only to display).

        Args:
            model: The model name.
            tokens: The number of tokens.
            day: The UTC day the tokens were used.

        Returns:
            The cost in ``currency``, or ``None`` when the model is unpriced that day.

        Raises:
            TypeError: ``tokens`` is not an ``int`` or ``day`` is not a date.
        """
        if not isinstance(tokens, int) or isinstance(tokens, bool):
            raise TypeError(f"tokens must be an int, got {type(tokens).__name__}")
        per_million = self.price(model, day)
        if per_million is None:
            return None
        return _exact_cost(tokens, per_million)

    def costs(self, tokens_by_day_and_model: Mapping[tuple[date, str], int]) -> CostBreakdown:
        """Cost every (UTC day, model) cell of a token mapping.

        Takes what :meth:`~r9s_async.UsageReport.tokens_by_day_and_model` and
        :meth:`~r9s_async.UsageStore.tokens_by_day_and_model` return. Each day is costed at
        the price in force that day. Estimates from a blended price (see the class docstring).

        Args:
            tokens_by_day_and_model: Tokens per ``(day, model)``.

        Returns:
            One line per cell, in day order then model order; cells whose model is unpriced
            that day have no cost and are counted apart.
        """
        lines = []
        for (day, model), tokens in sorted(tokens_by_day_and_model.items()):
            per_million = self.price(model, day)
            cost = None if per_million is None else self.cost(model, tokens, day)
            lines.append(CostLine(day, model, tokens, per_million, cost))
        return CostBreakdown(self.currency, tuple(lines))


def _exact_cost(tokens: int, per_million: Decimal) -> Decimal:
    with localcontext(_EXACT):
        return (tokens * per_million).scaleb(_MILLION_EXPONENT)


def _parse_entry(entry: dict[str, Any], *, source: str, index: int) -> Price:
    model = entry.get("model")
    usable_model = model if isinstance(model, str) and model.strip() else None

    def error(problem: str, field: str) -> PriceTableError:
        return PriceTableError(source, problem, entry=index, model=usable_model, field=field)

    unknown = sorted(set(entry) - _ENTRY_KEYS)
    if unknown:
        raise error("unknown key (expected model, per_million_tokens, valid_from)", unknown[0])
    if model is None:
        raise error("missing", "model")
    if usable_model is None:
        raise error(f"expected a non-empty string, got {model!r}", "model")
    return Price(
        usable_model,
        _parse_price(entry.get("per_million_tokens"), error),
        _parse_valid_from(entry.get("valid_from"), error),
    )


def _parse_price(value: object, error: Any) -> Decimal:
    field_name = "per_million_tokens"
    if value is None:
        raise error('missing; for example per_million_tokens = "0.60"', field_name)
    if isinstance(value, float):
        raise error(
            f'a TOML float is not exact; quote it: per_million_tokens = "{value}"', field_name
        )
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise error(f'expected a decimal string such as "0.60", got {value!r}', field_name)
    try:
        amount = Decimal(value)
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite():
        raise error(f'expected a decimal number such as "0.60", got {value!r}', field_name)
    if amount < 0:
        raise error(f"a price cannot be negative, got {value!r}", field_name)
    return amount


def _parse_valid_from(value: object, error: Any) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        raise error(
            "expected a date without a time, for example valid_from = 2025-01-01", "valid_from"
        )
    if not isinstance(value, date):
        raise error(
            f"expected a TOML date without quotes, for example valid_from = 2025-01-01, "
            f"got {value!r}",
            "valid_from",
        )
    return value


@frozen
class CostLine:
    """The estimated cost of one model's tokens on one UTC day.

    Attributes:
        day: The UTC day.
        model: The model name.
        tokens: The tokens used.
        per_million_tokens: The price in force that day, or ``None`` if unpriced.
        cost: ``tokens * per_million_tokens / 1_000_000`` exactly, or ``None`` if unpriced.
    """

    day: date
    model: str
    tokens: int
    per_million_tokens: Decimal | None
    cost: Decimal | None

    @property
    def priced(self) -> bool:
        """Whether a price was in force for this model on this day."""
        return self.cost is not None


@frozen
class CostBreakdown:
    """Estimated costs of a token mapping, cell by cell, with the unpriced part kept apart.

    A blended-price estimate: the API gives one token count per record, with no split between
    input and output tokens. A model priced on some days and not on others shows in both
    ``by_model()`` (the cost of its priced days) and ``unpriced_by_model()`` (the tokens of
    the others). The totals cover priced tokens only: unpriced tokens are never costed as zero.

    Attributes:
        currency: The currency of every cost.
        lines: One line per (day, model), in day order then model order.
    """

    currency: str
    lines: tuple[CostLine, ...]

    @property
    def total(self) -> Decimal:
        """The exact sum of every priced cost (``Decimal("0")`` when nothing is priced)."""
        with localcontext(_EXACT):
            return sum((line.cost for line in self.lines if line.cost is not None), Decimal(0))

    @property
    def priced_tokens(self) -> int:
        """Tokens that have a cost."""
        return sum(line.tokens for line in self.lines if line.priced)

    @property
    def unpriced_tokens(self) -> int:
        """Tokens that no price covered."""
        return sum(line.tokens for line in self.lines if not line.priced)

    def by_model(self) -> dict[str, Decimal]:
        """Cost per model, over the days it was priced, in model order."""
        return _sum_costs((line.model, line) for line in self.lines)

    def by_day(self) -> dict[date, Decimal]:
        """Cost per UTC day, over the models priced that day, in day order.

        A day whose usage was all unpriced has no entry (it is not a zero-cost day).
        """
        return _sum_costs((line.day, line) for line in self.lines)

    def unpriced_by_model(self) -> dict[str, int]:
        """Unpriced tokens per model, in model order."""
        totals: dict[str, int] = {}
        for line in self.lines:
            if not line.priced:
                totals[line.model] = totals.get(line.model, 0) + line.tokens
        return dict(sorted(totals.items()))


_Key = TypeVar("_Key", str, date)


def _sum_costs(pairs: Iterable[tuple[_Key, CostLine]]) -> dict[_Key, Decimal]:
    totals: dict[_Key, Decimal] = {}
    with localcontext(_EXACT):
        for key, line in pairs:
            if line.cost is not None:
                totals[key] = totals.get(key, Decimal(0)) + line.cost
    return dict(sorted(totals.items()))


def display_amount(amount: Decimal, places: int = 2, *, rounding: str = ROUND_HALF_EVEN) -> str:
    """An amount rounded for display (half to even by default), for example ``"12.35"``.

    Rounding happens only here, never in a computation.

    Args:
        amount: The exact amount.
        places: Digits after the decimal point.
        rounding: A ``decimal`` rounding mode, such as ``decimal.ROUND_DOWN``.

    Returns:
        The rounded amount as text, with exactly ``places`` decimals.
    """
    exponent = Decimal(1).scaleb(-places)
    with localcontext(Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)):
        return str(amount.quantize(exponent, rounding=rounding))
