"""The relevance model of each model (services.relevance), as the admin shows it: fitted from
the catalog in the background, or why not, and what the search does meanwhile. Read-only: the
sweep fits it when the model or the catalog's size changes."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from ..models import RelevanceFit
from ..retrieval.config import search_config


@admin.register(RelevanceFit)
class RelevanceFitAdmin(admin.ModelAdmin):
    list_display = ("model_id", "state", "products", "tried_at")
    readonly_fields = ("model_id", "state", "products", "tried_at", "fitted")
    fields = readonly_fields

    @admin.display(description="State")
    def state(self, obj: RelevanceFit) -> str:
        if search_config().relevance_threshold <= 0:
            return "Not used: SEARCH_RELEVANCE_THRESHOLD is 0, so a query matches every product above the cutoff."
        if obj.problem:
            kept = " The previous fit is still used." if obj.fitted else ""
            return f"Not fitted: {obj.problem}{kept}"
        fit = (obj.fitted or {}).get("fitted", {})
        return (
            f"Fitted from the catalog on {fit.get('queries')} pseudo-queries in {fit.get('seconds')} s "
            f"({fit.get('at')}); a query matches the products at least "
            f"{search_config().relevance_threshold:.0%} likely to be a good match."
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
