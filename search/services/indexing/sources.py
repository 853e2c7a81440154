"""What the towers see of a product and what its point carries: the text and image that are
embedded, their hashes (what is unchanged is not encoded again), the payload filters and facets
read, and a run's report and plan."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from django.core.exceptions import ValidationError

from catalog.config import catalog_config
from catalog.models import Product
from search.retrieval import providers
from search.retrieval.facets import facet_payload
from search.retrieval.keywords import KeywordText, Sparse, attribute_texts, sku_key


@dataclass
class IndexReport:
    indexed: int = 0
    skipped: int = 0
    payload_updated: int = 0
    removed: int = 0
    failed: int = 0
    # left pending because another process holds the embedded index (it indexes them)
    deferred: int = 0
    errors: dict[int, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    def merge(self, other: IndexReport) -> None:
        for name in ("indexed", "skipped", "payload_updated", "removed", "failed", "deferred"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.update(other.errors)


def _sha(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\x1f")
    return digest.hexdigest()


def product_keyword_text(product: Product) -> KeywordText:
    """What the keyword leg reads of a product: its words, its SKU and its attributes' values."""
    return KeywordText(
        title=product.title,
        brand=product.brand,
        category=product.category,
        sku=product.sku,
        attributes=tuple(attribute_texts(product.attributes or {})),
        description=product.description,
    )


def product_payload(
    product: Product, *, model_id: str, has_text: bool, has_image: bool, keywords: Sparse | None = None
) -> dict:
    """What Qdrant filters on; the database stays the source of everything shown. `terms` are the
    keyword leg's terms (which query words the product holds)."""
    return {
        "sku": product.sku,
        "sku_key": sku_key(product.sku),
        "terms": list(keywords.indices) if keywords else [],
        # category, brand and each attribute as filters compare them (the database keeps them as typed)
        **facet_payload(category=product.category, brand=product.brand, attributes=product.attributes),
        "price": float(product.price),
        "currency": product.currency,
        "active": product.active,
        "has_text": has_text,
        "has_image": has_image,
        # whether the text vector saw a description or the title alone (the calibration reads it)
        "has_description": bool(product.description.strip()),
        "model_id": model_id,
    }


@dataclass
class ProductSource:
    """What the towers see of a product, hashed: the text, the image bytes (decoded only if the
    product is encoded), and the payload Qdrant filters on."""

    product: Product
    text: str
    image_bytes: bytes | None
    content_hash: str
    payload: dict
    payload_hash: str
    keywords: Sparse


def product_source(product: Product, model_id: str) -> ProductSource:
    """Read the product's text and image bytes and hash them; raises ValidationError if the
    image file cannot be read. An unchanged product (the sweep, `index_products --all`) costs a
    file read and a hash, not a decode."""
    text = product.search_text
    data: bytes | None = None
    if product.image:
        try:
            with product.image.open("rb") as handle:
                data = handle.read(catalog_config().max_image_bytes + 1)
        except (FileNotFoundError, OSError) as exc:
            raise ValidationError(f"image file {product.image.name!r} cannot be read ({exc}).") from exc
    if not text and data is None:
        raise ValidationError("nothing to embed: give the product a title or an image.")
    keywords = providers.get_keyword_encoder().document(product_keyword_text(product))
    payload = product_payload(
        product, model_id=model_id, has_text=bool(text), has_image=data is not None, keywords=keywords
    )
    image_sha = hashlib.sha256(data).hexdigest() if data is not None else ""
    # The keyword vector follows its terms (in the payload): a new SKU or attribute is a payload
    # change, written without encoding again.
    return ProductSource(
        product=product,
        text=text,
        image_bytes=data,
        content_hash=_sha(model_id, text, image_sha),
        payload=payload,
        payload_hash=_sha(json.dumps(payload, sort_keys=True), repr(keywords.values)),
        keywords=keywords,
    )


@dataclass
class IndexPlan:
    """What prepare decided for each active product."""

    encode: list[ProductSource] = field(default_factory=list)  # new or changed: embed and upsert
    payload: list[ProductSource] = field(default_factory=list)  # same vectors, new payload (price...)
    current: list[ProductSource] = field(default_factory=list)  # already in the index as it is
    failed: list[tuple[Product, str]] = field(default_factory=list)
