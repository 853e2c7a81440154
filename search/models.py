"""The search and click log: what shoppers searched, what they were shown, what they clicked."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from .retrieval.keywords import words


class SearchEvent(models.Model):
    """One search as answered; its id is the `search_id` returned to the client."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # when it happened: a record written later (the log waited for a busy database) keeps it
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    channel = models.CharField(max_length=16)  # page, htmx, api, photo_page, photo_api
    mode = models.CharField(max_length=8)  # text, image, browse
    query = models.CharField(max_length=500, blank=True)
    query_normalized = models.CharField(max_length=500, blank=True, db_index=True)
    filters = models.JSONField(default=dict, blank=True)
    sort = models.CharField(max_length=16)
    strategy = models.CharField(max_length=16)
    model_id = models.CharField(max_length=255, blank=True)
    page = models.PositiveIntegerField(default=1)
    page_size = models.PositiveIntegerField(default=20)
    result_count = models.PositiveIntegerField(default=0)
    # Keyed hash of the session: searches of one visit link up, but no raw session key
    # or IP address is stored.
    session_hash = models.CharField(max_length=64, blank=True, db_index=True)
    # What the insights count, kept on the search so that they group one table: its day in the
    # shop's time zone, and its clicks (written with each click, search.services.events.click_log)
    day = models.DateField(null=True, blank=True)
    click_count = models.PositiveIntegerField(default=0)
    click_position_sum = models.PositiveIntegerField(default=0)
    # The merchandising that shaped it: {"rules": [ranking rule ids that changed what was shown,
    # or where], "synonyms": [synonym ids the keyword leg used]}; {} when none did
    merchandising = models.JSONField(default=dict, blank=True)
    # A filter, sort or page of a search of the same visit with the same words: the id of the
    # search it refines (the first of them), whose clicks it counts too; the insights count
    # searches once per query typed. Null: a search of its own.
    refines = models.UUIDField(null=True, blank=True)
    # The online experiment it was part of (Experiment.name) and what the shopper saw: the
    # "control" or "candidate" ranking (A/B), or both teams' products "interleaved"
    experiment = models.CharField(max_length=64, blank=True, default="", db_index=True)
    arm = models.CharField(max_length=12, blank=True, default="")
    # The position bias intervention (SEARCH_SWAP_PROBABILITY): the chance this search had of
    # one, and the position k whose product traded places with k + 1's when it had one
    swap_probability = models.FloatField(default=0.0)
    swapped_at = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]
        permissions = [("export_clicks", "Can export search and click logs")]
        # the insights read only this index for a period's days (SQLite and PostgreSQL scan it alone)
        indexes = [
            models.Index(
                fields=[
                    "day",
                    "mode",
                    "channel",
                    "query_normalized",
                    "refines",
                    "result_count",
                    "click_count",
                    "click_position_sum",
                ],
                name="search_event_counted",
            )
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.mode} {self.query!r}"


class SearchImpression(models.Model):
    """A product shown for a search, at a position, with its score."""

    search = models.ForeignKey(SearchEvent, on_delete=models.CASCADE, related_name="impressions")
    # Kept if the product is deleted later: the log records what was shown.
    product = models.ForeignKey("catalog.Product", on_delete=models.SET_NULL, null=True, related_name="+")
    product_sku = models.CharField(max_length=64)
    position = models.PositiveIntegerField()
    score = models.FloatField(null=True)
    # "pinned", "boosted" or "buried" when a ranking rule put it there: not the model's ranking,
    # so fine-tuning never learns from it as a negative (search.services.exports)
    placement = models.CharField(max_length=8, blank=True, default="")
    # an interleaved search: the team whose ranking placed it ("control" or "candidate")
    team = models.CharField(max_length=9, blank=True, default="")

    class Meta:
        ordering = ["search", "position"]
        constraints = [models.UniqueConstraint(fields=["search", "position"], name="impression_position_once")]


