"""JSON search API: thin, parse input, call one selector, serialise."""

from __future__ import annotations

import logging
import tempfile

from django.core.exceptions import ValidationError
from django.http import FileResponse, QueryDict, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.authentication import BasicAuthentication, SessionAuthentication
from rest_framework.fields import ListField
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from search.retrieval.encoders import ModelUnavailableError
from search.retrieval.vector_store import IndexStoreFullError, IndexTransientError, IndexUnavailableError
from search.selectors.experiments import experiment_search
from search.selectors.suggesting import predictive_search
from search.services import (
    ClickError,
    click_log,
    clicks_export,
    export_columns,
    iter_encoded,
    photo_load,
    search_event_log,
    write_export,
)

from .serializers import (
    CLICK_REQUEST,
    ClickResponseSerializer,
    ClickSerializer,
    ExportParamsSerializer,
    ImageSearchParamsSerializer,
    SearchParamsSerializer,
    SearchResponseSerializer,
    SuggestParamsSerializer,
    SuggestResponseSerializer,
    error_responses,
    predictive_data,
    search_result_data,
)
from .throttling import ClickThrottle, PhotoThrottle, SearchThrottle, SuggestThrottle
from .visits import known_visit

logger = logging.getLogger(__name__)


# How long a client waits before trying again after the index did not answer
TRANSIENT_RETRY_AFTER = 5


def _unavailable(exc: Exception) -> Response:
    # The reason (paths, the command that rebuilds the index) is for the operator's log.
    logger.error("Search unavailable: %s", exc)
    if isinstance(exc, IndexTransientError):
        response = Response(
            {
                "detail": "Search is unavailable for a moment: the search index did not answer. "
                f"Try again in {TRANSIENT_RETRY_AFTER} seconds."
            },
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
        response["Retry-After"] = str(TRANSIENT_RETRY_AFTER)
        return response
    what = (
        "the server's disk has no room for the search index"
        if isinstance(exc, IndexStoreFullError)
        else "the search index cannot be read"
        if isinstance(exc, IndexUnavailableError)
        else "the embedding model could not be loaded"
    )
    return Response({"detail": f"Search is unavailable: {what}."}, status=status.HTTP_503_SERVICE_UNAVAILABLE)


def _strict(query: QueryDict, serializer: type) -> dict:
    """Query parameters as the API's schema reads them: an empty value is a value (checked like
    any other), not "left out" as an HTML form would have it; list parameters keep every value."""
    lists = {name for name, field in serializer().fields.items() if isinstance(field, ListField)}
    return {name: query.getlist(name) if name in lists else query.getlist(name)[-1] for name in query}


def _client_session(request: Request) -> str | None:
    """API clients may name their end user's session in X-Session-Id; only its hash is kept."""
    return request.headers.get("X-Session-Id") or None


def _click_session(request: Request) -> str | None:
    """The session a click comes from: the API client's X-Session-Id, else the storefront's
    visit cookie (the beacon sends it)."""
    return _client_session(request) or known_visit(request._request)


def _search_response(request: Request, *, channel: str, **search_kwargs) -> Response:
    """Search, record the search, answer; a model that cannot load is a 503, not a crash."""
    try:
        result = experiment_search(session_key=_client_session(request), **search_kwargs)
    except (ModelUnavailableError, IndexUnavailableError) as exc:
        return _unavailable(exc)
    search_event_log(result=result, channel=channel, session_key=_client_session(request), deferred=True)
    return Response(search_result_data(result, build_url=request.build_absolute_uri))


class SearchApi(APIView):
    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes = [SearchThrottle]

    @extend_schema(
        parameters=[SearchParamsSerializer],
        responses={200: SearchResponseSerializer, **error_responses(400, 429, 503)},
        summary="Search products by words (empty q browses the catalog)",
    )
    def get(self, request: Request) -> Response:
        params = SearchParamsSerializer(
            data=_strict(request.query_params, SearchParamsSerializer), context={"query": request.query_params}
        )
        params.is_valid(raise_exception=True)
        return _search_response(request, channel="api", **params.search_kwargs())


class SuggestApi(APIView):
    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes = [SuggestThrottle]

    @extend_schema(
        parameters=[SuggestParamsSerializer],
        responses={200: SuggestResponseSerializer, **error_responses(400, 429)},
        summary="Completions of what a shopper has typed (titles, brands, categories, clicked queries)",
    )
    def get(self, request: Request) -> Response:
        params = SuggestParamsSerializer(data=_strict(request.query_params, SuggestParamsSerializer))
        params.is_valid(raise_exception=True)
        query, limit = params.validated_data["q"], params.validated_data["limit"]
        found = predictive_search(query=query, limit=limit)
        return Response(predictive_data(found, query=query, build_url=request.build_absolute_uri))


class ImageSearchApi(APIView):
    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes = [PhotoThrottle]
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        request={"multipart/form-data": ImageSearchParamsSerializer},
        responses={200: SearchResponseSerializer, **error_responses(400, 413, 415, 429, 503)},
        summary="Search products by a photo (multipart field `image`)",
    )
    def post(self, request: Request) -> Response:
        # the form's fields, else the query string's (a request with no body has no form at all)
        data = request.query_params.copy()
        form = request.data if hasattr(request.data, "lists") else {}
        for name, values in form.lists() if form else ():
            data.setlist(name, values)
        params = ImageSearchParamsSerializer(data=data)
        params.is_valid(raise_exception=True)
        upload = params.validated_data["image"]
        upload.seek(0)
        try:
            image = photo_load(data=upload.read(), name=upload.name or "image")
        except ValidationError as exc:
            return Response({"image": exc.messages}, status=status.HTTP_400_BAD_REQUEST)
        kwargs = params.search_kwargs()
        kwargs.pop("query")
        kwargs.pop("prefix")  # always False here: the photo API takes no words
        kwargs.pop("understood")
        return _search_response(request, channel="photo_api", image=image, **kwargs)


