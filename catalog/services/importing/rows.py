"""One row to one product: its values parsed and checked as the admin form checks them, its image
found in the import's folder or ZIP, or downloaded."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.template.defaultfilters import filesizeformat

from catalog.config import catalog_config
from catalog.fetching import FetchBudget, image_download
from catalog.images import CHECK_ONLY, image_load
from catalog.models import Product

from .reading import COLUMNS, ImportRow

TEXT_FIELDS = ("title", "description", "brand", "category")


TRUE_WORDS = {"1", "true", "yes", "y", "on"}


FALSE_WORDS = {"0", "false", "no", "n", "off"}


class ImageResolver:
    """Turns an `image` cell into bytes: a path inside images_dir, or an http(s) URL."""

    def __init__(self, images_dir: Path | None):
        self.images_dir = images_dir.resolve() if images_dir else None
        self.budget = FetchBudget()  # the whole import's time for downloading images

    def fetch(self, value: str) -> tuple[bytes, str]:
        value = value.strip()
        if value.lower().startswith(("http://", "https://")):
            return self._download(value), value.rsplit("/", 1)[-1] or "image"
        if "://" in value:
            raise ValidationError(f"image: only http(s) URLs or paths are accepted, not {value!r}.")
        if self.images_dir is None:
            raise ValidationError(
                "image: a path was given but no images directory; "
                "pass --images-dir (or upload the images with the file)."
            )
        path = (self.images_dir / value).resolve()
        if not path.is_relative_to(self.images_dir):
            raise ValidationError(f"image: {value!r} points outside the images directory.")
        if not path.is_file():
            raise ValidationError(
                f"image: no file {value!r} among the images (the images folder, or the uploaded ZIP)."
            )
        size = path.stat().st_size
        if size > catalog_config().max_image_bytes:
            raise ValidationError(
                f"image: {value!r} is {filesizeformat(size)}, over the "
                f"{filesizeformat(catalog_config().max_image_bytes)} limit."
            )
        return path.read_bytes(), path.name

    def _download(self, url: str) -> bytes:
        return image_download(url, self.budget)


def value_parse(name: str, value: Any) -> Any:
    """Convert one cell to the model's type, or raise ValidationError naming the column."""
    if name in TEXT_FIELDS or name in {"sku", "currency"}:
        if value is None:
            return ""
        if not isinstance(value, (str, int, float)):
            raise ValidationError(f"{name}: expected text, got {type(value).__name__}.")
        text = str(value).strip()
        return text.upper() if name == "currency" else text
    if name == "price":
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ValidationError("price: enter a number such as 19.99.")
        try:
            price = Decimal(str(value).strip())
        except InvalidOperation as exc:
            raise ValidationError(f"price: {str(value)[:40]!r} is not a number.") from exc
        if not price.is_finite():
            raise ValidationError("price: enter a finite number.")
        return price
    if name == "attributes":
        if value in (None, ""):
            return {}
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValidationError(f"attributes: not valid JSON ({exc.msg}).") from exc
        if not isinstance(value, dict):
            raise ValidationError('attributes: must be a JSON object such as {"color": "red"}.')
        return value
    if name == "active":
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in TRUE_WORDS or word == "":
            return True
        if word in FALSE_WORDS:
            return False
        raise ValidationError(f"active: {str(value)[:20]!r} is not true or false.")
    raise AssertionError(name)


def messages_of(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in exc.message_dict.items())
    return " ".join(exc.messages)


def row_build(
    row: ImportRow, existing: Product | None, images: ImageResolver
) -> tuple[Product, bool, bytes | None, str]:
    """Returns (product, changed, image bytes to store or None, image name)."""
    data = row.data
    product = existing or Product()
    changed = existing is None
    for name in COLUMNS:
        if name == "image" or data.get(name) is None:
            continue  # a column left out, or a JSON null: the stored value stays
        value = value_parse(name, data[name])
        if getattr(product, name) != value:
            setattr(product, name, value)
            changed = True
    image_bytes: bytes | None = None
    image_name = ""
    image_value = data.get("image")
    if isinstance(image_value, str) and "\x00" in image_value:
        raise ValidationError("image: the path or URL contains a NUL character.")
    if isinstance(image_value, str) and image_value.strip():
        raw, image_name = images.fetch(image_value)
        checked = image_load(raw, name=f"image {image_value.strip()!r}", draft=CHECK_ONLY)
        # An unchanged image (same bytes, same content-hash name) is not copied again.
        if not checked.is_stored_as(product.image.name if product.image else ""):
            image_bytes = raw
            image_name = checked.stored_name
            changed = True
    elif image_value not in (None, ""):
        raise ValidationError("image: expected a path or URL as text.")
    product.clean_fields(exclude=["image"])
    return product, changed, image_bytes, image_name
