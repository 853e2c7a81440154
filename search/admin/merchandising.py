"""What a merchandiser does about what shoppers search: ranking rules (pin, hide, boost, bury)
and synonyms, each previewed against live results before it is saved. Their own model
permissions; a pin's position is checked by the service that saves it (services.merchandising)."""

from __future__ import annotations

import logging
from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path
from django.utils import timezone

from ..models import RankingRule, Synonym
from ..retrieval.config import search_config
from ..retrieval.encoders import ModelUnavailableError
from ..retrieval.facets import facet_key
from ..retrieval.keywords import words
from ..retrieval.vector_store import IndexUnavailableError
from ..selectors import product_search, query_normalize
from ..selectors.insights import Period, query_table
from ..selectors.merchandising import Merchandising, query_merchandising
from ..services.merchandising import pin_clash_message, ranking_rule_save, rule_pin_clash

logger = logging.getLogger(__name__)

PREVIEW_SIZE = 20
# the other queries a preview looks at: the most searched of the last OTHERS_DAYS days, and how
# many of their first results it compares
OTHERS, OTHERS_DAYS, OTHERS_SHOWN = 20, 30, 5
MAX_PIN_POSITION = 100


def _date_time(name: str) -> forms.DateTimeField:
    """A rule's date as one labelled date-and-time box (the admin's split date and time boxes
    have no labels of their own, which screen readers and axe report)."""
    field = RankingRule._meta.get_field(name)
    return forms.DateTimeField(
        required=False,
        label=field.verbose_name.capitalize(),
        help_text=field.help_text,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )


class RankingRuleForm(forms.ModelForm):
    starts_at = _date_time("starts_at")
    ends_at = _date_time("ends_at")

    class Meta:
        model = RankingRule
        fields = [
            "match",
            "query",
            "action",
            "product",
            "position",
            "field",
            "attribute",
            "value",
            "strength",
            "note",
            "active",
            "starts_at",
            "ends_at",
        ]

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
                self.add_error(
                    "field", f"Choose what the products to {action} must have: a brand, a category or an attribute."
                )
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
        if action == RankingRule.Action.PIN and not self.errors:
            clash = rule_pin_clash(
                rule=RankingRule(
                    pk=self.instance.pk,
                    action=action,
                    match=match,
                    query=data.get("query") or "",
                    position=data.get("position"),
                    active=bool(data.get("active")),
                )
            )
            if clash is not None:
                self.add_error("position", pin_clash_message(clash))
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
                raise forms.ValidationError(
                    f"“{part.strip()}” is {len(found)} words: a synonym is one word, "
                    "matched with one word. Write it as one, or leave it out."
                )
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
        return [
            path("preview/", self.admin_site.admin_view(self.preview_view), name=f"{info[0]}_{info[1]}_preview"),
            *super().get_urls(),
        ]

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
                return HttpResponse(
                    f"No {self.model._meta.verbose_name} {pk}: it was deleted meanwhile.",
                    status=404,
                    content_type="text/plain",
                )
        allowed = self.has_change_permission(request, obj) if obj else self.has_add_permission(request)
        if not allowed:
            raise PermissionDenied
        form = self.get_form(request, obj, change=obj is not None)(request.POST, instance=obj)
        context = {"errors": [], "opts": self.model._meta}
        if not form.is_valid():
            context["errors"] = [
                f"{form.fields[name].label if name in form.fields else ''}: {' '.join(e)}".lstrip(": ")
                for name, e in form.errors.items()
            ]
            return render(request, self.preview_template, context)
        row = form.save(commit=False)
        query = query_normalize(request.POST.get("preview_query") or getattr(row, "query", "") or "")
        if not words(query):
            context["errors"] = ["Type a query to preview this with."]
            return render(request, self.preview_template, context)
        try:
            # as shoppers search it: the words that are filters read as such
            now = product_search(query=query, page_size=PREVIEW_SIZE, understand=search_config().query_filters)
            then = product_search(
                query=query,
                page_size=PREVIEW_SIZE,
                understand=search_config().query_filters,
                merchandising=self.merchandising(query, row, obj.pk if obj else None),
            )
        except (ModelUnavailableError, IndexUnavailableError) as exc:  # say so, in the panel
            logger.warning("Rule preview for %r failed: %s", query, exc)
            context["errors"] = [f"The search could not run: {exc}"]
            return render(request, self.preview_template, context)
        was = {r.id: i + 1 for i, r in enumerate(now.ranked)}
        shown = {hit.product.pk for hit in then.hits}
        gone = [hit for hit in now.hits if hit.product.pk not in shown]  # pushed off the page, or hidden
        context.update(
            query=query,
            now=now,
            then=then,
            gone=gone,
            moved=[(hit, was.get(hit.product.pk)) for hit in then.hits],
            others=self.others_changed(query, row, obj.pk if obj else None),
            others_days=OTHERS_DAYS,
        )
        return render(request, self.preview_template, context)

    def others_changed(self, query: str, row, saved_pk) -> list[dict]:
        """The most searched other queries whose first results or count the form's row would
        change, each before and after (a rule for "mug" acts on "yellow mug" too)."""
        today = timezone.localdate()
        period = Period(first=today - timedelta(days=OTHERS_DAYS - 1), last=today)
        out = []
        for other in query_table(period, table="top", limit=OTHERS + 1):
            if other.query == query:
                continue
            merchandising = self.merchandising(other.query, row, saved_pk)
            if merchandising == query_merchandising(other.query):
                continue  # the row does not apply to it
            now = product_search(query=other.query, page_size=OTHERS_SHOWN, understand=search_config().query_filters)
            then = product_search(
                query=other.query,
                page_size=OTHERS_SHOWN,
                merchandising=merchandising,
                understand=search_config().query_filters,
            )
            before, after = [h.product for h in now.hits], [h.product for h in then.hits]
            if [p.pk for p in before] != [p.pk for p in after] or now.count != then.count:
                out.append({"row": other, "now": now, "then": then, "before": before, "after": after})
        return out


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
        return (
            "every word search"
            if obj.match == RankingRule.Match.ANY
            else (f"“{obj.query}”" if obj.match == RankingRule.Match.EXACT else f"queries with “{obj.query}”")
        )

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

    def save_model(self, request: HttpRequest, obj: RankingRule, form, change: bool) -> None:
        try:
            ranking_rule_save(rule=obj)
        except ValidationError as exc:  # another save took the position after the form looked
            self.message_user(request, " ".join(exc.messages) + " The rule was not saved.", level=messages.ERROR)


@admin.register(Synonym)
class SynonymAdmin(PreviewMixin, admin.ModelAdmin):
    form = SynonymForm
    preview_rows = "synonyms"
    list_display = ("words", "one_way_from", "note", "active", "updated_at")
    list_filter = ("active",)
    search_fields = ("words", "one_way_from", "note")
