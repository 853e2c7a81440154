"""Bounds on what a request may make this server read: a body over REQUEST_MAX_BYTES (staff, who
import catalogs with their images in the admin: STAFF_REQUEST_MAX_BYTES) is refused with 413
before any of it is read (its Content-Length says so), and an upload streamed without a length
is cut off at the same size by the upload handler. JSON nested deeper than Python can
parse is a 400, not a RecursionError."""

from __future__ import annotations

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.defaultfilters import filesizeformat
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


def max_bytes(request: HttpRequest | None) -> int:
    """The largest body this request may send: more for signed-in staff (catalog imports)."""
    user = getattr(request, "user", None)
    if user is not None and getattr(user, "is_staff", False):
        return max(settings.STAFF_REQUEST_MAX_BYTES, settings.REQUEST_MAX_BYTES)
    return settings.REQUEST_MAX_BYTES


def too_large(request: HttpRequest) -> HttpResponse:
    message = (
        f"The request is larger than this shop accepts ({filesizeformat(max_bytes(request))}). "
        f"Send a smaller file: a photo or image may be up to {filesizeformat(settings.CATALOG_MAX_IMAGE_BYTES)}."
    )
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": message}, status=413)
    return HttpResponse(message, status=413, content_type="text/plain; charset=utf-8")


class RequestSizeLimitMiddleware:
    """413 for a body whose declared length is over REQUEST_MAX_BYTES, before it is read."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return HttpResponse("Content-Length is not a number.", status=400, content_type="text/plain")
        if length > settings.REQUEST_MAX_BYTES and length > max_bytes(request):
            return too_large(request)
        return self.get_response(request)


class BoundedUploadHandler(FileUploadHandler):
    """Stops reading an upload (one streamed without a Content-Length) at REQUEST_MAX_BYTES; the
    view then finds no file and says what to send."""

    def __init__(self, request=None):
        super().__init__(request)
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > max_bytes(self.request):
            raise StopUpload(connection_reset=True)
        return raw_data

    def file_complete(self, file_size: int):
        return None  # the next handlers keep the file


class SafeJSONParser(JSONParser):
    """DRF's JSON parser, with JSON nested deeper than Python parses answered as a 400."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply.") from None


__all__ = ["BoundedUploadHandler", "RequestSizeLimitMiddleware", "SafeJSONParser", "max_bytes", "too_large"]
