"""A write the database or disk cannot take now (catalog.outages) answers 503 with the reason and
Retry-After instead of a 500: an admin save, a login, a photo search's upload. Nothing half-done
is kept (the view's transaction is rolled back), and the page says to try again."""

from __future__ import annotations

import contextlib
import logging
import sqlite3

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.utils.http import url_has_allowed_host_and_scheme

from catalog.outages import RETRY_AFTER, outage_reason

logger = logging.getLogger(__name__)


class OutageMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        reason = outage_reason(exception)
        if reason is None:
            return None
        logger.warning("%s %s answered 503: %s (%s)", request.method, request.path, reason, exception)
        staff = request.path.startswith(("/api/", "/admin/"))
        if staff:  # merchandisers, data teams and API clients are told what holds it up
            message = f"This could not be done right now: {reason}. Nothing was changed."
        else:
            message = "The shop cannot take this right now. Nothing was changed."
        if request.path.startswith("/api/"):
            response: HttpResponse = JsonResponse(
                {"detail": f"{message} Please try again in {RETRY_AFTER} seconds."}, status=503
            )
        else:
            admin = request.path.startswith("/admin/")
            context = {
                "message": message,
                "retry_after": RETRY_AFTER,
                "back": _same_site(request) or ("/admin/" if admin else "/"),
                "back_label": "Back to the admin" if admin else "Back to the shop",
            }
            # rendered without a request context: its processors may need the database
            response = HttpResponse(render_to_string("outage.html", context), status=503)
        response["Retry-After"] = str(RETRY_AFTER)
        return response


def _same_site(request: HttpRequest) -> str:
    """The page the request came from, if it is one of this site's."""
    referer = request.headers.get("Referer", "")
    return referer if referer and url_has_allowed_host_and_scheme(referer, {request.get_host()}) else ""


_kept: list[sqlite3.Connection] = []


def sqlite_files_keep() -> None:
    """Hold one connection to the SQLite database open for the life of the server process.

    SQLite deletes its WAL and shared-memory files when the last connection closes, and a
    connection that opens with them gone must create them: on a full disk every new
    connection then fails ("disk I/O error"), reads included, and each request opens one. While
    this one stays open they stay, so shoppers read on a full disk and only writes wait."""
    database = settings.DATABASES["default"]
    if database["ENGINE"] != "django.db.backends.sqlite3" or _kept:
        return
    with contextlib.suppress(sqlite3.Error):
        keeper = sqlite3.connect(database["NAME"], check_same_thread=False)
        keeper.execute("SELECT count(*) FROM sqlite_master").fetchone()
        _kept.append(keeper)


__all__ = ["OutageMiddleware", "sqlite_files_keep"]
