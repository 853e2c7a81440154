"""Prices as shoppers read them: "$26.39" in en_US, "26,39 $" in de_DE (CATALOG_LOCALE, Babel's
data), with the currency's own digits (¥2,500)."""

from __future__ import annotations

from decimal import Decimal

from babel.numbers import format_currency, get_currency_name, is_currency

from .config import catalog_config


def money(amount: Decimal | int | float | str | None, currency: str = "USD", *, whole: bool = False) -> str:
    """`amount` in `currency` as the shop's locale writes it; `whole`: without cents when it has
    none ("Under $25", a price bucket's bound). '' for no amount."""
    if amount is None or amount == "":
        return ""
    value = Decimal(str(amount))
    locale = catalog_config().locale
    if not is_currency(currency):  # the catalog takes any three capitals
        return f"{value:.2f} {currency}"
    if whole and value == value.to_integral_value():
        from babel import Locale

        pattern = Locale.parse(locale).currency_formats["standard"].pattern
        return format_currency(value, currency, format=pattern.replace(".00", ""), locale=locale, currency_digits=False)
    return format_currency(value, currency, locale=locale)


def currency_name(currency: str) -> str:
    """The currency as the shop's locale names it ("US dollars"); the code if Babel has none."""
    if not is_currency(currency):
        return currency
    return get_currency_name(currency, count=2, locale=catalog_config().locale)
