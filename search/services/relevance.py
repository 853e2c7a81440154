"""Fitting the relevance model (retrieval/relevance.py) from the catalog itself: no labels, no
clicks, so a shop has it on its first day.

Pseudo-queries are made from what shoppers see of the products: a product's title is its brand,
attribute values and a noun ("Kestrel red striped ceramic mug": brand Kestrel, values red,
striped, ceramic, noun "mug"). A query names the noun with none, one or two of the values, or
the brand, as shoppers type them ("red mug", "striped ceramic mug", "Kestrel mug"), or a value
or the brand alone ("red", "Kestrel"). Each of its matches is judged from the catalog's own
fields: a *good* match is of the same category (or, without categories, the same noun; any, for
a query without one) and holds one of the asked values at least; a *top* match holds them all.
In some queries the noun is read as a word no product holds, as a synonym only the model knows
would be ("cup" in a shop of mugs), so the model learns to lean on the towers when the words
cannot say; some carry a word that says neither what nor which ("cheap").

Products without an image are learnt from twins too: every match of a product with an image
again as if it had none, so how they are judged and levelled does not depend on how many
products of this catalog lack one. (Twins without a description, read again by the text tower
without it, were tried and levelled no better on the held-out shops: docs/quality.md.)

It runs in the background (the embedded sweep, or the beat's task on the real stack) when the
serving model has none or the catalog's size has changed by a quarter since, never on a request;
searches meanwhile keep the previous fit. What happened is kept on the model's RelevanceFit row:
the admin shows it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from django.utils import timezone

from catalog.models import Product
from search.models import RelevanceFit
from search.retrieval import providers, relevance
from search.retrieval.keywords import attribute_texts, fold, words
from search.selectors import relevance_rows
from search.selectors.calibrations import calibration_forget

logger = logging.getLogger(__name__)

MIN_PRODUCTS = 50  # fewer, and the catalog is too small to learn from: the search keeps the cutoff
QUERIES = 300  # pseudo-queries per fit
MIN_QUERIES = 30  # with both good and other matches, or the fit is not made
SEED = 20261207
REFIT_CHANGE = 0.25  # fitted again when the catalog's size changes by this share
RETRY_SECONDS = 600.0  # after a failed or impossible fit, tried again this long after
MODEL_ONLY_SHARE = 0.3  # queries whose noun is read as a word no product holds
# words shoppers add that say neither what nor which ("cheap red mug"), in this share of queries
FILLERS = ("cheap", "best", "nice", "new", "buy", "good", "quality", "classic", "modern", "looking for a")
FILLER_SHARE = 0.2
# how many of a product's values a query asks, with its brand, with its noun; how often: "mug",
# "red mug", "red striped mug", "Kestrel mug", "Kestrel red mug", and without a noun "red",
# "Kestrel" (any product holding it is a good match)
SHAPES = (
    (0, False, True, 0.10),
    (1, False, True, 0.33),
    (2, False, True, 0.20),
    (0, True, True, 0.12),
    (1, True, True, 0.08),
    (1, False, False, 0.10),
    (0, True, False, 0.07),
)


class RelevanceFitError(ValueError):
    """The catalog cannot give a fit; the message says why and what the search does meanwhile."""


@dataclass(frozen=True)
class Item:
    """What a pseudo-query and its judgement read of a product."""

    id: int
    kind: str  # its category (folded), or its noun without one
    noun: tuple[str, ...]  # title words that are neither brand nor attribute values
    brand: str
    values: frozenset[str]  # folded attribute values and brand
    askable: tuple[str, ...]  # attribute values its title shows, in title order


def catalog_items() -> list[Item]:
    rows = Product.objects.searchable().values_list("id", "title", "brand", "category", "attributes")
    return [_item(*row) for row in rows.iterator(chunk_size=2000)]


def _item(pid: int, title: str, brand: str, category: str, attributes) -> Item:
    title_words = words(title)
    values = [fold(v).strip() for v in attribute_texts(attributes or {})]
    valued = {w for v in values for w in words(v)} | set(words(brand))
    noun = tuple(w for w in title_words if w not in valued) or tuple(words(category))
    askable = tuple(dict.fromkeys(v for v in values if v and all(w in title_words for w in words(v))))
    return Item(
        id=pid,
        kind=fold(category).strip() or " ".join(noun),
        noun=noun,
        brand=fold(brand).strip(),
        values=frozenset(v for v in [*values, fold(brand).strip()] if v),
        askable=askable,
    )


@dataclass(frozen=True)
class PseudoQuery:
    text: str
    kind: str  # "": no noun, so any kind
    asked: tuple[str, ...]
    model_only: frozenset[str]


def pseudo_queries(items: list[Item], *, count: int = QUERIES, seed: int = SEED) -> list[PseudoQuery]:
    """Queries shoppers could type for the catalog's products (module docstring), distinct."""
    rng = random.Random(seed)
    out: dict[str, PseudoQuery] = {}
    weights = [w for *_, w in SHAPES]
    for _ in range(count * 4):
        if len(out) >= count:
            break
        item = rng.choice(items)
        values, with_brand, with_noun, _ = rng.choices(SHAPES, weights)[0]
        if (with_noun and not item.noun) or len(item.askable) < values or (with_brand and not item.brand):
            continue
        asked = tuple(sorted(rng.sample(item.askable, values), key=item.askable.index))
        noun, model_only = item.noun if with_noun else (), frozenset()
        if with_noun and rng.random() < MODEL_ONLY_SHARE:
            # half the time a word the model knows well, half a word it half knows (a synonym in
            # word pieces, "muffler" for a scarf): both said in words no product holds
            noun = noun if rng.random() < 0.5 else tuple(_garbled(w, rng) for w in noun)
            model_only = frozenset(noun)
        filler = [rng.choice(FILLERS)] if with_noun and rng.random() < FILLER_SHARE else []
        text = " ".join([*filler, *([item.brand] if with_brand else []), *asked, *noun])
        kind = item.kind if with_noun else ""
        out.setdefault(text, PseudoQuery(text, kind, (item.brand,) * with_brand + asked, model_only))
    return list(out.values())