class Click(models.Model):
    search = models.ForeignKey(SearchEvent, on_delete=models.CASCADE, related_name="clicks")
    product = models.ForeignKey("catalog.Product", on_delete=models.SET_NULL, null=True, related_name="+")
    product_sku = models.CharField(max_length=64)
    position = models.PositiveIntegerField()
    # when it happened: a record written later (the log waited for a busy database) keeps it
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["created_at"]
        # A double-click (or a beacon plus the fallback link) is one click.
        constraints = [models.UniqueConstraint(fields=["search", "product_sku"], name="click_once_per_search")]


class SearchPhoto(models.Model):
    """A shopper's photo, kept while its search is in use: a photo search's URL names it (`photo=`),
    so that filters, sorting, pages and "Back to search" keep the photo without uploading it again.
    Its key is a keyed hash of the stored bytes; it is deleted SEARCH_PHOTO_DAYS after its last
    upload."""

    key = models.CharField(max_length=32, primary_key=True)
    image = models.BinaryField()  # JPEG, at most SEARCH_PHOTO_PIXELS on its longer side
    created_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"photo {self.key} ({self.created_at:%Y-%m-%d %H:%M})"


class SearchInsight(SearchEvent):
    """The merchandiser's view of the search log (the admin's insights page): a proxy with a
    permission of its own, so that seeing what shoppers search for is granted on its own."""

    class Meta:
        proxy = True
        verbose_name = "search insights"
        verbose_name_plural = "search insights"
        default_permissions = ()
        permissions = [("view_insights", "Can view search insights")]


def query_key(query: str) -> str:
    """A rule's query as compared (keywords.words: case, accents, punctuation and spacing aside)."""
    return " ".join(words(query or ""))[:200]


class RankingRuleQuerySet(models.QuerySet):
    """Bulk paths keep `query_key` too: the pin constraint reads it."""

    def bulk_create(self, objs, *args, **kwargs):
        objs = list(objs)
        for rule in objs:
            rule.query_key = query_key(rule.query)
        return super().bulk_create(objs, *args, **kwargs)

    def update(self, **kwargs):
        if "query" in kwargs:
            kwargs["query_key"] = query_key(kwargs["query"])
        return super().update(**kwargs)


class RankingRule(models.Model):
    """A merchandiser's rule for word searches, applied after fusion (search.retrieval.rules):
    pin a product to a position, hide it, or boost or bury products by brand, category or
    attribute, for one query, the queries that contain some words, or every word search."""

    class Match(models.TextChoices):
        EXACT = "exact", "The query is"
        CONTAINS = "contains", "The query contains the words"
        ANY = "any", "Every word search"

    class Action(models.TextChoices):
        PIN = "pin", "Pin a product to a position"
        HIDE = "hide", "Hide a product"
        BOOST = "boost", "Boost products that have…"
        BURY = "bury", "Bury products that have…"

    class Field(models.TextChoices):
        BRAND = "brand", "Brand"
        CATEGORY = "category", "Category"
        ATTRIBUTE = "attribute", "Attribute"

    match = models.CharField(max_length=8, choices=Match.choices, default=Match.EXACT)
    query = models.CharField(
        max_length=200, blank=True, help_text="Compared word by word, ignoring case, accents and punctuation."
    )
    action = models.CharField(max_length=8, choices=Action.choices, default=Action.PIN)
    product = models.ForeignKey(
        "catalog.Product",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        help_text="Pin and hide: the product.",
    )
    position = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Pin: 1 is the first result.")
    field = models.CharField(
        max_length=10, choices=Field.choices, blank=True, help_text="Boost and bury: what the products must have."
    )
    attribute = models.CharField(max_length=60, blank=True, help_text="Attribute: its name, e.g. colour.")
    value = models.CharField(max_length=120, blank=True, help_text="Boost and bury: e.g. Acme, or red.")
    strength = models.PositiveSmallIntegerField(
        default=50,
        help_text="Boost and bury, 1-100%: 100% puts the products first (bury: last); 50% halves "
        "their distance from the top (bury: doubles their position).",
    )
    note = models.CharField(max_length=200, blank=True, help_text="Why: e.g. the spring campaign.")
    active = models.BooleanField(default=True)
    starts_at = models.DateTimeField(null=True, blank=True, help_text="Optional: from when (empty: now).")
    ends_at = models.DateTimeField(null=True, blank=True, help_text="Optional: until when (empty: until switched off).")
    # the query's words as compared (keywords.words: case, accents, punctuation and spacing
    # aside), kept for the database to refuse a second pin at a taken position (save() sets it)
    query_key = models.CharField(max_length=200, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["query", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["match", "query_key", "position"],
                condition=models.Q(action="pin", active=True),
                name="ranking_rule_one_pin_per_position",
                violation_error_message="Another product is already pinned at this position for this query.",
            )
        ]

    objects = RankingRuleQuerySet.as_manager()

    def save(self, *args, **kwargs) -> None:
        self.query_key = query_key(self.query)
        if kwargs.get("update_fields") is not None and "query" in kwargs["update_fields"]:
            kwargs["update_fields"] = {*kwargs["update_fields"], "query_key"}
        super().save(*args, **kwargs)

    def __str__(self) -> str:
        when = (
            "every word search"
            if self.match == self.Match.ANY
            else f"{self.get_match_display().lower()} {self.query!r}"
        )
        return f"{self.get_action_display()} — {when}"


