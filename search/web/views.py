"""Storefront views: thin, one selector call each. Every page works without JavaScript;
htmx requests get only the part of the page that changes."""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from django.core.exceptions import ValidationError
from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django_htmx.http import push_url, replace_url

from catalog.models import Product
from catalog.money import currency_name
from catalog.outages import outage_reason
from search.retrieval.config import search_config
from search.retrieval.encoders import ModelUnavailableError
from search.retrieval.facets import facet_key
from search.retrieval.keywords import words
from search.retrieval.vector_store import IndexUnavailableError
from search.selectors import SORTS, product_search, product_similar
from search.selectors.experiments import experiment_search
from search.selectors.lexicon import lexicon
from search.selectors.searching import facet_attributes, filter_chips, filters_unread
from search.selectors.suggesting import popular_phrases, query_suggest
from search.services import (
    ClickError,
    PhotoGone,
    click_log,
    photo_bytes,
    photo_image,
    photo_kept,
    photo_save,
    search_event_log,
)
from search.services.events import TYPING

from .serializers import StorefrontParamsSerializer
from .throttling import throttle_wait, too_many
from .visits import known_visit, visit_id

logger = logging.getLogger(__name__)
UNAVAILABLE = "Search is unavailable right now: the embedding model could not be loaded."
# The vector index cannot be read; the catalog itself is in the database and still browses.
INDEX_UNAVAILABLE = "Search is unavailable right now, so here is the whole catalog: filters and sorting still work."
PHOTO_INDEX_UNAVAILABLE = "Search by photo is unavailable right now. Please try again later."
PHOTO_GONE = (
    "That photo is no longer kept (photos are deleted {days:g} days after their search): "
    "choose it again with “Search by photo”."
)
SORT_LABELS = {
    "relevance": "Best match",
    "price_asc": "Price: low to high",
    "price_desc": "Price: high to low",
    "newest": "Newest",
}


def _params(query_dict) -> tuple[StorefrontParamsSerializer, dict[str, list[str]]]:
    """Validate; a bad parameter is reported and dropped, the rest of the page still works."""
    params = StorefrontParamsSerializer(data=query_dict)
    if params.is_valid():
        return params, {}
    errors = {
        name: [str(m) for m in (msgs if isinstance(msgs, list) else [msgs])] for name, msgs in params.errors.items()
    }
    data = query_dict.copy()
    for name in errors:
        data.pop(name, None)
        if name == "price_max":
            data.pop("price_min", None)
    params = StorefrontParamsSerializer(data=data)
    params.is_valid(raise_exception=True)
    return params, errors


def canonical_query(data: dict, **overrides) -> QueryDict:
    """The search state as the shortest query string: defaults and empty fields left out,
    so a shared or bookmarked URL reads like what the shopper chose."""
    data = {**data, **overrides}
    query = QueryDict(mutable=True)
    if data.get("q"):
        query["q"] = data["q"]
    elif data.get("photo"):  # words replace a photo
        query["photo"] = data["photo"]
    for name in ("category", "brand"):
        if data.get(name):
            query.setlist(name, list(data[name]))
    for param, values in _attribute_params(data):
        query.setlist(param, list(values))
    for name in ("price_min", "price_max"):
        if data.get(name) is not None:
            query[name] = str(data[name]).rstrip("0").rstrip(".") if "." in str(data[name]) else str(data[name])
    if data.get("q") and data.get("understood") is not None:
        query["understood"] = data["understood"]
    if data.get("sort") and data["sort"] != "relevance":
        query["sort"] = data["sort"]
    if data.get("strategy"):
        query["strategy"] = data["strategy"]
    if data.get("page_size") and data["page_size"] != 20:
        query["page_size"] = str(data["page_size"])
    if data.get("page") and data["page"] > 1:
        query["page"] = str(data["page"])
    return query


def _attribute_params(data: dict) -> list[tuple[str, tuple[str, ...]]]:
    """The attribute filters of a search state as URL parameters and their values."""
    chosen = dict(data.get("attributes") or ())
    return [(a.param, chosen[a.field]) for a in facet_attributes() if chosen.get(a.field)]


def _facet_groups(result) -> list[tuple[str, str, list]]:
    """The facets the page shows, in order: (legend, URL parameter, values)."""
    if result is None:
        return []
    groups = [
        ("Category", "category", result.facets.get("category", [])),
        ("Brand", "brand", result.facets.get("brand", [])),
    ]
    groups += [(a.label, a.param, result.facets[a.field]) for a in facet_attributes() if a.field in result.facets]
    return groups


