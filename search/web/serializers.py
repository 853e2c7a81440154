"""Search parameters and responses: one definition for the storefront and the API."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema_field
from rest_framework import serializers

from catalog.money import money
from search.retrieval.config import search_config
from search.retrieval.fusion import MODALITIES
from search.selectors import MAX_PAGE_SIZE, MAX_QUERY_CHARS, SORTS, STRATEGIES, SearchFilters, SearchResult
from search.selectors.searching import facet_attributes, filter_chips
from search.selectors.suggesting import MAX_SUGGEST_LIMIT, SUGGEST_LIMIT

MAX_FILTER_VALUES = 50
MAX_FILTER_CHARS = 120


@extend_schema_field(
    {
        "type": "string",
        "pattern": r"^(\d{1,10}(\.\d{1,2})?)?$",
        "example": "19.99",
        "description": "Digits, at most two after a point; empty: no bound.",
    }
)
class PriceField(serializers.DecimalField):
    """A price as the API takes it: digits, and at most two after a point ("19.99"); empty is no
    bound, as a form's empty field."""

    def __init__(self, **kwargs):
        super().__init__(
            max_digits=12, decimal_places=2, min_value=0, required=False, allow_null=True, default=None, **kwargs
        )


class SearchParamsSerializer(serializers.Serializer):
    q = serializers.CharField(required=False, allow_blank=True, default="", max_length=MAX_QUERY_CHARS * 4)
    strategy = serializers.ChoiceField(choices=STRATEGIES, required=False, allow_blank=True)
    # an empty value chooses nothing (a form's empty field)
    category = serializers.ListField(
        child=serializers.CharField(max_length=120, allow_blank=True), required=False, default=list, max_length=50
    )
    brand = serializers.ListField(
        child=serializers.CharField(max_length=120, allow_blank=True), required=False, default=list, max_length=50
    )
    price_min = PriceField()
    price_max = PriceField()
    prefix = serializers.BooleanField(
        required=False,
        default=False,
        help_text="The query's last word is still being typed (search as you type): it is never corrected, and a "
        "single letter is not read yet. Typed or not, a last word no product holds matches the catalog words it "
        'begins ("kest": Kestrel).',
    )
    understood = serializers.CharField(
        required=False,
        allow_blank=True,
        default=None,
        max_length=MAX_QUERY_CHARS * 4,
        help_text="The query whose words the filters given already hold (a response's `understood`). Words that name "
        'a price ("under $20") or a facet value the shop has ("red", "mugs") become filters; to take one back, send '
        "the filters you keep with `understood` set to the query: it is then not read again. A different query is "
        "read afresh, without the filters the old one named.",
    )
    sort = serializers.ChoiceField(choices=SORTS, required=False, default="relevance")
    page = serializers.IntegerField(min_value=1, max_value=10_000, required=False, default=1)
    page_size = serializers.IntegerField(min_value=1, max_value=MAX_PAGE_SIZE, required=False, default=20)

    def validate(self, data):
        low, high = data.get("price_min"), data.get("price_max")
        if low is not None and high is not None and low > high:
            raise serializers.ValidationError({"price_max": ["Must be at least price_min."]})
        data["attributes"] = self._attributes()
        return data

    def _attributes(self) -> list[tuple[str, tuple[str, ...]]]:
        """The attribute filters (SEARCH_FACET_ATTRIBUTES: `?colour=red&colour=blue`), each as its
        payload field and values."""
        raw = self.context.get("query", self.initial_data)  # the API passes its query string
        chosen, errors = [], {}
        for attribute in facet_attributes():
            values = raw.getlist(attribute.param) if hasattr(raw, "getlist") else raw.get(attribute.param, [])
            values = [values] if isinstance(values, (str, int, float)) else values
            if not isinstance(values, (list, tuple)):
                errors[attribute.param] = ["Give a list of values."]
                continue
            values = [str(v) for v in values if str(v).strip()]
            if len(values) > MAX_FILTER_VALUES or any(len(v) > MAX_FILTER_CHARS for v in values):
                errors[attribute.param] = [
                    f"At most {MAX_FILTER_VALUES} values of at most {MAX_FILTER_CHARS} characters each."
                ]
            elif values:
                chosen.append((attribute.field, tuple(values)))
        if errors:
            raise serializers.ValidationError(errors)
        return chosen

    def search_kwargs(self) -> dict:
        data = self.validated_data
        filters = SearchFilters(
            categories=tuple(c for c in data["category"] if c),
            brands=tuple(b for b in data["brand"] if b),
            price_min=data.get("price_min"),
            price_max=data.get("price_max"),
            attributes=tuple(data.get("attributes", ())),
        )
        return {
            "query": data["q"],
            "filters": filters,
            "strategy": data.get("strategy") or None,
            "sort": data["sort"],
            "page": data["page"],
            "page_size": data["page_size"],
            "prefix": data.get("prefix", False),
            "understand": search_config().query_filters,
            "understood": data.get("understood"),
        }


