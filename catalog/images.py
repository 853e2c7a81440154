"""Image checks shared by the admin form, the importer and the indexer.

Pillow is asked to decode the whole image, so a truncated or corrupt file is refused
where it enters, with a message the merchandiser can act on, instead of failing later.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.template.defaultfilters import filesizeformat
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from catalog.config import catalog_config

ALLOWED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"}
# The most an image is scaled down while decoded (image_load's draft)
DRAFT_MOST = 4
# image_load's draft for callers that only check an image: it comes back as small as allowed
CHECK_ONLY = (1, 1)


@dataclass(frozen=True)
class CheckedImage:
    image: Image.Image  # RGB, EXIF orientation applied
    format: str
    sha256: str

    @property
    def stored_name(self) -> str:
        """File name in storage: named by content, so the same bytes are never stored twice."""
        ext = {"JPEG": "jpg"}.get(self.format, self.format.lower())
        return f"{self.sha256[:16]}.{ext}"

    def is_stored_as(self, name: str) -> bool:
        return bool(name) and name.rsplit("/", 1)[-1].startswith(self.sha256[:16])


def image_load(
    data: bytes,
    *,
    name: str = "image",
    draft: tuple[int, int] | None = None,
    max_pixels: tuple[int, str] | None = None,
) -> CheckedImage:
    """Decode image bytes fully, or raise ValidationError saying what is wrong.

    draft: (width, height) the caller needs at least; the image comes back scaled down by a
    whole factor as far as that allows, at most by 4. A JPEG is decoded so (libjpeg's DCT
    scaling: a 1000 px photo needed at 224 px decodes at 250 px, several times faster); any other
    format is decoded whole and reduced at once to no less than twice that, before any copy. At 1/8 libjpeg keeps
    only each block's average and its colour planes come out blocky: a tiny model's embeddings
    moved by 0.2% there, and by under 0.01% at 1/4. Every byte is still read, so a truncated
    file still fails.

    max_pixels: (limit, the setting that sets it) instead of CATALOG_MAX_IMAGE_PIXELS; with no
    setting ("") the refusal is worded for a shopper.

    Memory is bounded by design: the pixels of every image being decoded in this process are
    counted against CATALOG_DECODE_PIXELS, and a decode that would go over waits its turn."""
    max_bytes = catalog_config().max_image_bytes
    if not data:
        raise ValidationError(f"{name}: the file is empty.")
    if len(data) > max_bytes:
        raise ValidationError(
            f"{name}: {filesizeformat(len(data))} is over the {filesizeformat(max_bytes)} limit "
            "(CATALOG_MAX_IMAGE_BYTES); resize or recompress it."
        )
    sha256 = hashlib.sha256(data).hexdigest()
    recent = (sha256, catalog_config().max_image_pixels)
    if draft == CHECK_ONLY and max_pixels is None and (known := _checked.get(recent)) is not None:
        return known  # the same bytes checked a moment ago (the admin form, then the service)
    try:
        with Image.open(io.BytesIO(data)) as probe:
            fmt = probe.format or ""
            _check_header(probe, name=name, max_pixels=max_pixels)
            with _decoding.held(probe.size[0] * probe.size[1]):
                image = _decoded(probe, draft)
    except ValidationError:
        raise
    except UnidentifiedImageError as exc:  # Pillow's message names an in-memory buffer, not the file
        raise ValidationError(
            f"{name}: not a readable image; use one of {', '.join(sorted(ALLOWED_FORMATS))}."
        ) from exc
    except Image.DecompressionBombError as exc:  # so large that Pillow refuses even its header
        limit, setting = max_pixels or (catalog_config().max_image_pixels, "CATALOG_MAX_IMAGE_PIXELS")
        raise ValidationError(_too_large(name, "the image", limit, setting)) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValidationError(f"{name}: the image is corrupt or truncated ({exc}).") from exc
    checked = CheckedImage(image=image, format=fmt, sha256=sha256)
    if draft == CHECK_ONLY and max_pixels is None:
        _checked.put(recent, checked)
    return checked


class _Recent:
    """The last few images checked with CHECK_ONLY, by content hash and the pixel limit they were
    checked against: an upload is checked by the admin form and again by the service that stores
    it, and a 40 MP decode is not free."""

    SIZE = 32

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[str, int], CheckedImage] = OrderedDict()

    def get(self, key: tuple[str, int]) -> CheckedImage | None:
        with self._lock:
            return self._items.get(key)

    def put(self, key: tuple[str, int], value: CheckedImage) -> None:
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.SIZE:
                self._items.popitem(last=False)


_checked = _Recent()


def _check_header(probe: Image.Image, *, name: str, max_pixels: tuple[int, str] | None) -> None:
    """Refuse, from the header alone, an image too large or of a format this shop does not read."""
    limit, setting = max_pixels or (catalog_config().max_image_pixels, "CATALOG_MAX_IMAGE_PIXELS")
    width, height = probe.size
    if width * height > limit:
        raise ValidationError(_too_large(name, f"{width}x{height} pixels", limit, setting))
    if (probe.format or "") not in ALLOWED_FORMATS:
        raise ValidationError(
            f"{name}: {probe.format or 'unknown'} images are not supported; "
            f"use one of {', '.join(sorted(ALLOWED_FORMATS))}."
        )


def _too_large(name: str, size: str, limit: int, setting: str) -> str:
    """What to say of an image over the pixel limit: to a merchandiser, with the setting that
    sets it; to a shopper (no setting), in megapixels and what to send instead."""
    if setting:
        return f"{name}: {size} is over the limit of {limit:,} ({setting}); resize it."
    return (
        f"{name}: {size} is more than this shop takes ({limit / 1e6:.0f} megapixels); "
        "send a smaller photo (a phone's usual photo is about 12)."
    )


def _decoded(probe: Image.Image, draft: tuple[int, int] | None) -> Image.Image:
    """The probe's pixels as RGB, EXIF orientation applied, reduced toward `draft` before any copy."""
    width, height = probe.size
    if draft is not None and probe.format == "JPEG":
        probe.draft("RGB", (max(draft[0], -(-width // DRAFT_MOST)), max(draft[1], -(-height // DRAFT_MOST))))
    probe.load()  # decodes every pixel: truncated files fail here
    image = probe
    if draft is not None and image.size == (width, height):  # not drafted: reduce what was decoded
        # to at least twice the size asked for: a box filter that far keeps the model's own
        # resize all but exact (a tiny model's image embeddings within 0.1%)
        factor = min(DRAFT_MOST, width // max(1, 2 * draft[0]), height // max(1, 2 * draft[1]))
        if factor >= 2:
            image = image.reduce(factor)
    orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    if orientation != 1:
        image = ImageOps.exif_transpose(image)
    # a copy only where the mode differs, or where the probe itself would be handed out
    if image.mode != "RGB":
        return image.convert("RGB")
    return image.copy() if image is probe else image


class _PixelBudget:
    """The pixels being decoded in this process at once, at most CATALOG_DECODE_PIXELS: a decode
    that would go over waits until others finish (one image larger than the budget runs alone)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._busy = 0

    @contextmanager
    def held(self, pixels: int) -> Iterator[None]:
        budget = catalog_config().decode_pixels
        with self._changed:
            self._changed.wait_for(lambda: self._busy == 0 or self._busy + pixels <= budget)
            self._busy += pixels
        try:
            yield
        finally:
            with self._changed:
                self._busy -= pixels
                self._changed.notify_all()


_decoding = _PixelBudget()
