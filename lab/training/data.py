"""Training data: click triplets (a query, the clicked product, the products skipped above it)
read from an export, split by query, batched without a product twice, and the products' images
read with a bounded cache."""

from __future__ import annotations

import json
import logging
import random
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from search.services.exports import export_columns

logger = logging.getLogger(__name__)


@dataclass
class Product:
    key: str  # product id if known, else its text
    text: str
    image: str | None


# A click's weight is the inverse of its position's propensity, at most this: a click where
# few shoppers look is evidence, but one such click must not drown a batch (clipped IPS)
MAX_WEIGHT = 10.0


@dataclass
class Example:
    query: str
    positive: Product
    negatives: list[Product] = field(default_factory=list)
    # the mean inverse propensity of its clicks (the triplets' `propensity`; 1 where unknown)
    weight: float = 1.0


def click_weight(propensity) -> float:
    """1 / propensity, clipped to MAX_WEIGHT; 1 for a row without one (CSV gives "")."""
    try:
        value = float(propensity)
    except (TypeError, ValueError):
        return 1.0
    return min(MAX_WEIGHT, 1.0 / value) if value > 0 else 1.0


def triplets_load(path: str | Path) -> list[Example]:
    """Read exported triplets (JSONL, CSV or Parquet) into one example per (query, positive)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    elif suffix == ".csv":
        import csv

        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    else:
        raise ValueError(f"{path.name}: use a .jsonl, .csv or .parquet triplets export")
    missing = set(export_columns("triplets", text_only=True)) - set(rows[0] if rows else {})
    if not rows or missing:
        raise ValueError(
            f"{path.name}: no triplets" if not rows else f"{path.name}: missing column(s) {', '.join(sorted(missing))}"
        )

    def product(row: dict, side: str) -> Product:
        key = row.get(f"{side}_id")
        image = row.get(f"{side}_image") or None
        return Product(key=str(key) if key not in (None, "") else row[side], text=row[side], image=image)

    grouped: dict[tuple[str, str], Example] = {}
    clicks: dict[tuple[str, str], dict[str, float]] = {}  # each example's clicks (searches) and weights
    for row in rows:
        positive = product(row, "positive")
        key = (row["query"], positive.key)
        example = grouped.setdefault(key, Example(row["query"], positive))
        clicks.setdefault(key, {})[str(row.get("search_id") or len(clicks[key]))] = click_weight(row.get("propensity"))
        negative = product(row, "negative")
        if negative.key not in {n.key for n in example.negatives}:
            example.negatives.append(negative)
    for key, example in grouped.items():
        example.weight = sum(clicks[key].values()) / len(clicks[key])
    return list(grouped.values())


def split_by_query(examples: Sequence[Example], holdout: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Hold out whole queries, so evaluation measures queries the model never trained on."""
    queries = sorted({e.query for e in examples})
    random.Random(seed).shuffle(queries)
    held = set(queries[: max(1, round(len(queries) * holdout))]) if holdout > 0 and len(queries) > 1 else set()
    return [e for e in examples if e.query not in held], [e for e in examples if e.query in held]


# Decoded images kept between batches, at most this many (the rest is read again when a batch
# needs it): memory stays bounded whatever the size of the click log.
IMAGE_CACHE = 256


class ImageReader:
    """Reads a batch's images when the batch needs them, keeping the IMAGE_CACHE most recent."""

    def __init__(self, size: int = IMAGE_CACHE):
        self.size = size
        self.cache: OrderedDict[str, Image.Image | None] = OrderedDict()
        self.unreadable: set[str] = set()

    def __call__(self, path: str | None) -> Image.Image | None:
        if not path or path.startswith(("http://", "https://")) or path in self.unreadable:
            return None  # training reads local files only
        if path in self.cache:
            self.cache.move_to_end(path)
            return self.cache[path]
        try:
            with Image.open(path) as im:
                image = im.convert("RGB")
        except OSError:
            logger.warning("Skipping unreadable training image %s", path)
            self.unreadable.add(path)
            return None
        self.cache[path] = image
        while len(self.cache) > self.size:
            self.cache.popitem(last=False)
        return image


def batches_without_duplicates(examples: Sequence[Example], size: int, rng: random.Random) -> list[list[Example]]:
    """Shuffled batches in which no product is the positive of two rows: a second copy would be
    masked for both rows (it is their answer), one in-batch negative fewer for every other row.
    (Two rows of one query are fine: each masks the other's positive.) An example that fits no
    open batch waits for the next one."""
    order = list(examples)
    rng.shuffle(order)
    batches: list[list[Example]] = []
    while order:
        batch, products, rest = [], set(), []
        for example in order:
            if len(batch) < size and example.positive.key not in products:
                batch.append(example)
                products.add(example.positive.key)
            else:
                rest.append(example)
        batches.append(batch)
        order = rest
    return batches


def product_pool(examples: Sequence[Example]) -> list[Product]:
    """Every distinct product the triplets mention: the candidates a held-out query is ranked over."""
    pool: dict[str, Product] = {}
    for e in examples:
        for p in [e.positive, *e.negatives]:
            pool.setdefault(p.key, p)
    return list(pool.values())