class StorefrontParamsSerializer(SearchParamsSerializer):
    """The storefront's search state: the API's parameters and the kept photo of a photo search."""

    photo = serializers.RegexField(
        r"^[0-9a-f]{32}$",
        required=False,
        allow_blank=True,
        default="",
        error_messages={"invalid": "Not a photo search of this shop; search by photo again."},
    )


class DetailSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What happened and what to do.")


def error_responses(*codes: int) -> dict:
    """The documented error answers of an endpoint (drf-spectacular responses)."""
    described = {
        400: OpenApiResponse(OpenApiTypes.OBJECT, description="A parameter is wrong: `{parameter: [messages]}`."),
        403: OpenApiResponse(
            OpenApiTypes.OBJECT,
            description="Not allowed: `{detail: message}`, or for a click "
            "(not this session's search, or too old to count) "
            "`{search_id: [message]}`.",
        ),
        404: OpenApiResponse(OpenApiTypes.OBJECT, description="No such search or product: `{field: [message]}`."),
        409: OpenApiResponse(
            OpenApiTypes.OBJECT, description="The click contradicts the search: `{field: [message]}`."
        ),
        413: OpenApiResponse(DetailSerializer, description="The request body is larger than this shop accepts."),
        415: OpenApiResponse(DetailSerializer, description="The body is not in a type this endpoint reads."),
        429: OpenApiResponse(DetailSerializer, description="Too many requests from this address; see Retry-After."),
        503: OpenApiResponse(DetailSerializer, description="Search is unavailable (the model or the index)."),
    }
    return {code: described[code] for code in codes}


# the largest id a database column holds (a larger number is a 400, not an overflow)
MAX_ID = 2**63 - 1


class ClickSerializer(serializers.Serializer):
    search_id = serializers.UUIDField(format="hex")
    product_id = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    sku = serializers.CharField(required=False, max_length=64)
    position = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)

    def validate(self, data):
        if "product_id" not in data and "sku" not in data:
            raise serializers.ValidationError({"product_id": ["Give product_id or sku."]})
        data["search_id"] = data["search_id"].hex
        return data


# The click body as the schema says it: a search id and the product, by id or by sku (one of
# them at least), and optionally the position it was shown at.
_CLICK_PROPERTIES = {
    "search_id": {
        "type": "string",
        "pattern": "^[0-9a-fA-F]{32}$|^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
        "description": "The `search_id` of the search that showed the product.",
    },
    "product_id": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
    "sku": {"type": "string", "minLength": 1, "maxLength": 64},
    "position": {
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_ID,
        "description": "Where the search showed it (checked).",
    },
}
CLICK_REQUEST = {
    "application/json": {
        "type": "object",
        "properties": _CLICK_PROPERTIES,
        "additionalProperties": False,
        "anyOf": [{"required": ["search_id", "product_id"]}, {"required": ["search_id", "sku"]}],
    }
}


class ClickResponseSerializer(serializers.Serializer):
    recorded = serializers.BooleanField(help_text="False when this click was already recorded (kept once).")
    position = serializers.IntegerField()
    queued = serializers.BooleanField(
        required=False,
        help_text="True (with 202) while the database cannot take writes: the click is written once it can.",
    )


class ExportParamsSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["events", "triplets"])
    format = serializers.ChoiceField(choices=["jsonl", "csv", "parquet"], default="jsonl")
    since = serializers.DateField(required=False, allow_null=True, default=None)
    until = serializers.DateField(required=False, allow_null=True, default=None)
    text_only = serializers.BooleanField(required=False, default=False)

    def validate(self, data):
        if data["since"] and data["until"] and data["since"] > data["until"]:
            raise serializers.ValidationError({"until": ["Must not be before since."]})
        return data


