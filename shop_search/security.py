"""Security headers Django 5.2 does not send itself: a Content-Security-Policy."""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse


class ContentSecurityPolicyMiddleware:
    """Adds CONTENT_SECURITY_POLICY to every response that has none (empty setting: none)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if settings.CONTENT_SECURITY_POLICY and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = content_security_policy(
                settings.CONTENT_SECURITY_POLICY, getattr(settings, "MEDIA_ORIGIN", "")
            )
        return response


def content_security_policy(policy: str, media_origin: str) -> str:
    """The policy, with product images also allowed from the object store that serves them."""
    if not media_origin or "img-src" not in policy:
        return policy
    return policy.replace("img-src", f"img-src {media_origin}", 1)


class OneLine(logging.Filter):
    """A log record told in one line, as a warning: a request for another host (scanners ask by
    IP address all day) is refused with a 400; its traceback says nothing an operator needs."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True
