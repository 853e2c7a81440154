"""The relevance model of each model (services.relevance), as the admin shows it: learnt from
the catalog in the background, or why not, and what the search does meanwhile. Read-only: the
server fits it again by itself when the model or the catalog's size changes."""

from __future__ import annotations

from datetime import datetime

from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils import timezone

from ..models import RelevanceFit
from ..retrieval.config import search_config
from .readonly import ReadOnlyAdmin

NOT_YET = (
    "Not learnt yet: the server learns what a good match is from the catalog by itself, once it has "
    "50 products or more (about a minute after they are in). Until then a search shows every product "
    "that is more like the query than random words would be."
)


def _when(value: str | datetime | None) -> str:
    if not value:
        return "?"
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M}"


@admin.register(RelevanceFit)
class RelevanceFitAdmin(ReadOnlyAdmin):
    list_display = ("model_id", "state", "products")
    fields = ("model_id", "state", "products", "tried_at")
    readonly_fields = fields

    @admin.display(description="What searches match")
    def state(self, obj: RelevanceFit) -> str:
        threshold = search_config().relevance_threshold
        if threshold <= 0:
            return (
                "Switched off (SEARCH_RELEVANCE_THRESHOLD=0): a search shows every product that is more like the "
                "query than random words would be."
            )
        if obj.problem:
            kept = (
                " Searches keep using what was learnt before."
                if obj.fitted
                else " Until it works, a search shows every product that is more like the query than random "
                "words would be."
            )
            return f"Could not learn from the catalog ({_when(obj.tried_at)}): {obj.problem}{kept}"
        fit = (obj.fitted or {}).get("fitted", {})
        return (
            f"Learnt from the catalog's own titles, categories, brands and attributes on {_when(fit.get('at'))} "
            f"({fit.get('seconds')} s). A search shows the products at least {threshold:.0%} likely to be a good "
            "match; it is learnt again when the catalog grows or shrinks by a quarter."
        )

    def changelist_view(self, request: HttpRequest, extra_context=None):
        if not RelevanceFit.objects.exists():
            messages.info(request, NOT_YET)
        return super().changelist_view(request, extra_context)
