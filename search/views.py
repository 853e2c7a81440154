"""Storefront views: thin, one selector call each."""
from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from catalog.models import Product

from .encoders import ModelUnavailableError
from .selectors import product_search

logger = logging.getLogger(__name__)


def _int(value: str | None, default: int) -> int:
    try:
        return max(1, int(value or default))
    except ValueError:
        return default


def search_page(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "")
    page_number = _int(request.GET.get("page"), 1)
    error = ""
    page = None
    try:
        page = product_search(query=query, page=page_number)
    except ModelUnavailableError as exc:
        logger.error("Search unavailable: %s", exc)
        error = "Search is unavailable: the embedding model could not be loaded. See the server log."
    context = {"query": query, "page": page, "error": error}
    template = "search/search.html#results" if request.htmx else "search/search.html"
    return render(request, template, context)


def product_detail(request: HttpRequest, pk: int) -> HttpResponse:
    product = get_object_or_404(Product.objects.searchable(), pk=pk)
    return render(request, "search/product.html", {"product": product})