def _garbled(word: str, rng: random.Random) -> str:
    """The word with two of its letters after the first replaced: close to it for the model's
    word pieces, held by no product."""
    if len(word) < 4:
        return word
    letters = list(word)
    for i in rng.sample(range(1, len(word)), 2):
        letters[i] = rng.choice("aeioulnrst".replace(letters[i], ""))
    return "".join(letters)


def judged(query: PseudoQuery, item: Item | None) -> tuple[float, float]:
    """(good, top) of a match, from the catalog's fields."""
    if item is None or (query.kind and item.kind != query.kind):
        return 0.0, 0.0
    held = sum(1 for value in query.asked if value in item.values)
    good = not query.asked or held > 0
    return float(good), float(held == len(query.asked))


def relevance_fit(*, count: int = QUERIES, seed: int = SEED, progress: Callable[[int], None] | None = None):
    """Fit the relevance model of the serving model on this catalog.

    Raises:
        RelevanceFitError: too few products, or too few pseudo-queries that find both good and
            other matches; the message says which.
    """
    started = time.monotonic()
    items = catalog_items()
    if len(items) < MIN_PRODUCTS:
        raise RelevanceFitError(
            f"the catalog has {len(items)} products on sale; it is learnt from {MIN_PRODUCTS} or more."
        )
    by_id = {item.id: item for item in items}
    rows, good, top, weights, groups, levelled = [], [], [], [], [], []
    rng = np.random.default_rng(seed)
    used = varied = 0
    for query in pseudo_queries(items, count=count, seed=seed):
        if progress:
            progress(1)
        ids, features = relevance_rows(query.text, model_only=query.model_only)
        labels = np.array([judged(query, by_id.get(pid)) for pid in ids]).reshape(-1, 2)
        if not len(ids):
            continue
        # a query all of whose matches are good (or none) teaches how sure to be of them
        used += 1
        varied += labels[:, 0].min() < labels[:, 0].max()
        kept, weight = _sampled(labels[:, 0], rng)
        rows.append(features[kept])
        good.append(labels[kept, 0])
        top.append(labels[kept, 1])
        levelled.append(labels[kept, 1] * bool(query.kind))
        weights.append(weight / len(ids))
        groups.append(np.full(len(kept), used))
    if varied < MIN_QUERIES:
        raise RelevanceFitError(
            f"only {varied} of the searches made from the catalog's titles find both good and other matches "
            f"(at least {MIN_QUERIES} are needed): its titles may not name the brand, attribute values and what "
            "the product is, or its products may lack categories and attributes."
        )
    x, w = np.vstack(rows), np.concatenate(weights)
    model = relevance.model_fit(
        x,
        {"good": np.concatenate(good), "top": np.concatenate(top), "level": np.concatenate(levelled)},
        w,
        np.concatenate(groups),
        model=providers.serving_model_id(),
        products=len(items),
        queries=used,
        examples=int(len(x)),
        good_share=round(float(np.concatenate(good).mean()), 4),
        seconds=round(time.monotonic() - started, 1),
        at=timezone.now().isoformat(timespec="seconds"),
    )
    return relevance.RelevanceModel(
        model.coefficients, model.fitted, photo_thresholds([i.id for i in items], seed=seed)
    )


PHOTO_SAMPLE = 300  # products whose vectors the photo thresholds are measured on


