"""/healthz: what a container's health probe asks (docker-compose.yml). Answered first, before
the host check and the HTTPS redirect, which a probe from inside the container would fail."""

from __future__ import annotations

import logging

from django.db import DatabaseError, connection
from django.http import HttpResponse

logger = logging.getLogger(__name__)


class HealthMiddleware:
    """200 "ok" when the process answers and its database does; 503 with the reason if not.
    The vector store and the model are not asked: search already says when they are missing,
    and a restart would not bring them back."""

    path = "/healthz"

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path != self.path:
            return self.get_response(request)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except DatabaseError as exc:
            logger.warning("Health probe: the database does not answer (%s)", exc)
            return HttpResponse(f"database unavailable: {exc}", status=503, content_type="text/plain")
        return HttpResponse("ok", content_type="text/plain")
