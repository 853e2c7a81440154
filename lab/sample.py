"""Deterministic sample catalogs with drawn product images (no downloads).

Each product has hidden attributes (category, colour, pattern, material, brand) that its
title, description and image all agree with, so search quality can be judged by eye.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

SIZE = 224

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (210, 40, 45),
    "blue": (40, 90, 200),
    "green": (40, 150, 70),
    "yellow": (240, 200, 40),
    "black": (25, 25, 30),
    "white": (245, 245, 240),
    "orange": (240, 130, 30),
    "purple": (130, 60, 170),
    "pink": (240, 130, 180),
    "grey": (130, 130, 135),
}
PATTERNS = ("plain", "striped", "dotted", "checked")
BRANDS = ("Northwind", "Acme", "Lumen", "Kestrel", "Oakridge", "Bramble", "Solace", "Tidewater")


@dataclass(frozen=True)
class Kind:
    name: str  # the category as stored
    noun: str  # as it appears in titles
    synonyms: tuple[str, ...]  # what shoppers type instead
    materials: tuple[str, ...]
    price: tuple[int, int]
    draw: Callable[[ImageDraw.ImageDraw], None]  # draws the silhouette on a mask


def _mug(d):
    d.rounded_rectangle((60, 60, 150, 180), radius=12, fill=255)
    d.ellipse((135, 85, 190, 155), outline=255, width=14)


def _tshirt(d):
    d.polygon(
        [
            (70, 40),
            (95, 55),
            (130, 55),
            (155, 40),
            (200, 80),
            (175, 105),
            (160, 95),
            (160, 190),
            (65, 190),
            (65, 95),
            (50, 105),
            (25, 80),
        ],
        fill=255,
    )


def _sneaker(d):
    d.polygon([(25, 150), (30, 100), (75, 95), (110, 120), (170, 130), (200, 150), (200, 170), (25, 170)], fill=255)


def _backpack(d):
    d.rounded_rectangle((55, 55, 170, 195), radius=25, fill=255)
    d.arc((85, 25, 140, 80), 180, 360, fill=255, width=10)


def _lamp(d):
    d.polygon([(75, 40), (150, 40), (175, 110), (50, 110)], fill=255)
    d.rectangle((105, 110, 120, 175), fill=255)
    d.ellipse((65, 170, 160, 195), fill=255)


def _vase(d):
    d.ellipse((55, 85, 170, 195), fill=255)
    d.rectangle((90, 35, 135, 100), fill=255)


def _cap(d):
    d.pieslice((50, 60, 175, 180), 180, 360, fill=255)
    d.rounded_rectangle((110, 112, 210, 128), radius=6, fill=255)


def _sock(d):
    d.polygon([(85, 30), (140, 30), (140, 140), (180, 160), (180, 195), (110, 195), (85, 170)], fill=255)


def _bottle(d):
    d.rounded_rectangle((75, 80, 150, 200), radius=14, fill=255)
    d.rectangle((98, 30, 127, 85), fill=255)


def _scarf(d):
    d.rectangle((35, 90, 190, 135), fill=255)
    for x in range(40, 190, 12):
        d.line((x, 135, x, 155), fill=255, width=4)


KINDS: tuple[Kind, ...] = (
    Kind("mugs", "mug", ("coffee mug", "cup"), ("ceramic", "stoneware", "enamel"), (8, 30), _mug),
    Kind("t-shirts", "t-shirt", ("tee", "shirt"), ("cotton", "linen", "organic cotton"), (12, 45), _tshirt),
    Kind(
        "running shoes", "running shoes", ("sneakers", "trainers"), ("mesh", "leather", "canvas"), (45, 160), _sneaker
    ),
    Kind("backpacks", "backpack", ("rucksack", "bag"), ("canvas", "nylon", "leather"), (30, 140), _backpack),
    Kind("lamps", "table lamp", ("desk lamp", "light"), ("metal", "linen", "glass"), (25, 180), _lamp),
    Kind("vases", "vase", ("flower vase", "vase"), ("ceramic", "glass", "porcelain"), (15, 90), _vase),
    Kind("caps", "baseball cap", ("cap", "hat"), ("cotton", "wool", "denim"), (10, 40), _cap),
    Kind("socks", "socks", ("sock", "ankle socks"), ("wool", "cotton", "bamboo"), (5, 20), _sock),
    Kind("bottles", "water bottle", ("flask", "drinking bottle"), ("steel", "glass", "plastic"), (10, 45), _bottle),
    Kind("scarves", "scarf", ("shawl", "muffler"), ("wool", "silk", "cashmere"), (15, 120), _scarf),
)


def _contrast(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    return (25, 25, 30) if sum(rgb) > 450 else (245, 245, 240)


def draw_product(kind: Kind, colour: str, pattern: str, rng: random.Random) -> Image.Image:
    """The silhouette of the kind, filled with the colour and pattern, on a pale background."""
    shade = rng.randint(225, 250)
    canvas = Image.new("RGB", (SIZE, SIZE), (shade, shade, shade - rng.randint(0, 12)))
    base = COLOURS[colour]
    fill = Image.new("RGB", (SIZE, SIZE), base)
    fd = ImageDraw.Draw(fill)
    ink = _contrast(base)
    step = rng.randint(14, 20)
    if pattern == "striped":
        for y in range(0, SIZE, step):
            fd.rectangle((0, y, SIZE, y + step // 2 - 1), fill=ink)
    elif pattern == "dotted":
        for y in range(step // 2, SIZE, step):
            for x in range(step // 2, SIZE, step):
                fd.ellipse((x - 3, y - 3, x + 3, y + 3), fill=ink)
    elif pattern == "checked":
        for y in range(0, SIZE, step):
            for x in range(0, SIZE, step):
                if (x // step + y // step) % 2:
                    fd.rectangle((x, y, x + step - 1, y + step - 1), fill=ink)
    mask = Image.new("L", (SIZE, SIZE), 0)
    kind.draw(ImageDraw.Draw(mask))
    canvas.paste(fill, (0, 0), mask)
    # A thin outline keeps white products visible on the pale background.
    edge = mask.filter(ImageFilter.FIND_EDGES)
    canvas.paste((90, 90, 95), (0, 0), edge)
    return canvas


def _description(kind: Kind, colour: str, pattern: str, material: str, brand: str, rng: random.Random) -> str:
    looks = "solid" if pattern == "plain" else pattern
    openers = [
        f"A {looks} {colour} {kind.noun} made of {material}.",
        f"{brand} makes this {kind.noun} from {material} in {colour}, with a {looks} finish.",
        f"Our {colour} {kind.noun} in {material}: {looks} and built to last.",
    ]
    extras = [
        "Easy to care for.",
        "A customer favourite.",
        "Ships in recycled packaging.",
        "Designed for everyday use.",
        "Makes a thoughtful gift.",
    ]
    return " ".join([rng.choice(openers), rng.choice(extras)])


def generate_catalog(
    out_dir: Path,
    *,
    products: int,
    seed: int,
    missing_image: float = 0.0,
    missing_description: float = 0.0,
    queries: int = 0,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write out_dir/catalog.jsonl, out_dir/images/*.png and (if queries) out_dir/queries.jsonl;
    same seed, same files."""
    for name, value in (("missing_image", missing_image), ("missing_description", missing_description)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1, got {value}")
    rng = random.Random(seed)
    images_dir = out_dir / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    catalog = out_dir / "catalog.jsonl"
    rows: list[dict] = []
    with catalog.open("w", encoding="utf-8") as handle:
        for number in range(1, products + 1):
            kind = rng.choice(KINDS)
            colour = rng.choice(list(COLOURS))
            pattern = rng.choice(PATTERNS)
            material = rng.choice(kind.materials)
            brand = rng.choice(BRANDS)
            sku = f"S{seed}-{number:05d}"
            look = "" if pattern == "plain" else f"{pattern} "
            title = f"{brand} {colour} {look}{material} {kind.noun}"
            description = _description(kind, colour, pattern, material, brand, rng)
            price = f"{rng.uniform(*kind.price):.2f}"
            has_image = rng.random() >= missing_image
            has_description = rng.random() >= missing_description
            image = draw_product(kind, colour, pattern, rng)  # drawn either way: same rng stream
            row = {
                "sku": sku,
                "title": title,
                "description": description if has_description else "",
                "brand": brand,
                "category": kind.name,
                "price": price,
                "currency": "USD",
                "image": "",
                "attributes": {"colour": colour, "pattern": pattern, "material": material},
            }
            if has_image:
                # Relative to the catalog's folder, import_catalog's default images dir.
                row["image"] = f"images/{sku}.png"
                image.save(out_dir / row["image"], format="PNG", optimize=False)
            handle.write(json.dumps(row) + "\n")
            rows.append(row)
            if progress:
                progress(1)
    if queries:
        write_queries(out_dir / "queries.jsonl", rows, count=queries, seed=seed)
    return catalog


# --- labelled queries -------------------------------------------------------------------
KIND_BY_NAME = {kind.name: kind for kind in KINDS}
QUERY_SHAPES = (
    "colour+category",
    "colour+pattern+category",
    "material+category",
    "brand+category",
    "pattern+category",
    "long",
)


def grade(product: dict, asked: dict[str, str]) -> int:
    """3 = every asked attribute matches, 2 = the category and some of the rest, 1 = the
    category only, 0 = another category."""
    attrs = {**product["attributes"], "category": product["category"], "brand": product["brand"]}
    if attrs["category"] != asked["category"]:
        return 0
    rest = [k for k in asked if k != "category"]
    hits = sum(attrs.get(k) == asked[k] for k in rest)
    return 3 if hits == len(rest) else 2 if hits else 1


def _phrase(shape: str, asked: dict[str, str], noun: str) -> str:
    look = asked.get("pattern", "")
    if shape == "long":
        return f"looking for a {asked['colour']} {look + ' ' if look else ''}{noun} for everyday use"
    parts = [asked.get("brand", ""), asked.get("colour", ""), look, asked.get("material", ""), noun]
    return " ".join(p for p in parts if p)


def write_queries(path: Path, rows: list[dict], *, count: int, seed: int) -> None:
    """Shopper-style queries with graded relevance, derived from the products' hidden attributes
    (kind "semantic"), followed by the other kinds shoppers type (`other_queries`).

    Queries are drawn from attribute combinations that at least one product fully matches;
    nouns are the category's own word or a synonym ("sneakers" for running shoes)."""
    rng = random.Random(seed * 7919 + 1)  # apart from the catalog's stream: same products either way
    seen: set[str] = set()
    out = []
    attempts = 0
    while len(out) < count and attempts < count * 50:
        attempts += 1
        anchor = rng.choice(rows)
        kind = KIND_BY_NAME[anchor["category"]]
        shape = rng.choice(QUERY_SHAPES)
        a = anchor["attributes"]
        asked = {"category": anchor["category"]}
        if shape in ("colour+category", "colour+pattern+category", "long"):
            asked["colour"] = a["colour"]
        if shape in ("colour+pattern+category", "pattern+category") or (shape == "long" and a["pattern"] != "plain"):
            if a["pattern"] == "plain":
                continue
            asked["pattern"] = a["pattern"]
        if shape == "material+category":
            asked["material"] = a["material"]
        if shape == "brand+category":
            asked["brand"] = anchor["brand"]
        noun = rng.choice((kind.noun,) + kind.synonyms)
        text = _phrase(shape, asked, noun)
        if text in seen:
            continue
        seen.add(text)
        relevance = {r["sku"]: g for r in rows if (g := grade(r, asked)) > 0}
        out.append(
            {
                "id": f"q{len(out) + 1:04d}",
                "kind": "semantic",
                "query": text,
                "shape": shape,
                "asked": asked,
                "relevance": relevance,
            }
        )
    out += other_queries(rows, out, seed=seed)
    with path.open("w", encoding="utf-8") as handle:
        for query in out:
            handle.write(json.dumps(query) + "\n")


# --- the other kinds of queries: SKUs, brands, typos, nonsense --------------------------
KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
TYPO_ERRORS = ("deletion", "transposition", "neighbour", "missing space")


def _keyboard_neighbours() -> dict[str, str]:
    """Letters next to each letter on a QWERTY keyboard (same row and the rows above and below)."""
    where = {ch: (r, c) for r, row in enumerate(KEYBOARD_ROWS) for c, ch in enumerate(row)}
    return {
        ch: "".join(other for other, (r2, c2) in where.items() if other != ch and abs(r2 - r) <= 1 and abs(c2 - c) <= 1)
        for ch, (r, c) in where.items()
    }


NEIGHBOURS = _keyboard_neighbours()


def typo(text: str, rng: random.Random, *, errors: int = 1) -> tuple[str, list[str]]:
    """The text as typed with `errors` slips of the kinds people make on a keyboard: a letter
    left out, two letters swapped, a letter replaced by a key next to it, a space left out.
    Returns the typed text and the slips made, in order; never the text itself."""
    made: list[str] = []
    typed = text
    for _ in range(errors):
        for _attempt in range(20):
            error = rng.choice(TYPO_ERRORS)
            letters = [i for i, ch in enumerate(typed) if ch.isalpha()]
            if error == "missing space":
                spaces = [i for i, ch in enumerate(typed) if ch == " "]
                if not spaces:
                    continue
                i = rng.choice(spaces)
                candidate = typed[:i] + typed[i + 1 :]
            elif error == "deletion":
                if len(letters) < 4:
                    continue
                i = rng.choice(letters)
                candidate = typed[:i] + typed[i + 1 :]
            elif error == "transposition":
                pairs = [
                    i for i in letters if i + 1 < len(typed) and typed[i + 1].isalpha() and typed[i] != typed[i + 1]
                ]
                if not pairs:
                    continue
                i = rng.choice(pairs)
                candidate = typed[:i] + typed[i + 1] + typed[i] + typed[i + 2 :]
            else:
                keys = [i for i in letters if typed[i].lower() in NEIGHBOURS]
                if not keys:
                    continue
                i = rng.choice(keys)
                candidate = typed[:i] + rng.choice(NEIGHBOURS[typed[i].lower()]) + typed[i + 1 :]
            if candidate != text and candidate != typed:
                typed = candidate
                made.append(error)
                break
    return typed, made


def sku_variant(sku: str, rng: random.Random) -> str:
    """A SKU as a shopper might type it: any case, with its separators, without, or with others."""
    parts = [p for p in sku.replace("_", "-").replace("/", "-").replace(".", "-").split("-") if p]
    joined = rng.choice(["-", "", " ", "_"]).join(parts)
    return rng.choice([joined, joined.lower(), joined.upper()])


def nonsense(rng: random.Random) -> str:
    """Letters that spell nothing in any catalog: one or two made-up words."""
    consonants = "bcdfghjklmnpqrstvwxz"
    word = lambda: "".join(rng.choice(consonants + "aeiou" * (n % 3 == 1)) for n in range(rng.randint(5, 9)))  # noqa: E731
    return " ".join(word() for _ in range(rng.randint(1, 2)))


def other_queries(rows: list[dict], semantic: list[dict], *, seed: int) -> list[dict]:
    """SKU queries (one product each, typed in any case and with or without separators), each
    brand on its own (every product of the brand is grade 3), typo variants of the semantic
    queries (same relevance; `clean` names the query typed right) and nonsense (nothing is
    relevant: the right answer is no results). Apart from the semantic queries' random stream,
    so adding kinds never changes them."""
    rng = random.Random(seed * 104729 + 17)
    out: list[dict] = []

    def add(kind: str, text: str, relevance: dict[str, int], **extra) -> None:
        out.append({"id": f"{kind[0]}{len(out) + 1:04d}", "kind": kind, "query": text, "relevance": relevance, **extra})

    count = max(1, len(semantic))
    for row in rng.sample(rows, min(len(rows), max(1, count // 2))):
        add("sku", sku_variant(row["sku"], rng), {row["sku"]: 3}, sku=row["sku"])
    for brand in sorted({r["brand"] for r in rows}):
        add("brand", rng.choice([brand, brand.lower()]), {r["sku"]: 3 for r in rows if r["brand"] == brand})
    for query in semantic:
        typed, slips = typo(query["query"], rng, errors=rng.choice([1, 1, 2]))
        add("typo", typed, query["relevance"], clean=query["id"], slips=slips)
    for _ in range(max(1, count // 4)):
        add("nonsense", nonsense(rng), {})
    return out
