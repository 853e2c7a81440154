"""The merchandiser's search insights: what shoppers search for, what finds nothing, what nobody
clicks, and which searches lead to a product, counted from the search and click log for a
period and a channel, with the trend drawn as charts and every table exportable as CSV.
Seeing it needs its own permission (search.view_insights).

And what a merchandiser does about it: ranking rules (pin, hide, boost, bury) and synonyms, each
previewed against live results before it is saved. Their own model permissions."""
from __future__ import annotations

import csv
import logging
from datetime import timedelta

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path
from django.utils import timezone

from catalog.models import Product

from .models import RankingRule, SearchInsight, Synonym
from .retrieval.encoders import ModelUnavailableError
from .retrieval.facets import facet_key
from .retrieval.keywords import words
from .retrieval.vector_store import IndexUnavailableError
from .selectors import product_search, query_normalize
from .selectors.insights import TABLES, Period, product_queries, query_table, query_tables, summary
from .selectors.merchandising import Merchandising, query_merchandising
from .services.exports import csv_cell
from .web.charts import bar_chart, rate_chart

logger = logging.getLogger(__name__)
MAX_DAYS = 366
TABLE_TITLES = {"top": "Top queries", "zero": "Queries with zero results",
                "no_clicks": "Queries with results but no clicks"}


class InsightsForm(forms.Form):
    start = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}), required=False)
    end = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}), required=False,
                          help_text="Included.")
    channel = forms.ChoiceField(choices=[("all", "All channels"), ("storefront", "Storefront"), ("api", "API"),
                                         ("photo", "Photo searches")], required=False)
    sku = forms.CharField(required=False, max_length=64, label="Product SKU",
                          help_text="The queries shoppers clicked this product from.")

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
        return Period(first=self.cleaned_data["start"], last=self.cleaned_data["end"],
                      channel=self.cleaned_data["channel"])


