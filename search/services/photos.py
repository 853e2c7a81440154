"""Shoppers' photos, kept while their search is in use: a photo search is a URL (`?photo=<key>`)
like any other search, so filters, sorting, pages and "Back to search" keep it."""

from __future__ import annotations

import hashlib
import hmac
import io
import time
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from PIL import Image

from catalog.images import image_load
from search.retrieval.config import search_config

from ..models import SearchPhoto

# How often a process deletes expired photos when it stores one (seconds).
PRUNE_EVERY = 3600
_last_prune = -1e9


def photo_save(*, data: bytes, name: str = "photo") -> str:
    """Check the uploaded bytes, keep a downsized JPEG of the photo and return its key.

    Raises:
        ValidationError: not an image this shop reads (the message names the formats), or too large.
    """
    image = photo_load(data=data, name=name)
    image.thumbnail((search_config().photo_pixels, search_config().photo_pixels), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    stored = buffer.getvalue()
    secret = (search_config().log_hash_key or settings.SECRET_KEY).encode()
    key = hmac.new(secret, stored, hashlib.sha256).hexdigest()[:32]
    SearchPhoto.objects.update_or_create(key=key, defaults={"image": stored, "created_at": timezone.now()})
    _prune_now_and_then()
    return key


def photo_load(*, data: bytes, name: str = "photo") -> Image.Image:
    """A shopper's photo, decoded no larger than a photo search needs (SEARCH_PHOTO_PIXELS; the
    model's input is smaller still) and refused from its header above SEARCH_PHOTO_MAX_PIXELS.

    Raises:
        ValidationError: not an image this shop reads, or too large (the message says which).
    """
    config = search_config()
    edge = config.photo_pixels
    return image_load(data, name=name, draft=(edge, edge), max_pixels=(config.photo_max_pixels, "")).image


def photo_bytes(*, key: str) -> bytes | None:
    """The stored JPEG of the photo with this key; None when there is none (expired or unknown)."""
    row = SearchPhoto.objects.filter(key=key, created_at__gte=_expiry()).values_list("image", flat=True).first()
    return bytes(row) if row is not None else None


class PhotoGone(LookupError):
    """The photo of a photo search is no longer kept (expired, or never was)."""


def photo_kept(*, key: str) -> bool:
    """Whether the photo with this key is still kept (without reading it)."""
    return SearchPhoto.objects.filter(key=key, created_at__gte=_expiry()).exists()


def photo_image(*, key: str) -> Image.Image:
    """The photo with this key, decoded.

    Raises:
        PhotoGone: it is no longer kept.
    """
    data = photo_bytes(key=key)
    if data is None:
        raise PhotoGone(key)
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def photos_prune(*, older_than_days: float | None = None) -> int:
    """Delete photos uploaded longer ago than that (default SEARCH_PHOTO_DAYS); returns how many."""
    cutoff = _expiry(older_than_days)
    deleted, _ = SearchPhoto.objects.filter(created_at__lt=cutoff).delete()
    return deleted


def _expiry(days: float | None = None) -> timezone.datetime:
    return timezone.now() - timedelta(days=search_config().photo_days if days is None else days)


def _prune_now_and_then() -> None:
    global _last_prune
    now = time.monotonic()
    if now - _last_prune >= PRUNE_EVERY:
        _last_prune = now
        photos_prune()


__all__ = ["PhotoGone", "photo_bytes", "photo_image", "photo_kept", "photo_load", "photo_save", "photos_prune"]