def _typing(request: HttpRequest) -> str | None:
    """ "start" or "continue" when the shopper is typing (the storefront's X-Search-Typing)."""
    value = request.headers.get("X-Search-Typing")
    return value if value in TYPING else None


def _render(request: HttpRequest, context: dict, *, url: str | None = None) -> HttpResponse:
    # A history-restore request asks for the whole page even though htmx sends it.
    partial = request.htmx and not request.htmx.history_restore_request
    template = "search/search.html#results" if partial else "search/search.html"
    response = render(request, template, {**context, "settle_ms": int(search_config().settle_seconds * 1000)})
    patch_vary_headers(response, ("HX-Request",))
    if partial and url is not None:
        # one history entry per search the shopper settles on: the next keystroke replaces it
        (replace_url if _typing(request) == "continue" else push_url)(response, url)
    return response


def search_page(request: HttpRequest) -> HttpResponse:
    if (wait := throttle_wait(request, "search")) is not None:
        return too_many(request, wait)
    params, errors = _params(request.GET)
    state = dict(params.validated_data)
    if state["q"]:
        state["photo"] = ""  # words typed over a photo search replace it
    result, error, notice = None, "", ""
    kwargs = params.search_kwargs()
    # a shopper typing: the word under the cursor is unfinished until a space follows it
    typed = request.GET.get("q", "")
    kwargs["prefix"] = kwargs["prefix"] or bool(_typing(request) and typed and not typed[-1].isspace())
    try:
        if state.get("photo"):
            kwargs.pop("query")
            kwargs.pop("prefix")
            kwargs.pop("understood")
            key = state["photo"]
            if not photo_kept(key=key):
                raise PhotoGone(key)
            # read and decoded only if this photo's embedding is not cached (its facets and pages)
            result = product_search(image=lambda: photo_image(key=key), image_key=key, **kwargs)
        else:
            result = experiment_search(session_key=visit_id(request), **kwargs)
    except PhotoGone:
        error = PHOTO_GONE.format(days=search_config().photo_days)
    except ModelUnavailableError as exc:
        logger.error("Search unavailable: %s", exc)
        error = UNAVAILABLE
    except IndexUnavailableError as exc:
        if state.get("photo"):
            logger.error("Search by photo unavailable: %s", exc)
            error = PHOTO_INDEX_UNAVAILABLE
        else:
            # The shopper still gets the catalog, browsed from the database with their filters;
            # the operator gets the reason and the command that rebuilds the index.
            logger.error("Search unavailable, browsing the catalog instead: %s", exc)
            notice = INDEX_UNAVAILABLE
            result = product_search(**{**kwargs, "query": ""})
    if result is not None and not notice:
        channel = "photo_page" if result.mode == "image" else "htmx" if request.htmx else "page"
        search_event_log(
            result=result, channel=channel, session_key=visit_id(request), deferred=True, typing=_typing(request)
        )
    state, asked = _read_state(state, result, typing=kwargs.get("prefix", False), given=kwargs.get("filters"))
    current = canonical_query(asked).urlencode()
    return _render(
        request,
        _context(state, result, error=error, notice=notice, errors=errors, asked=asked),
        url=f"{request.path}?{current}" if current else request.path,
    )


def _read_state(state: dict, result, *, typing: bool = False, given=None) -> tuple[dict, dict]:
    """The search state as searched (the filters its words named ticked, and the words that were
    read marked so, so that the page's controls do not read them again) and as its URL says it.
    `typing`: the last word was still being typed and was not read: the next search (Enter, a
    filter) reads the whole query ("mugs under $2" on its way to $20). The URL: words read
    afresh keep the filters they named to themselves (`?q=mugs+under+%2420`, not the price and
    the category again), with the filters the shopper gave beside the words they had read
    before (`given`); else the search as asked."""
    if result is None or result.mode == "image" or not state.get("q"):
        return state, state
    read = " ".join(state["q"].split()[:-1]) if typing else state["q"]
    searched = {**state, **_filter_state(result.filters), "understood": read if result.readable else None}
    if not result.understood or given is None:
        return searched, state
    own = filters_unread(given, state.get("understood"))
    return searched, {**state, **_filter_state(own), "understood": None}


