"""JSON search API: thin, parse input, call one selector, serialise."""
from __future__ import annotations

from django.core.exceptions import ValidationError
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.images import image_load

from .encoders import ModelUnavailableError
from .selectors import product_search
from .serializers import (
    ImageSearchParamsSerializer,
    SearchParamsSerializer,
    SearchResponseSerializer,
    search_result_data,
)


def _unavailable(exc: Exception) -> Response:
    return Response({"detail": "Search is unavailable: the embedding model could not be loaded."},
                    status=status.HTTP_503_SERVICE_UNAVAILABLE)


class SearchApi(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(parameters=[SearchParamsSerializer], responses={200: SearchResponseSerializer},
                   summary="Search products by words (empty q browses the catalog)")
    def get(self, request: Request) -> Response:
        params = SearchParamsSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        try:
            result = product_search(**params.search_kwargs())
        except ModelUnavailableError as exc:
            return _unavailable(exc)
        return Response(search_result_data(result, build_url=request.build_absolute_uri))


class ImageSearchApi(APIView):
    authentication_classes: list = []
    permission_classes: list = []
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(request={"multipart/form-data": ImageSearchParamsSerializer},
                   responses={200: SearchResponseSerializer},
                   summary="Search products by a photo (multipart field `image`)")
    def post(self, request: Request) -> Response:
        data = {**request.query_params.dict(), **request.data.dict()}
        for name in ("category", "brand"):
            data[name] = request.data.getlist(name) or request.query_params.getlist(name)
        params = ImageSearchParamsSerializer(data=data)
        params.is_valid(raise_exception=True)
        upload = params.validated_data["image"]
        upload.seek(0)
        try:
            checked = image_load(upload.read(), name=upload.name or "image")
        except ValidationError as exc:
            return Response({"image": exc.messages}, status=status.HTTP_400_BAD_REQUEST)
        kwargs = params.search_kwargs()
        kwargs.pop("query")
        try:
            result = product_search(image=checked.image, **kwargs)
        except ModelUnavailableError as exc:
            return _unavailable(exc)
        return Response(search_result_data(result, build_url=request.build_absolute_uri))


__all__ = ["SearchApi", "ImageSearchApi", "OpenApiParameter"]
