"""{% load money %}: {{ product.price|money:product.currency }} reads "$26.39" (catalog.money)."""

from __future__ import annotations

from django import template

from catalog.money import money as as_money

register = template.Library()


@register.filter
def money(amount, currency: str = "USD") -> str:
    return as_money(amount, currency or "USD")
