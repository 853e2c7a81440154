"""The merchandiser's search insights: what shoppers search for, what finds nothing, what nobody
clicks, and which searches lead to a product, counted from the search and click log for a
period and a channel, with the trend drawn as charts and every table exportable as CSV.
Seeing it needs its own permission (search.view_insights)."""

from __future__ import annotations

import csv
import logging
from datetime import timedelta

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from catalog.models import Product

from ..models import SearchInsight
from ..selectors.insights import TABLES, Period, filter_table, product_queries, query_table, query_tables, summary
from ..selectors.searching import facet_attributes
from ..services.exports import csv_cell
from ..web.charts import bar_chart, rate_chart
from .readonly import ReadOnlyAdmin

logger = logging.getLogger(__name__)
MAX_DAYS = 366
TABLE_TITLES = {
    "top": "Top queries",
    "zero": "Queries with zero results",
    "no_clicks": "Queries with results but no clicks",
}


class InsightsForm(forms.Form):
    start = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}), required=False)
    end = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}), required=False, help_text="Included.")
    channel = forms.ChoiceField(
        choices=[("all", "All channels"), ("storefront", "Storefront"), ("api", "API"), ("photo", "Photo searches")],
        required=False,
    )
    sku = forms.CharField(
        required=False, max_length=64, label="Product SKU", help_text="The queries shoppers clicked this product from."
    )

    def clean(self):
        data = super().clean()
        today = timezone.localdate()
        end = data.get("end") or today
        start = data.get("start") or end - timedelta(days=29)
        if start > end:
            raise forms.ValidationError("The start date is after the end date: swap them.")
        if (end - start).days + 1 > MAX_DAYS:
            raise forms.ValidationError(f"Choose at most {MAX_DAYS} days.")
        data.update(start=start, end=end, channel=data.get("channel") or "all")
        sku = (data.get("sku") or "").strip()
        data["product"] = None
        if sku:
            data["product"] = Product.objects.filter(sku__iexact=sku).first()
            if data["product"] is None:
                self.add_error("sku", f"No product has the SKU {sku!r}.")
        return data

    def period(self) -> Period:
        return Period(
            first=self.cleaned_data["start"], last=self.cleaned_data["end"], channel=self.cleaned_data["channel"]
        )


@admin.register(SearchInsight)
class SearchInsightAdmin(ReadOnlyAdmin):
    """One page, not a list of log rows: the insights replace the change list."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("search.view_insights")

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.has_perm("search.view_insights")

    def changelist_view(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        bound = InsightsForm(request.GET or {})
        valid = bound.is_valid()
        # the page opens on the last 30 days, shown in the form's fields
        form = (
            bound
            if request.GET or not valid
            else InsightsForm(
                initial={"start": bound.cleaned_data["start"], "end": bound.cleaned_data["end"], "channel": "all"}
            )
        )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "form": form,
            "title": "Search insights",
        }
        if not valid:
            context["form"] = bound
            return render(request, "admin/search/insights.html", context, status=400)
        period = bound.period()
        export = request.GET.get("export", "")
        if export:
            return _csv(export, period, bound.cleaned_data.get("product"))
        totals = summary(period)
        days = [d.day for d in totals.days]
        context.update(
            period=period,
            start=bound.cleaned_data["start"],
            end=bound.cleaned_data["end"],
            channel=dict(bound.fields["channel"].choices)[bound.cleaned_data["channel"]].lower(),
            totals=totals,
            query_string=request.GET.urlencode(),
            tables=[(name, TABLE_TITLES[name], rows) for name, rows in query_tables(period).items()],
            filter_rows=[(_filter_label(row.field), row) for row in filter_table(period)],
            searches_chart=bar_chart(days, [d.searches for d in totals.days], title="Searches per day"),
            rates_chart=rate_chart(
                days,
                {
                    # a day without searches has no rate: a gap in the line, not 0%
                    "Click-through rate": ([d.ctr if d.searches else None for d in totals.days], "#1b7f3b"),
                    "Zero-result rate": ([d.zero_rate if d.searches else None for d in totals.days], "#b3261e"),
                },
                title="Click-through and zero-result rate per day",
            ),
            product=bound.cleaned_data.get("product"),
            # each query a step from a rule or a synonym for it, for who may add them
            can_add_rule=request.user.has_perm("search.add_rankingrule"),
            can_add_synonym=request.user.has_perm("search.add_synonym"),
        )
        if context["product"] is not None:
            context["product_rows"] = product_queries(period, product_id=context["product"].pk)
        return render(request, "admin/search/insights.html", context)


def _filter_label(field: str) -> str:
    """A filter's name as the storefront's legend says it ("Colour" for attr_colour)."""
    legends = {"category": "Category", "brand": "Brand", "price": "Price"}
    legends |= {a.field: a.label for a in facet_attributes()}
    return legends.get(field, field)


CSV_HEADERS = [
    "query",
    "searches",
    "zero_results",
    "clicked_searches",
    "clicks",
    "click_through_rate",
    "mean_click_position",
]


def _csv(export: str, period: Period, product: Product | None) -> HttpResponse:
    """One table of the page as CSV (up to 10,000 rows), named by the table and the period."""
    name = f"search-{export}-{period.first:%Y%m%d}-{period.last:%Y%m%d}-{period.channel}.csv"
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    writer = csv.writer(response)
    if export == "days":
        writer.writerow(["day", "searches", "zero_results", "clicked_searches", "click_through_rate"])
        for day in summary(period).days:
            writer.writerow([day.day.isoformat(), day.searches, day.zero_results, day.clicked, f"{day.ctr:.4f}"])
    elif export == "product" and product is not None:
        writer.writerow(["sku", "query", "clicks", "mean_click_position"])
        for row in product_queries(period, product_id=product.pk, limit=10_000):
            writer.writerow([product.sku, csv_cell(row.query), row.clicks, f"{row.mean_position:.2f}"])
    elif export in TABLES:
        writer.writerow(CSV_HEADERS)
        for row in query_table(period, table=export, limit=10_000):
            writer.writerow(
                [
                    csv_cell(row.query),
                    row.searches,
                    row.zero_results,
                    row.clicked,
                    row.clicks,
                    f"{row.ctr:.4f}",
                    "" if row.mean_position is None else f"{row.mean_position:.2f}",
                ]
            )
    else:
        return HttpResponse(
            f"Unknown export {export!r}: use one of {', '.join((*TABLES, 'days', 'product'))}.",
            status=400,
            content_type="text/plain",
        )
    return response