class ClickApi(APIView):
    """Records a click on a search result; the storefront sends it with navigator.sendBeacon."""

    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes = [ClickThrottle]

    @extend_schema(
        request=CLICK_REQUEST,
        responses={
            201: ClickResponseSerializer,
            200: ClickResponseSerializer,
            202: ClickResponseSerializer,
            **error_responses(400, 403, 404, 409, 413, 415, 429, 503),
        },
        summary="Record a click on a result (a repeated click is kept once)",
    )
    def post(self, request: Request) -> Response:
        data = ClickSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            outcome = click_log(**data.validated_data, session_key=_click_session(request))
        except ClickError as exc:
            return Response({exc.field: [str(exc)]}, status=exc.status)
        if outcome.queued:  # the database is busy or full: written as soon as it is free
            return Response(
                {"recorded": True, "position": outcome.position, "queued": True}, status=status.HTTP_202_ACCEPTED
            )
        return Response(
            {"recorded": outcome.created, "position": outcome.position},
            status=status.HTTP_201_CREATED if outcome.created else status.HTTP_200_OK,
        )


class CanExportClicks(BasePermission):
    """The data-team permission (search.export_clicks); everyone else gets 403."""

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.has_perm("search.export_clicks"))


CONTENT_TYPES = {
    "jsonl": "application/x-ndjson",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}


class ClickExportApi(APIView):
    # Session first: an anonymous request gets 403 (Basic would answer 401), as the data
    # team's scripts may still send Basic credentials.
    authentication_classes = [SessionAuthentication, BasicAuthentication]
    permission_classes = [CanExportClicks]

    @extend_schema(
        parameters=[ExportParamsSerializer],
        responses={
            (200, "application/x-ndjson"): OpenApiTypes.BINARY,
            (200, "text/csv"): OpenApiTypes.BINARY,
            (200, "application/vnd.apache.parquet"): OpenApiTypes.BINARY,
            **{(code, "application/json"): r for code, r in error_responses(400, 403).items()},
        },
        summary="Stream the click log: events or training triplets as JSONL, CSV or Parquet",
    )
    def get(self, request: Request):
        params = ExportParamsSerializer(data=_strict(request.query_params, ExportParamsSerializer))
        params.is_valid(raise_exception=True)
        opts = params.validated_data
        rows = clicks_export(kind=opts["kind"], since=opts["since"], until=opts["until"], text_only=opts["text_only"])
        filename = f"clicks-{opts['kind']}.{opts['format']}"
        if opts["format"] == "parquet":
            # Parquet is written whole; a spooled file keeps memory bounded (disk past 16 MB).
            spool = tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024)
            write_export(rows, fmt="parquet", kind=opts["kind"], text_only=opts["text_only"], out=spool)
            spool.seek(0)
            return FileResponse(spool, as_attachment=True, filename=filename, content_type=CONTENT_TYPES["parquet"])
        response = StreamingHttpResponse(
            iter_encoded(rows, fmt=opts["format"], columns=export_columns(opts["kind"], opts["text_only"])),
            content_type=CONTENT_TYPES[opts["format"]],
        )
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


__all__ = ["ClickApi", "ClickExportApi", "SearchApi", "ImageSearchApi"]