def _filter_state(filters) -> dict:
    """Filters as the URL and the form give them: each value as the catalog spells it."""
    labels = lexicon().labels

    def spelt(name: str, values) -> list[str]:
        return [labels.get(name, {}).get(v, v) for v in values]

    return {
        "category": spelt("category", filters.categories),
        "brand": spelt("brand", filters.brands),
        "attributes": [(name, tuple(spelt(name, values))) for name, values in filters.attributes],
        "price_min": filters.price_min,
        "price_max": filters.price_max,
    }


def _chip_links(state: dict, result) -> list[tuple]:
    """Each filter in use as a chip, with the search without it (the query not read again)."""
    links = []
    for chip in filter_chips(result) if result is not None else ():
        if chip.param == "price":
            without = canonical_query(state, page=1, price_min=None, price_max=None)
        elif chip.param in ("category", "brand"):
            kept = [v for v in state.get(chip.param, ()) if facet_key(v) != chip.value]
            without = canonical_query(state, page=1, **{chip.param: kept})
        else:
            attributes = [
                (f, tuple(v for v in values if facet_key(v) != chip.value) if f == chip.field else values)
                for f, values in state.get("attributes") or ()
            ]
            without = canonical_query(state, page=1, attributes=attributes)
        links.append((chip, without.urlencode()))
    return links


def _context(
    state: dict, result, *, error: str = "", notice: str = "", errors: dict | None = None, asked: dict | None = None
) -> dict:
    """What the search page shows of a search state and its result."""
    photo = state.get("photo") or ""  # the callers clear it when words replace it
    return {
        "result": result,
        # the words a title's matches are marked by: the query's, and the query as understood
        "highlight_words": words(f"{result.query} {result.understood_as}") if result and result.mode == "text" else (),
        "error": error,
        "notice": notice,
        "param_errors": errors or {},
        "params": state,
        "photo": photo,
        **_zero_results(result),
        # browsing has no query to match: its default order is the shop's own
        "sorts": [(s, SORT_LABELS[s] if s != "relevance" or state.get("q") or photo else "Featured") for s in SORTS],
        "querystring": canonical_query(state, page=1).urlencode(),
        # where a product page's "Back to search" returns: this search, this page
        "back": canonical_query(asked or state).urlencode(),
        # the same words or photo without filters; the same filters without the photo
        "unfiltered": canonical_query(
            {
                "q": state.get("q"),
                "photo": photo,
                "strategy": state.get("strategy"),
                "understood": state.get("understood"),
            }
        ).urlencode(),
        "without_photo": canonical_query(state, photo="", page=1).urlencode(),
        "price_links": _price_links(state, result),
        "chip_links": _chip_links(state, result),
        "currency_name": currency_name(lexicon().currency) if result and result.foreign_price else "",
        "facet_groups": _facet_groups(result),
        "attribute_params": _attribute_params(state),
    }


def _zero_results(result) -> dict:
    """What a query that matches nothing offers instead: searches that find something, the
    largest categories, and the whole catalog."""
    if result is None or result.mode != "text" or result.count or result.filters.active() or result.page > 1:
        return {}
    suggestions = query_suggest(query=result.understood_as or result.query, limit=5)
    if not suggestions:
        suggestions = popular_phrases(kind="query", limit=5)
    return {"zero": True, "zero_suggestions": suggestions, "zero_categories": popular_phrases(kind="category", limit=6)}


def _price_links(state: dict, result) -> list:
    """Each price bucket links to the current search with that range (or without it, if chosen)."""
    if result is None:
        return []
    links = []
    for facet in result.facets.get("price", []):
        low, high = (None, None) if facet.selected else (facet.price_min, facet.price_max)
        links.append((facet, canonical_query(state, page=1, price_min=low, price_max=high).urlencode()))
    return links


