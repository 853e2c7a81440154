"""Image checks shared by the admin form, the importer and the indexer.

Pillow is asked to decode the whole image, so a truncated or corrupt file is refused
where it enters, with a message the merchandiser can act on, instead of failing later.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.template.defaultfilters import filesizeformat
from PIL import Image, ImageOps, UnidentifiedImageError

ALLOWED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"}


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


def image_load(data: bytes, *, name: str = "image") -> CheckedImage:
    """Decode image bytes fully, or raise ValidationError saying what is wrong."""
    max_bytes = settings.CATALOG_MAX_IMAGE_BYTES
    if not data:
        raise ValidationError(f"{name}: the file is empty.")
    if len(data) > max_bytes:
        raise ValidationError(
            f"{name}: {filesizeformat(len(data))} is over the {filesizeformat(max_bytes)} limit "
            "(CATALOG_MAX_IMAGE_BYTES); resize or recompress it."
        )
    try:
        with Image.open(io.BytesIO(data)) as probe:
            fmt = probe.format or ""
            width, height = probe.size
            if width * height > settings.CATALOG_MAX_IMAGE_PIXELS:
                raise ValidationError(
                    f"{name}: {width}x{height} pixels is over the limit of "
                    f"{settings.CATALOG_MAX_IMAGE_PIXELS:,} (CATALOG_MAX_IMAGE_PIXELS); resize it."
                )
            if fmt not in ALLOWED_FORMATS:
                raise ValidationError(f"{name}: {fmt or 'unknown'} images are not supported; "
                                      f"use one of {', '.join(sorted(ALLOWED_FORMATS))}.")
            probe.load()  # decodes every pixel: truncated files fail here
            image = ImageOps.exif_transpose(probe).convert("RGB")
    except ValidationError:
        raise
    except UnidentifiedImageError as exc:  # Pillow's message names an in-memory buffer, not the file
        raise ValidationError(f"{name}: not a readable image; use one of "
                              f"{', '.join(sorted(ALLOWED_FORMATS))}.") from exc
    except Image.DecompressionBombError as exc:
        raise ValidationError(f"{name}: not a readable image ({exc}).") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValidationError(f"{name}: the image is corrupt or truncated ({exc}).") from exc
    return CheckedImage(image=image, format=fmt, sha256=hashlib.sha256(data).hexdigest())