class SuggestParamsSerializer(serializers.Serializer):
    q = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        trim_whitespace=False,
        help_text=f"What the shopper has typed so far (longer text is cut at {MAX_QUERY_CHARS} characters).",
    )
    limit = serializers.IntegerField(required=False, default=SUGGEST_LIMIT, min_value=1, max_value=MAX_SUGGEST_LIMIT)

    def validate_q(self, value: str) -> str:
        return value[:MAX_QUERY_CHARS]


class SuggestionSerializer(serializers.Serializer):
    text = serializers.CharField()
    kind = serializers.ChoiceField(
        choices=["query", "brand", "category", "product"],
        help_text="A query shoppers clicked a result of, a brand, a category, or a product's title.",
    )


class SuggestedProductSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    sku = serializers.CharField()
    title = serializers.CharField()
    price = serializers.DecimalField(max_digits=12, decimal_places=2, coerce_to_string=False)
    currency = serializers.CharField()
    price_shown = serializers.CharField(help_text='As the shop\'s locale writes it ("$26.39").')
    image_url = serializers.CharField(allow_null=True)
    url = serializers.CharField(help_text="The product's page on the storefront.")


class SuggestedGroupSerializer(serializers.Serializer):
    text = serializers.CharField()
    count = serializers.IntegerField(help_text="How many of the products whose titles hold the words it has.")
    count_more = serializers.BooleanField(
        help_text="The count is a lower bound: more titles matched than were counted."
    )


class SuggestResponseSerializer(serializers.Serializer):
    query = serializers.CharField(allow_blank=True)
    suggestions = SuggestionSerializer(many=True)
    products = SuggestedProductSerializer(
        many=True,
        help_text="Products whose titles hold the words typed (the last as a prefix), the best matches first: "
        "every word as typed, then the most clicked, the shortest title.",
    )
    categories = SuggestedGroupSerializer(
        many=True, help_text="The categories of the products whose titles hold the words."
    )
    brands = SuggestedGroupSerializer(many=True, help_text="The brands of the products whose titles hold the words.")


def predictive_data(predictive, *, query: str, build_url) -> dict:
    """The suggest API's answer: completions, products with picture and price, groups with counts."""
    return {
        "query": query,
        "suggestions": [{"text": s.text, "kind": s.kind} for s in predictive.suggestions],
        "products": [
            {
                "id": p.pk,
                "sku": p.sku,
                "title": p.title,
                "price": p.price,
                "currency": p.currency,
                "price_shown": money(p.price, p.currency),
                "image_url": build_url(p.image.url) if p.image else None,
                "url": reverse("search:product", args=[p.pk]),
            }
            for p in predictive.products
        ],
        "categories": [{"text": s.text, "count": s.count, "count_more": s.more} for s in predictive.categories],
        "brands": [{"text": s.text, "count": s.count, "count_more": s.more} for s in predictive.brands],
    }


class ImageSearchParamsSerializer(SearchParamsSerializer):
    # a file: the photo is checked by services.photo_load, which says what is wrong with it
    image = serializers.FileField(help_text="The shopper's photo (JPEG, PNG, WebP…), at most 16 megapixels.")
    prefix = None  # a photo has no word being typed
    understood = None  # nor words to read filters from


class UnderstoodSerializer(serializers.Serializer):
    param = serializers.CharField(
        help_text='The filter\'s URL parameter: "category", "brand", an attribute\'s, or "price".'
    )
    value = serializers.CharField(allow_blank=True, help_text="The value as filters compare it (empty for a price).")
    label = serializers.CharField(help_text='As the storefront shows it ("red", "Under $20").')
    words = serializers.CharField(help_text="The words of the query it was read from.")
    price_min = serializers.DecimalField(
        max_digits=12, decimal_places=2, coerce_to_string=False, allow_null=True, required=False
    )
    price_max = serializers.DecimalField(
        max_digits=12, decimal_places=2, coerce_to_string=False, allow_null=True, required=False
    )


class ModalityScoreSerializer(serializers.Serializer):
    raw = serializers.FloatField(
        help_text="Cosine between the query and this product's vector (keyword: "
        "the BM25 score of the query's words in the product)."
    )
    normalized = serializers.FloatField(help_text="The raw score standardised over this query's candidates.")


