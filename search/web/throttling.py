"""Rate limits per client address on what anyone may ask without signing in: searches (the
storefront and the API), photo searches (they run the image tower), suggestions and clicks.
SEARCH_RATE_LIMITS sets them ("search=300/min,photo=30/min,..."; a scope left out is not
limited); over a limit is a 429 with Retry-After. Counted in Django's cache: per process in the
embedded default, shared through CACHE_URL (Redis) on the real stack.

Each count is one atomic increment (Redis INCR; the per-process cache takes a lock), so a limit
holds however many threads and processes ask at once: DRF's own throttle reads a history and
writes it back, and 32 threads got 372-400 requests through a limit of 100. The window slides:
the last window's count weighs in as much of it as still lies within one period of now."""

from __future__ import annotations

import functools
import logging
import math
import time

from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework.throttling import BaseThrottle

from search.retrieval.config import search_config

SCOPES = ("search", "photo", "suggest", "clicks")
PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

logger = logging.getLogger(__name__)


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
        if scope not in SCOPES or not number.isdigit() or period[:1] not in PERIODS:
            raise ValueError(
                f"{part!r} is not scope=N/period with a scope of {', '.join(SCOPES)} "
                "and a period of sec, min, hour or day (e.g. search=300/min)"
            )
        limits[scope] = f"{int(number)}/{period}"
    return limits


class ScopeThrottle(BaseThrottle):
    """A DRF throttle for one scope, with its rate read from SEARCH_RATE_LIMITS at each request."""

    scope_name = ""

    def __init__(self, scope: str = ""):
        self.scope = scope or self.scope_name
        rate = rate_limits(search_config().rate_limits).get(self.scope)
        self.limit, self.period = _rate(rate) if rate else (None, 0)
        self._wait: float | None = None

    def allow_request(self, request, view) -> bool:
        if self.limit is None:
            return True
        self._wait = window_hit(f"throttle:{self.scope}:{self.get_ident(request)}", self.limit, self.period)
        return self._wait is None

    def wait(self) -> float | None:
        return self._wait


@functools.cache
def _cache_errors() -> tuple[type[BaseException], ...]:
    """What a cache that does not answer raises: OSError (the per-process cache never does),
    and redis' own errors on the real stack."""
    try:
        from redis.exceptions import RedisError
    except ImportError:  # pragma: no cover - redis comes with celery[redis]
        return (OSError,)
    return (OSError, RedisError)


def _rate(rate: str) -> tuple[int, int]:
    number, _, period = rate.partition("/")
    return int(number), PERIODS[period[0]]


def window_hit(key: str, limit: int, period: int, *, now: float | None = None) -> float | None:
    """Count one request against `key`; None if it is within `limit` per `period` seconds,
    else the seconds until one more would be. A refused request is taken back off the count.
    Where the cache cannot be reached the request is let through, and that is logged."""
    now = time.time() if now is None else now
    window = int(now // period)
    into = (now - window * period) / period
    current = f"{key}:{window}"
    try:
        cache.add(current, 0, timeout=2 * period + 1)
        try:
            count = cache.incr(current)
        except ValueError:  # expired between the two calls
            cache.add(current, 1, timeout=2 * period + 1)
            count = 1
        before = cache.get(f"{key}:{window - 1}", 0)
        if count + before * (1 - into) <= limit:
            return None
        cache.decr(current)
    except _cache_errors() as exc:
        logger.warning("rate limit not counted: the cache does not answer (%s)", exc)
        return None
    if count > limit or before == 0:
        return (1 - into) * period
    # the share of the last window that must slide out before one more fits
    return max(0.0, (1 - (limit - count) / before - into) * period)


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
