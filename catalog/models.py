"""Products and their index state."""

from __future__ import annotations

import json
import os
import re
import socket
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import (
    MaxLengthValidator,
    MinValueValidator,
    ProhibitNullCharactersValidator,
    RegexValidator,
)
from django.db import models
from django.utils import timezone

from catalog.config import catalog_config

# What the indexer writes. A save of only these fields is the indexer's own and schedules
# nothing; any other save is a change that must reach search.
INDEX_STATE_FIELDS = frozenset(
    {"index_status", "index_error", "indexed_model", "content_hash", "payload_hash", "indexed_at", "index_queued_at"}
)


# PostgreSQL refuses NUL in text; refuse it at the door on every database alike.
NO_NUL = ProhibitNullCharactersValidator()
# Far beyond what a text tower reads (CLIP: 77 tokens), but bounded so one row cannot
# bloat the database or the payload.
DESCRIPTION_MAX = 20_000
# attributes: how deep their nesting and how long their JSON may be
ATTRIBUTES_DEPTH = 8
ATTRIBUTES_MAX_CHARS = 20_000


def attributes_validate(value) -> None:
    """Attributes every database stores and every search reads: no NUL character (PostgreSQL
    refuses one in JSON), nesting at most ATTRIBUTES_DEPTH deep, at most ATTRIBUTES_MAX_CHARS of JSON."""

    def walk(node, depth: int) -> None:
        if depth > ATTRIBUTES_DEPTH:
            raise ValidationError(f"Attributes may nest at most {ATTRIBUTES_DEPTH} levels deep.")
        if isinstance(node, dict):
            for key, item in node.items():
                if "\x00" in str(key):
                    raise ValidationError("An attribute name contains a NUL character.")
                walk(item, depth + 1)
        elif isinstance(node, (list, tuple)):
            for item in node:
                walk(item, depth + 1)
        elif isinstance(node, str) and "\x00" in node:
            raise ValidationError("An attribute value contains a NUL character.")

    walk(value, 0)
    if len(json.dumps(value, default=str)) > ATTRIBUTES_MAX_CHARS:
        raise ValidationError(f"Attributes may take at most {ATTRIBUTES_MAX_CHARS:,} characters of JSON.")


class IndexStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    INDEXED = "indexed", "Indexed"
    FAILED = "failed", "Failed"
    # Inactive products are kept in the catalog but removed from search on purpose.
    UNLISTED = "unlisted", "Not in search (inactive)"


class ProductQuerySet(models.QuerySet):
    def mark_pending(self, **also: Any) -> int:
        """Flag rows for re-indexing (setting `also` too); for bulk `update()` paths, which send
        no signals. `updated_at` moves with the flag: it is the row's version, and an index run
        that read the row before writes its state only if that did not change."""
        return self.update(index_status=IndexStatus.PENDING, updated_at=timezone.now(), **also)

    def pending(self) -> ProductQuerySet:
        """Rows whose last change has not reached search yet: the flag the sweep drains."""
        return self.filter(index_status=IndexStatus.PENDING)

    def searchable(self) -> ProductQuerySet:
        return self.filter(active=True)


def product_image_path(instance: Product, filename: str) -> str:
    """products/<sku as one folder name>/<file>: a sku's slashes and dots never make a path."""
    folder = re.sub(r"[^A-Za-z0-9_-]", "_", instance.sku) or "_"
    return f"products/{folder}/{filename}"