class ModalitiesSerializer(serializers.Serializer):
    text = ModalityScoreSerializer(required=False, help_text="Absent when the product has no usable text.")
    image = ModalityScoreSerializer(required=False, help_text="Absent when the product has no image.")
    keyword = ModalityScoreSerializer(
        required=False, help_text="The keyword leg; absent when no word of the query is a word the engine scores."
    )


class SearchHitSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    sku = serializers.CharField()
    title = serializers.CharField()
    brand = serializers.CharField()
    category = serializers.CharField()
    price = serializers.DecimalField(max_digits=12, decimal_places=2, coerce_to_string=False)
    currency = serializers.CharField()
    image_url = serializers.CharField(allow_null=True)
    position = serializers.IntegerField()
    score = serializers.FloatField(allow_null=True, help_text="Null when browsing without a query.")
    relevance = serializers.FloatField(
        allow_null=True,
        help_text="How likely this product is a good match for the words (0 to 1; the search matches those at "
        "or above SEARCH_RELEVANCE_THRESHOLD). Null when browsing, for a photo, a pinned product the query did not "
        "match, or before the relevance model is fitted from the catalog.",
    )
    modalities = ModalitiesSerializer()


class FacetValueSerializer(serializers.Serializer):
    value = serializers.CharField()
    label = serializers.CharField()
    count = serializers.IntegerField()
    selected = serializers.BooleanField()
    # a price bucket's filter, both ends included: "25-50" is 25.00 to 49.99
    price_min = serializers.DecimalField(
        max_digits=12, decimal_places=2, coerce_to_string=False, allow_null=True, required=False
    )
    price_max = serializers.DecimalField(
        max_digits=12, decimal_places=2, coerce_to_string=False, allow_null=True, required=False
    )


class FacetsSerializer(serializers.Serializer):
    category = FacetValueSerializer(many=True)
    brand = FacetValueSerializer(many=True)
    price = FacetValueSerializer(many=True)


class SearchResponseSerializer(serializers.Serializer):
    search_id = serializers.CharField()
    query = serializers.CharField(allow_blank=True)
    strategy = serializers.CharField()
    sort = serializers.CharField()
    page = serializers.IntegerField()
    page_size = serializers.IntegerField()
    count = serializers.IntegerField(
        help_text="Every product that matches: for words, those likely enough a good match (`relevance`); 0: none."
    )
    count_capped = serializers.BooleanField(
        help_text="More products passed the cutoff than are ranked (SEARCH_MAX_MATCHES): `count` is a lower bound."
    )
    understood_as = serializers.CharField(
        allow_blank=True, help_text="The query with its typos corrected, when it had any (else empty)."
    )
    understood = UnderstoodSerializer(
        many=True,
        help_text="The filters the query's words named, applied to this search (and selected in `facets`).",
    )
    results = SearchHitSerializer(many=True)
    facets = FacetsSerializer()


def search_result_data(result: SearchResult, *, build_url) -> dict:
    """Plain data for the JSON response; a modality is left out where the product lacks it."""
    hits = []
    for hit in result.hits:
        product = hit.product
        modalities = {m: {"raw": hit.raw[m], "normalized": hit.normalized.get(m)} for m in MODALITIES if m in hit.raw}
        hits.append(
            {
                "id": product.pk,
                "sku": product.sku,
                "title": product.title,
                "brand": product.brand,
                "category": product.category,
                "price": product.price,
                "currency": product.currency,
                "image_url": build_url(product.image.url) if product.image else None,
                "position": hit.position,
                "score": hit.score,
                "relevance": None if hit.relevance is None else round(hit.relevance, 4),
                "modalities": modalities,
            }
        )
    facets = {name: [vars(v) for v in values] for name, values in result.facets.items()}
    return {
        "search_id": result.search_id,
        "query": result.query,
        "strategy": result.strategy,
        "sort": result.sort,
        "page": result.page,
        "page_size": result.page_size,
        "count": result.count,
        "count_capped": result.count_capped,
        "understood_as": result.understood_as,
        "understood": [
            {name: getattr(chip, name) for name in ("param", "value", "label", "words", "price_min", "price_max")}
            for chip in filter_chips(result)
            if chip.words
        ],
        "results": hits,
        "facets": facets,
    }
