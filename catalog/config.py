"""The catalog's configuration as typed values, read instead of `settings.CATALOG_*`: one frozen
object per process from the parsed settings (shop_search/env.py), made again when a setting
changes (Django's setting_changed: tests, override_settings)."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver


@dataclass(frozen=True)
class CatalogConfig:
    max_image_bytes: int  # CATALOG_MAX_IMAGE_BYTES: refused before Pillow opens it
    max_image_pixels: int  # CATALOG_MAX_IMAGE_PIXELS: refused before it is decoded whole
    decode_pixels: int  # CATALOG_DECODE_PIXELS: pixels a process decodes at once, all images together
    image_fetch_seconds: float  # CATALOG_IMAGE_FETCH_SECONDS: one download of an import's image URL
    import_fetch_budget_seconds: float  # CATALOG_IMPORT_FETCH_BUDGET_SECONDS: one import's downloads
    import_stall_seconds: float  # CATALOG_IMPORT_STALL_SECONDS: an admin import silent this long stopped
    image_url_allow_private: bool  # CATALOG_IMAGE_URL_ALLOW_PRIVATE
    locale: str  # CATALOG_LOCALE: how prices read

    @classmethod
    def from_settings(cls) -> CatalogConfig:
        return cls(
            **{field.name: getattr(settings, f"CATALOG_{field.name.upper()}") for field in dataclasses.fields(cls)}
        )


@functools.lru_cache(maxsize=1)
def catalog_config() -> CatalogConfig:
    """This process's configuration (made once; again after a setting changes)."""
    return CatalogConfig.from_settings()


@receiver(setting_changed, dispatch_uid="catalog.config_forget")
def _config_forget(setting: str, **kwargs) -> None:
    if setting.startswith("CATALOG_"):
        catalog_config.cache_clear()


__all__ = ["CatalogConfig", "catalog_config"]
