"""Rate limits per client address on what anyone may ask without signing in: searches (the
storefront and the API), photo searches (they run the image tower), suggestions and clicks.
SEARCH_RATE_LIMITS sets them ("search=300/min,photo=30/min,..."; a scope left out is not
limited); over a limit is a 429 with Retry-After. Counted in Django's cache: per process in the
embedded default, shared through CACHE_URL (Redis) on the real stack."""

from __future__ import annotations

import functools
import math

from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework.throttling import SimpleRateThrottle

from search.retrieval.config import search_config

SCOPES = ("search", "photo", "suggest", "clicks")


@functools.lru_cache(maxsize=8)
def rate_limits(value: str) -> dict[str, str]:
    """SEARCH_RATE_LIMITS as {scope: "N/period"}.

    Raises:
        ValueError: a part that is not scope=N/period with a known scope and period.
    """
    limits: dict[str, str] = {}
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        scope, _, rate = part.partition("=")
        scope, rate = scope.strip(), rate.strip()
        number, _, period = rate.partition("/")
        if scope not in SCOPES or not number.isdigit() or period[:1] not in ("s", "m", "h", "d"):
            raise ValueError(
                f"{part!r} is not scope=N/period with a scope of {', '.join(SCOPES)} "
                "and a period of sec, min, hour or day (e.g. search=300/min)"
            )
        limits[scope] = f"{int(number)}/{period}"
    return limits


class ScopeThrottle(SimpleRateThrottle):
    """A DRF throttle for one scope, with its rate read from SEARCH_RATE_LIMITS at each request."""

    scope_name = ""

    def __init__(self, scope: str = ""):
        self.scope = scope or self.scope_name
        self.rate = rate_limits(search_config().rate_limits).get(self.scope)
        self.num_requests, self.duration = self.parse_rate(self.rate)

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


def throttle_wait(request: HttpRequest, scope: str) -> int | None:
    """Seconds until this client may ask again, if it is over the scope's limit; else None."""
    throttle = ScopeThrottle(scope)
    if throttle.allow_request(request, None):
        return None
    return max(1, math.ceil(throttle.wait() or 1))


def too_many(request: HttpRequest, wait: int) -> HttpResponse:
    """429 with Retry-After and a message that says when to try again."""
    message = f"Too many requests from your address. Please try again in {wait} second{'s' if wait != 1 else ''}."
    if request.path.startswith("/api/"):
        response: HttpResponse = JsonResponse({"detail": message}, status=429)
    else:
        response = HttpResponse(message, status=429, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(wait)
    return response


class SearchThrottle(ScopeThrottle):
    scope_name = "search"


class PhotoThrottle(ScopeThrottle):
    scope_name = "photo"


class SuggestThrottle(ScopeThrottle):
    scope_name = "suggest"


class ClickThrottle(ScopeThrottle):
    scope_name = "clicks"


__all__ = [
    "SCOPES",
    "ClickThrottle",
    "PhotoThrottle",
    "ScopeThrottle",
    "SearchThrottle",
    "SuggestThrottle",
    "rate_limits",
    "throttle_wait",
    "too_many",
]