@admin.register(SearchInsight)
class SearchInsightAdmin(admin.ModelAdmin):
    """One page, not a list of log rows: the insights replace the change list."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("search.view_insights")

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.has_perm("search.view_insights")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        bound = InsightsForm(request.GET or {})
        valid = bound.is_valid()
        # the page opens on the last 30 days, shown in the form's fields
        form = bound if request.GET or not valid else InsightsForm(initial={
            "start": bound.cleaned_data["start"], "end": bound.cleaned_data["end"], "channel": "all"})
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "form": form,
                   "title": "Search insights"}
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
            period=period, start=bound.cleaned_data["start"], end=bound.cleaned_data["end"],
            channel=dict(bound.fields["channel"].choices)[bound.cleaned_data["channel"]].lower(), totals=totals,
            query_string=request.GET.urlencode(),
            tables=[(name, TABLE_TITLES[name], rows) for name, rows in query_tables(period).items()],
            searches_chart=bar_chart(days, [d.searches for d in totals.days], title="Searches per day"),
            rates_chart=rate_chart(days, {"Click-through rate": ([d.ctr for d in totals.days], "#1b7f3b"),
                                          "Zero-result rate": ([d.zero_rate for d in totals.days], "#b3261e")},
                                   title="Click-through and zero-result rate per day"),
            product=bound.cleaned_data.get("product"),
            # each query a step from a rule or a synonym for it, for who may add them
            can_add_rule=request.user.has_perm("search.add_rankingrule"),
            can_add_synonym=request.user.has_perm("search.add_synonym"),
        )
        if context["product"] is not None:
            context["product_rows"] = product_queries(period, product_id=context["product"].pk)
        return render(request, "admin/search/insights.html", context)


CSV_HEADERS = ["query", "searches", "zero_results", "clicked_searches", "clicks", "click_through_rate",
               "mean_click_position"]


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
            writer.writerow([csv_cell(row.query), row.searches, row.zero_results, row.clicked, row.clicks,
                             f"{row.ctr:.4f}", "" if row.mean_position is None else f"{row.mean_position:.2f}"])
    else:
        return HttpResponse(f"Unknown export {export!r}: use one of {', '.join((*TABLES, 'days', 'product'))}.",
                            status=400, content_type="text/plain")
    return response


# --- ranking rules and synonyms ---

PREVIEW_SIZE = 20
MAX_PIN_POSITION = 100


def _date_time(name: str) -> forms.DateTimeField:
    """A rule's date as one labelled date-and-time box (the admin's split date and time boxes
    have no labels of their own, which screen readers and axe report)."""
    field = RankingRule._meta.get_field(name)
    return forms.DateTimeField(required=False, label=field.verbose_name.capitalize(), help_text=field.help_text,
                               widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"))


class RankingRuleForm(forms.ModelForm):
    starts_at = _date_time("starts_at")
    ends_at = _date_time("ends_at")

    class Meta:
        model = RankingRule
        fields = ["match", "query", "action", "product", "position", "field", "attribute", "value", "strength",
                  "note", "active", "starts_at", "ends_at"]

    def clean(self):
        data = super().clean()
        match, action = data.get("match"), data.get("action")
        if match == RankingRule.Match.ANY:
            data["query"] = ""
        elif match and not words(data.get("query") or ""):
            self.add_error("query", "Type the query this rule is for (or choose “Every word search”).")
        if action in (RankingRule.Action.PIN, RankingRule.Action.HIDE):
            if not data.get("product"):
                self.add_error("product", f"Choose the product to {action}.")
            data.update(field="", attribute="", value="")
            if action == RankingRule.Action.HIDE:
                data["position"] = None
            elif not data.get("position") or not 1 <= data["position"] <= MAX_PIN_POSITION:
                self.add_error("position", f"Give the position to pin it to: 1 to {MAX_PIN_POSITION}, 1 is the first.")
        elif action in (RankingRule.Action.BOOST, RankingRule.Action.BURY):
            data.update(product=None, position=None)
            if not data.get("field"):
                self.add_error("field", f"Choose what the products to {action} must have: a brand, a category or an "
                                        "attribute.")
            if data.get("field") == RankingRule.Field.ATTRIBUTE and not (data.get("attribute") or "").strip():
                self.add_error("attribute", "Name the attribute, as the catalog does (e.g. colour).")
            if data.get("field") != RankingRule.Field.ATTRIBUTE:
                data["attribute"] = ""
            if not facet_key(data.get("value") or ""):
                self.add_error("value", "Give the value the products must have (e.g. Acme, or red).")
            strength = data.get("strength")
            if strength is None or not 1 <= strength <= 100:
                self.add_error("strength", "Give a strength from 1 to 100 (%).")
        if data.get("starts_at") and data.get("ends_at") and data["ends_at"] <= data["starts_at"]:
            self.add_error("ends_at", "The rule would end before it starts: make the end later than the start.")
        if action == RankingRule.Action.PIN and data.get("active") and not self.errors:
            pinned = (RankingRule.objects.filter(active=True, action=RankingRule.Action.PIN, match=match,
                                                 position=data["position"])
                      .exclude(pk=self.instance.pk).exclude(product=data["product"]).select_related("product"))
            query_words = words(data.get("query") or "")
            clash = next((rule for rule in pinned if words(rule.query) == query_words), None)  # the same query
            if clash is not None:
                self.add_error("position", f"{clash.product.sku} is already pinned at position {clash.position} for "
                                           "this query (rule {}): choose another position.".format(clash.pk))
        return data


class SynonymForm(forms.ModelForm):
    class Meta:
        model = Synonym
        fields = ["words", "one_way_from", "note", "active"]

    def clean_words(self):
        group = []
        for part in self.cleaned_data["words"].split(","):
            found = words(part)
            if len(found) > 1:
                raise forms.ValidationError(f"“{part.strip()}” is {len(found)} words: a synonym is one word, "
                                            "matched with one word. Write it as one, or leave it out.")
            if found and found[0] not in group:
                group.append(found[0])
        if len(group) < 2:
            raise forms.ValidationError("Give at least two words, separated by commas: sofa, couch.")
        return ", ".join(group)

    def clean_one_way_from(self):
        found = words(self.cleaned_data.get("one_way_from") or "")
        if len(found) > 1:
            raise forms.ValidationError("One word: the word shoppers type that should find the others.")
        return found[0] if found else ""


class PreviewMixin:
    """A “Preview against live results” button on the change form: the first page of a search
    as it is now, and as it would be with the form's rule saved, nothing saved meanwhile."""

    preview_template = "admin/search/preview.html"
    change_form_template = "admin/search/merchandising_change_form.html"

    def get_urls(self):
        info = self.model._meta.app_label, self.model._meta.model_name
        return [path("preview/", self.admin_site.admin_view(self.preview_view), name="%s_%s_preview" % info),
                *super().get_urls()]

    preview_rows = ""  # the rows query_merchandising takes the form's row with: "rules" or "synonyms"

    def preview_row(self, row):
        return row

    def merchandising(self, query: str, row, saved_pk) -> Merchandising:
        """The rules and synonyms for the query with the form's row in place of its saved self."""
        saved = self.model.objects.filter(active=True).exclude(pk=saved_pk)
        return query_merchandising(query, **{self.preview_rows: [*saved, self.preview_row(row)]})

    def preview_view(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return HttpResponse("Preview with POST, from the rule's form.", status=405, content_type="text/plain")
        obj = None
        pk = request.GET.get("id", "")
        if pk:
            obj = self.model.objects.filter(pk=pk).first() if pk.isdigit() else None
            if obj is None:
                return HttpResponse(f"No {self.model._meta.verbose_name} {pk}: it was deleted meanwhile.",
                                    status=404, content_type="text/plain")
        allowed = self.has_change_permission(request, obj) if obj else self.has_add_permission(request)
        if not allowed:
            raise PermissionDenied
        form = self.get_form(request, obj, change=obj is not None)(request.POST, instance=obj)
        context = {"errors": [], "opts": self.model._meta}
        if not form.is_valid():
            context["errors"] = [f"{form.fields[name].label if name in form.fields else ''}: {' '.join(e)}".lstrip(": ")
                                 for name, e in form.errors.items()]
            return render(request, self.preview_template, context)
        row = form.save(commit=False)
        query = query_normalize(request.POST.get("preview_query") or getattr(row, "query", "") or "")
        if not words(query):
            context["errors"] = ["Type a query to preview this with."]
            return render(request, self.preview_template, context)
        try:
            now = product_search(query=query, page_size=PREVIEW_SIZE)
            then = product_search(query=query, page_size=PREVIEW_SIZE,
                                  merchandising=self.merchandising(query, row, obj.pk if obj else None))
        except (ModelUnavailableError, IndexUnavailableError) as exc:  # say so, in the panel
            logger.warning("Rule preview for %r failed: %s", query, exc)
            context["errors"] = [f"The search could not run: {exc}"]
            return render(request, self.preview_template, context)
        was = {r.id: i + 1 for i, r in enumerate(now.ranked)}
        shown = {hit.product.pk for hit in then.hits}
        gone = [hit for hit in now.hits if hit.product.pk not in shown]  # pushed off the page, or hidden
        context.update(query=query, now=now, then=then, gone=gone,
                       moved=[(hit, was.get(hit.product.pk)) for hit in then.hits])
        return render(request, self.preview_template, context)


@admin.register(RankingRule)
class RankingRuleAdmin(PreviewMixin, admin.ModelAdmin):
    form = RankingRuleForm
    preview_rows = "rules"
    list_display = ("rule_query", "action", "target", "note", "state", "updated_at")
    list_select_related = ("product",)  # a pin's or hide's target, read with the list in one query
    list_filter = ("action", "match", "active")
    search_fields = ("query", "product__sku", "product__title", "value", "note")
    autocomplete_fields = ("product",)
    fieldsets = (
        ("For which searches", {"fields": ("match", "query")}),
        ("What it does", {"fields": ("action",)}),
        ("Pin or hide: the product", {"fields": ("product", "position")}),
        ("Boost or bury: the products that have", {"fields": ("field", "attribute", "value", "strength")}),
        (None, {"fields": ("note", "active", ("starts_at", "ends_at"))}),
    )

    @admin.display(description="For", ordering="query")
    def rule_query(self, obj: RankingRule) -> str:
        return "every word search" if obj.match == RankingRule.Match.ANY else (
            f"“{obj.query}”" if obj.match == RankingRule.Match.EXACT else f"queries with “{obj.query}”")

    @admin.display(description="Target")
    def target(self, obj: RankingRule) -> str:
        if obj.action == RankingRule.Action.PIN:
            return f"{obj.product.sku} at {obj.position}" if obj.product else ""
        if obj.action == RankingRule.Action.HIDE:
            return obj.product.sku if obj.product else ""
        what = obj.attribute if obj.field == RankingRule.Field.ATTRIBUTE else obj.get_field_display().lower()
        return f"{what} = {obj.value} ({obj.strength}%)"

    @admin.display(description="State", ordering="active")
    def state(self, obj: RankingRule) -> str:
        now = timezone.now()
        if not obj.active:
            return "off"
        if obj.starts_at and now < obj.starts_at:
            return f"from {timezone.localtime(obj.starts_at):%Y-%m-%d %H:%M}"
        if obj.ends_at and obj.ends_at <= now:
            return "ended"
        return f"live until {timezone.localtime(obj.ends_at):%Y-%m-%d %H:%M}" if obj.ends_at else "live"

    def preview_row(self, row: RankingRule) -> RankingRule:
        row.starts_at = row.ends_at = None  # previewed as it will be while live, whatever its dates
        return row


@admin.register(Synonym)
class SynonymAdmin(PreviewMixin, admin.ModelAdmin):
    form = SynonymForm
    preview_rows = "synonyms"
    list_display = ("words", "one_way_from", "note", "active", "updated_at")
    list_filter = ("active",)
    search_fields = ("words", "one_way_from", "note")