def photo_thresholds(ids: list[int], *, seed: int = SEED) -> dict[str, float]:
    """From which cosine a product looks like a photo: per modality (the photo's vector against
    product images, and against product texts), the PHOTO_QUANTILE of the cosines between
    unrelated products of the catalog (a product's image against another's image or text). A
    shopper's photo of something the shop sells comes close to its products' images; one of
    nothing in particular stays among the pairs of unrelated products. {} when too few products
    have an image."""
    rng = random.Random(seed)
    points = providers.get_product_index().retrieve(rng.sample(ids, min(PHOTO_SAMPLE, len(ids))))
    images = [p.vector["image"] for p in points.values() if "image" in p.vector]
    texts = [p.vector["text"] for p in points.values() if "text" in p.vector and "image" in p.vector]
    if len(images) < 10:
        return {}
    image, text = (np.asarray(v, dtype=np.float64) for v in (images, texts))
    image /= np.maximum(np.linalg.norm(image, axis=1, keepdims=True), 1e-12)
    text /= np.maximum(np.linalg.norm(text, axis=1, keepdims=True), 1e-12)
    apart = ~np.eye(len(image), dtype=bool)  # another product's
    return {
        "image": float(np.quantile((image @ image.T)[apart], relevance.PHOTO_QUANTILE)),
        "text": float(np.quantile((image @ text.T)[apart], relevance.PHOTO_QUANTILE)),
    }


ROWS_PER_QUERY = 400  # a large catalog's query matches thousands: its other matches are sampled


def _sampled(good: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The matches a query is learnt from, and their weights: every good one, and of the others
    a sample up to ROWS_PER_QUERY in all, each weighing for those it stands for."""
    positives, others = np.flatnonzero(good > 0), np.flatnonzero(good == 0)
    room = max(ROWS_PER_QUERY - len(positives), 50)
    if len(others) <= room:
        return np.arange(len(good)), np.ones(len(good))
    chosen = np.sort(rng.choice(others, room, replace=False))
    kept = np.concatenate([positives, chosen])
    return kept, np.concatenate([np.ones(len(positives)), np.full(room, len(others) / room)])


def relevance_due(model_id: str, products: int, row: RelevanceFit | None, now=None) -> bool:
    """Whether to fit now: none yet, or the catalog's size changed by REFIT_CHANGE since the fit
    (or the fit is another version's); after a try that failed, not before RETRY_SECONDS."""
    if row is None:
        return products >= MIN_PRODUCTS
    now = now or timezone.now()
    if row.problem and row.tried_at and (now - row.tried_at).total_seconds() < RETRY_SECONDS:
        return False
    if not row.fitted:
        return products >= MIN_PRODUCTS
    try:
        relevance.RelevanceModel.from_dict(row.fitted)
    except ValueError:  # fitted by another version of this code
        return True
    return abs(products - row.products) >= REFIT_CHANGE * max(row.products, 1)


_fitting = threading.Lock()  # one fit at a time in a process (the sweep, a command)


def relevance_fit_if_due(*, force: bool = False) -> RelevanceFit | None:
    """Fit and keep the serving model's relevance model when it is due (or `force`); the row
    says what happened. None when nothing was due, or a fit is under way in this process."""
    if not _fitting.acquire(blocking=False):
        return None
    try:
        return _fit_if_due(force)
    finally:
        _fitting.release()


def _fit_if_due(force: bool) -> RelevanceFit | None:
    model_id = providers.serving_model_id()
    products = providers.get_product_index().count()
    row = RelevanceFit.objects.filter(model_id=model_id).first()
    if not force and not relevance_due(model_id, products, row):
        return None
    try:
        fitted = relevance_fit()
    except RelevanceFitError as exc:
        logger.warning("No relevance model for %s: %s", model_id, exc)
        row = RelevanceFit.objects.filter(model_id=model_id).first() or RelevanceFit(model_id=model_id)
        row.problem, row.tried_at = str(exc), timezone.now()
        if not row.fitted:  # with one, the change is still measured from the catalog it was fitted on
            row.products = products
        row.save()
        return row
    row, _ = RelevanceFit.objects.update_or_create(
        model_id=model_id,
        defaults={"fitted": fitted.as_dict(), "problem": "", "tried_at": timezone.now(), "products": products},
    )
    calibration_forget()
    logger.info("Relevance model of %s fitted on %s pseudo-queries", model_id, fitted.fitted.get("queries"))
    return row


__all__ = [
    "MIN_PRODUCTS",
    "RelevanceFitError",
    "catalog_items",
    "judged",
    "pseudo_queries",
    "relevance_due",
    "relevance_fit",
    "relevance_fit_if_due",
]
