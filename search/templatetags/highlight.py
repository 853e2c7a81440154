"""{% load highlight %}: {{ product.title|highlight:words }} marks the title's words that a word
of the search is ("mug") or begins ("mu" while typing, "mug" in "mugs"): what matched, at a glance."""

from __future__ import annotations

import re
from collections.abc import Iterable

from django import template
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe

from search.retrieval.keywords import fold

register = template.Library()

_TOKEN = re.compile(r"(\w+)")
MIN_BEGINNING = 2  # a word of one letter marks nothing


@register.filter
def highlight(text: str, words: Iterable[str] | None) -> SafeString:
    """`text` escaped, its words that one of `words` (folded) is or begins in <mark>."""
    wanted = tuple({w for w in words or () if len(w) >= MIN_BEGINNING})
    parts = _TOKEN.split(str(text or ""))
    out = []
    for i, part in enumerate(parts):
        escaped = conditional_escape(part)
        out.append(f"<mark>{escaped}</mark>" if i % 2 and wanted and fold(part).startswith(wanted) else escaped)
    return mark_safe("".join(out))  # noqa: S308 - every part is escaped above
