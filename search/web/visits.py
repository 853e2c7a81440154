"""A shopper's visit: a random id in a cookie of its own (`visit`), set on the first search, so
that clicks count only for the visit's own searches. It replaces Django's session for shoppers:
that wrote a database row for every cookie-less search (a crawler's every request), which nothing
pruned and which failed the search while another process held the database. Only a keyed hash of
the id is stored (services.session_pseudonym)."""

from __future__ import annotations

import re
import secrets

from django.conf import settings
from django.http import HttpRequest, HttpResponse

COOKIE = "visit"
_VALID = re.compile(r"[A-Za-z0-9_-]{22,64}")


class Visit:
    """The request's visit id: the cookie's, else a new one (sent back with the response)."""

    def __init__(self, cookie: str | None) -> None:
        self._id = cookie if cookie and _VALID.fullmatch(cookie) else ""
        self.new = False

    @property
    def id(self) -> str:
        if not self._id:
            self._id, self.new = secrets.token_urlsafe(16), True
        return self._id

    @property
    def known(self) -> str | None:
        """The id if the shopper already has one (never makes one)."""
        return self._id or None


class VisitMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.visit = Visit(request.COOKIES.get(COOKIE))
        response = self.get_response(request)
        if request.visit.new:
            response.set_cookie(
                COOKIE, request.visit.id, httponly=True, samesite="Lax", secure=settings.SESSION_COOKIE_SECURE
            )
        return response


def visit_id(request: HttpRequest) -> str:
    """The visit's id, made on first use."""
    visit = getattr(request, "visit", None)
    return visit.id if visit is not None else ""


def known_visit(request: HttpRequest) -> str | None:
    visit = getattr(request, "visit", None)
    return visit.known if visit is not None else None


__all__ = ["COOKIE", "Visit", "VisitMiddleware", "known_visit", "visit_id"]