class Product(models.Model):
    sku = models.CharField(
        max_length=64,
        unique=True,
        validators=[
            RegexValidator(
                r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._\-/]*$", "Use letters, digits and . _ - / (no spaces, no '..')."
            )
        ],
    )
    title = models.CharField(max_length=300, validators=[NO_NUL])
    description = models.TextField(blank=True, validators=[NO_NUL, MaxLengthValidator(DESCRIPTION_MAX)])
    brand = models.CharField(max_length=120, blank=True, db_index=True, validators=[NO_NUL])
    category = models.CharField(max_length=120, blank=True, db_index=True, validators=[NO_NUL])
    price = models.DecimalField(
        max_digits=12, decimal_places=2, default=Decimal("0"), validators=[MinValueValidator(Decimal("0"))]
    )
    currency = models.CharField(
        max_length=3, default="USD", validators=[RegexValidator(r"^[A-Z]{3}$", "Use a 3-letter ISO code such as USD.")]
    )
    image = models.ImageField(upload_to=product_image_path, blank=True, max_length=255)
    attributes = models.JSONField(default=dict, blank=True, validators=[attributes_validate])
    active = models.BooleanField(default=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    # The dirty flag: the catalog services set `pending` with every change; the indexer sets
    # the rest. The sweep re-sends rows left pending (catalog.models.ProductQuerySet.pending).
    index_status = models.CharField(
        max_length=16, choices=IndexStatus.choices, default=IndexStatus.PENDING, db_index=True
    )
    index_error = models.TextField(blank=True)
    indexed_model = models.CharField(max_length=255, blank=True)
    # Hash of what the vectors were computed from (text, image bytes, model);
    # a change of price or stock only touches the payload hash and is not re-encoded.
    content_hash = models.CharField(max_length=64, blank=True)
    payload_hash = models.CharField(max_length=64, blank=True)
    indexed_at = models.DateTimeField(null=True, blank=True)
    # When an embedding task for the row was last handed to the broker: the sweep re-sends a
    # pending row only once that message may be lost (SEARCH_QUEUE_REDELIVERY_SECONDS).
    index_queued_at = models.DateTimeField(null=True, blank=True)

    objects = ProductQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["index_status", "updated_at"]),
            # browsing the catalog: newest first, or by price (100k products: 50 ms -> 1)
            models.Index(fields=["created_at", "id"], name="product_newest"),
            models.Index(fields=["price", "id"], name="product_price"),
        ]

    def __str__(self) -> str:
        return f"{self.sku} — {self.title}"

    @property
    def search_text(self) -> str:
        """The text the text tower sees: what a shopper would read about the product."""
        parts = [self.title, self.brand, self.category, self.description]
        return ". ".join(p.strip() for p in parts if p and p.strip())


def process_id() -> str:
    """This process, as "host:pid:start" (its start time tells a reused pid apart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_started(os.getpid())}"


def process_gone(runner: str) -> bool:
    """Whether the process named by process_id() is known to be gone: it ran on this host and no
    process with its pid and start time exists now. False when it cannot be known (another host)."""
    host, _, rest = runner.partition(":")
    pid, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    return _started(int(pid)) != started


def _started(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]  # starttime, in clock ticks since boot
    except (OSError, IndexError):
        return ""


class ImportJob(models.Model):
    """A catalog import started in the admin: it runs in the background (a Celery task, or a
    thread of the embedded server) and its page shows the progress, then the report."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    file_name = models.CharField(max_length=255)
    # the uploads, kept until the job has read them
    upload = models.FileField(upload_to="imports/", max_length=255)
    images = models.FileField(upload_to="imports/", max_length=255, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    rows_total = models.PositiveIntegerField(default=0)  # the file's data lines, counted at upload
    rows_done = models.PositiveIntegerField(default=0)
    # the import's report: {"summary": ..., "created": n, ..., "errors": [{"line", "sku", "message"}]}
    report = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # when the running import last wrote a chunk: one silent far longer has stopped (its server
    # or worker died) and may be run again; a duplicate delivery of a live one may not
    beat_at = models.DateTimeField(null=True, blank=True)
    # the process running it, "host:pid:start": on its own host, a runner that is gone is seen at
    # once (a server killed and started again), not only after CATALOG_IMPORT_STALL_SECONDS
    runner = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"import of {self.file_name} ({self.get_status_display()})"

    @property
    def stalled(self) -> bool:
        """Its process is gone: running and silent for longer than CATALOG_IMPORT_STALL_SECONDS
        (or its runner, a process of this host, no longer exists), or queued that long and never
        started (its server stopped first)."""
        since = {self.Status.RUNNING: self.beat_at, self.Status.QUEUED: self.created_at}.get(self.status)
        if since is None:
            return False
        if self.status == self.Status.RUNNING and process_gone(self.runner):
            return True
        return (timezone.now() - since).total_seconds() > catalog_config().import_stall_seconds

    @property
    def percent(self) -> int:
        if self.status == self.Status.DONE:
            return 100
        return min(99, round(100 * self.rows_done / self.rows_total)) if self.rows_total else 0
