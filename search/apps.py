from __future__ import annotations

from django.apps import AppConfig
from django.conf import settings
from django.core import checks


class SearchConfig(AppConfig):
    name = "search"
    verbose_name = "Search"

    def ready(self) -> None:
        # Subscribes to catalog changes; importing it loads no model and opens no client.
        from . import receivers  # noqa: F401


@checks.register()
def search_settings_check(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Bad ranking settings fail at start-up with the fix, not at the first search."""
    from .retrieval.fusion import weights_parse
    from .selectors import STRATEGIES

    errors = []
    if settings.SEARCH_STRATEGY not in STRATEGIES:
        errors.append(
            checks.Error(
                f"SEARCH_STRATEGY={settings.SEARCH_STRATEGY!r} is not a strategy",
                hint=f"Use one of {', '.join(STRATEGIES)}.",
                id="search.E001",
            )
        )
    try:
        weights_parse(settings.SEARCH_FUSION_WEIGHTS)
    except ValueError as exc:
        errors.append(
            checks.Error(
                f"SEARCH_FUSION_WEIGHTS is not usable: {exc}",
                hint="Write e.g. text=1,image=0.8: modalities text and image, weights >= 0, at least one positive.",
                id="search.E002",
            )
        )
    from .retrieval.providers import VECTOR_ENGINES

    if settings.SEARCH_VECTOR_ENGINE not in VECTOR_ENGINES:
        errors.append(
            checks.Error(
                f"SEARCH_VECTOR_ENGINE={settings.SEARCH_VECTOR_ENGINE!r} is not an engine",
                hint=f"Use one of {', '.join(VECTOR_ENGINES)}.",
                id="search.E004",
            )
        )
    if settings.SEARCH_CANDIDATES < 1:
        errors.append(checks.Error("SEARCH_CANDIDATES must be at least 1", id="search.E003"))
    from .web.throttling import rate_limits

    try:
        rate_limits(settings.SEARCH_RATE_LIMITS)
    except ValueError as exc:
        errors.append(
            checks.Error(
                f"SEARCH_RATE_LIMITS is not usable: {exc}",
                hint="Write e.g. search=300/min,photo=30/min (empty: no limits).",
                id="search.E005",
            )
        )
    return errors