def image_search_page(request: HttpRequest) -> HttpResponse:
    """Search by photo: the photo is kept (services.photo_save) and the shopper is sent to the
    search page for it, `?photo=<key>` with the filters they had, so that a photo search is a
    URL like any other: filters, sorting, pages, "Back to search" and the Back button keep it."""
    if request.method != "POST":
        return search_page(request)
    if (wait := throttle_wait(request, "photo")) is not None:
        return too_many(request, wait)
    params, errors = _params(request.POST)
    state = {**params.validated_data, "q": "", "page": 1, "understood": None}
    # the filters the replaced words named go with them (the page sends the words it read)
    state |= _filter_state(filters_unread(params.search_kwargs()["filters"], params.validated_data.get("understood")))
    upload = request.FILES.get("image")
    error = ""
    if upload is None:
        error = "Choose a photo to search with."
    else:
        try:
            state["photo"] = photo_save(data=upload.read(), name=upload.name or "photo")
        except ValidationError as exc:
            error = " ".join(exc.messages)
        except DatabaseError as exc:  # the photo cannot be kept for its URL now (catalog.outages)
            if outage_reason(exc) is None:
                raise
            logger.warning("A photo search could not keep its photo: %s", outage_reason(exc))
            error = "Photo search is busy for a moment: please try again in 30 seconds. Word searches work meanwhile."
    if error:
        state["photo"] = ""
        return _render(request, _context(state, None, error=error, errors=errors))
    # 303: the browser (and htmx's request) asks for the photo search's own URL with GET
    return _see_other(f"{reverse('search:search')}?{canonical_query(state).urlencode()}")


def _see_other(url: str) -> HttpResponse:
    response = HttpResponse(status=303)
    response["Location"] = url
    return response


def photo_file(request: HttpRequest, key: str) -> HttpResponse:
    """The kept photo of a photo search, shown beside its results."""
    data = photo_bytes(key=key)
    if data is None:
        raise Http404("No such photo")
    response = HttpResponse(data, content_type="image/jpeg")
    response["Cache-Control"] = "private, max-age=86400"
    return response


def product_detail(request: HttpRequest, pk: int) -> HttpResponse:
    product = get_object_or_404(Product.objects.searchable(), pk=pk)
    try:
        similar = product_similar(product=product)
    except (ModelUnavailableError, IndexUnavailableError) as exc:
        logger.error("No similar products: %s", exc)
        similar = []
    back = _back(request)
    context = {
        "product": product,
        "similar": similar,
        "back": back,
        "query": QueryDict(back).get("q", ""),
        "highlight_words": (),  # similar products are not matches of a query
        "photo_notice": PRODUCT_PHOTO_NOTICES.get(request.GET.get("photo", ""), ""),
    }
    return render(request, "search/product.html", context)


def product_photo_search(request: HttpRequest, pk: int) -> HttpResponse:
    """Search by a product's own picture ("Find products that look like this" on its page): the
    picture is kept as a photo search's photo, and the shopper sent to that search."""
    product = get_object_or_404(Product.objects.searchable(), pk=pk)
    if request.method != "POST" or not product.image:
        return redirect("search:product", pk=pk)
    if (wait := throttle_wait(request, "photo")) is not None:
        return too_many(request, wait)
    try:
        with product.image.open("rb") as handle:
            key = photo_save(data=handle.read(), name=product.image.name)
    except (OSError, ValidationError) as exc:  # the file is gone or unreadable: the page says so
        logger.warning("Photo search from product %s failed: %s", pk, exc)
        return redirect(f"{reverse('search:product', args=[pk])}?photo=unavailable")
    except DatabaseError as exc:
        if outage_reason(exc) is None:
            raise
        return redirect(f"{reverse('search:product', args=[pk])}?photo=busy")
    return _see_other(f"{reverse('search:search')}?{canonical_query({'photo': key}).urlencode()}")


PRODUCT_PHOTO_NOTICES = {
    "unavailable": "This product's picture cannot be read right now, so it cannot be searched with.",
    "busy": "Photo search is busy for a moment: please try again in 30 seconds.",
}


def _back(request: HttpRequest) -> str:
    """The search a product was opened from (`from`, a query string the result link carries),
    re-encoded so that it can only ever be a query string of the search page."""
    return QueryDict(request.GET.get("from", "")[:2000]).urlencode()


def click_redirect(request: HttpRequest, search_id, pk: int) -> HttpResponse:
    """The result link with JavaScript off: record the click, then go to the product."""
    if throttle_wait(request, "clicks") is not None:
        return redirect("search:product", pk=pk)  # the shopper still gets the product, unrecorded
    try:
        click_log(search_id=str(search_id), product_id=pk, session_key=known_visit(request))
    except ClickError as exc:
        logger.info("Click not recorded: %s", exc)
    response = redirect("search:product", pk=pk)
    back = _back(request)
    if back:
        response["Location"] += "?" + urlencode({"from": back})
    return response