class Synonym(models.Model):
    """Words the keyword leg treats as one: a search for any of them finds products that use
    the others. One-way: only `one_way_from` finds the others, not the other way round."""

    words = models.CharField(max_length=500, help_text="Comma-separated, one word each: sofa, couch, settee.")
    one_way_from = models.CharField(
        max_length=60,
        blank=True,
        help_text='Optional: only this word finds the others (e.g. "jumper" finds '
        'sweaters; "sweater" does not find jumpers).',
    )
    note = models.CharField(max_length=200, blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["words"]

    def __str__(self) -> str:
        return f"{self.one_way_from} → {self.words}" if self.one_way_from else self.words


class FusionCalibration(models.Model):
    """A model's fitted fusion calibration (calibrate_fusion), kept where every process of every
    host reads it: a web container's file system is its own."""

    model_id = models.CharField(max_length=255, unique=True)
    coefficients = models.JSONField(help_text="Calibration.as_dict(): its version, coefficients and fit.")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"fusion calibration of {self.model_id}"


class RelevanceFit(models.Model):
    """The relevance model of a model on this catalog (services.relevance: fitted from the
    catalog itself, in the background), kept where every process of every host reads it."""

    model_id = models.CharField(max_length=255, unique=True)
    fitted = models.JSONField(null=True, blank=True, help_text="RelevanceModel.as_dict(); empty until a fit works.")
    products = models.PositiveIntegerField(default=0, help_text="Products in the store when it was last tried.")
    problem = models.TextField(blank=True, help_text="Why the last try did not fit one ('' when it did).")
    tried_at = models.DateTimeField("last tried", null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "relevance model"

    def __str__(self) -> str:
        return f"relevance model of {self.model_id}"


class Experiment(models.Model):
    """An online experiment between the serving ranking (the control) and a candidate
    (search.retrieval.experiments): started, reported and stopped with `manage.py experiment`.
    At most one runs at a time, so a shopper is in at most one."""

    class Method(models.TextChoices):
        INTERLEAVE = "interleave", "Team-draft interleaving"
        AB = "ab", "A/B split"

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        STOPPED = "stopped", "Stopped"

    name = models.SlugField(max_length=64, unique=True)
    method = models.CharField(max_length=10, choices=Method.choices)
    # what the candidate changes: {"strategy": "rrf"}, {"weights": {"text": 1, "image": 0.5}},
    # {"calibration": {...a fusion calibration...}} or {"calibration": "off"}
    candidate = models.JSONField(default=dict)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(default=timezone.now)
    stopped_at = models.DateTimeField(null=True, blank=True)
    promoted = models.BooleanField(default=False)
    # searches whose candidate ranking failed (the shopper got the control's list), and why
    failures = models.PositiveIntegerField(default=0)
    last_failure = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["status"], condition=models.Q(status="running"), name="experiment_one_running"
            )
        ]

    def __str__(self) -> str:
        return self.name
