from __future__ import annotations

import zipfile
from pathlib import Path

from django import forms
from django.core.exceptions import ValidationError

from catalog.config import catalog_config

from .images import CHECK_ONLY, image_load
from .models import Product

# An images archive may hold many images, but not unbounded bytes once unpacked.
MAX_ARCHIVE_UNPACKED_BYTES = 2 * 1024**3


class AttributesField(forms.JSONField):
    """A product's attributes as a merchandiser reads and types them: one "key: value" per line
    ("Colour: red", "Size: S, M, L" for several values). Attributes that lines cannot say without
    changing them (numbers, yes/no, nested objects, a comma inside a value) are shown and taken
    as JSON, as is text that starts with "{"."""

    widget = forms.Textarea(attrs={"rows": 6, "cols": 60})

    def prepare_value(self, value):
        if isinstance(value, str):  # the form's own text, shown again with its error
            return value
        if value and isinstance(value, dict) and all(_as_line(v) is not None for v in value.values()):
            return "\n".join(f"{k}: {_as_line(v)}" for k, v in value.items())
        return super().prepare_value(value)

    def to_python(self, value):
        text = (value or "").strip()
        if not text or text.startswith("{"):
            return super().to_python(text or "{}")
        out: dict[str, object] = {}
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            key, colon, rest = line.partition(":")
            if not colon or not key.strip():
                raise ValidationError(f'Line {number}: write "key: value" (for example "Colour: red"), or JSON.')
            values = [v.strip() for v in rest.split(",") if v.strip()]
            out[key.strip()] = values if len(values) > 1 else (values[0] if values else "")
        return out

    def has_changed(self, initial, data):
        return initial != self.to_python(data)


def _as_line(value) -> str | None:
    """A value as one line of text, if the line reads back as the same value."""
    if isinstance(value, str) and "," not in value and "\n" not in value:
        return value
    if isinstance(value, list) and len(value) > 1 and all(isinstance(v, str) and v and "," not in v for v in value):
        return ", ".join(value)
    return None


class ProductAdminForm(forms.ModelForm):
    attributes = AttributesField(
        required=False,
        help_text='One "key: value" per line ("Colour: red"; several values: "Size: S, M, L"), or JSON.',
    )

    class Meta:
        model = Product
        fields = "__all__"

    def clean_attributes(self):
        return self.cleaned_data.get("attributes") or {}

    def clean_image(self):
        image = self.cleaned_data.get("image")
        # Only a new upload has to be checked; an unchanged stored file was checked on entry.
        if image and hasattr(image, "content_type"):
            image.seek(0)
            image_load(image.read(), name=image.name, draft=CHECK_ONLY)
            image.seek(0)
        return image


class CatalogImportForm(forms.Form):
    file = forms.FileField(
        help_text="CSV or JSONL with columns sku, title, description, brand, "
        "category, price, currency, image, attributes, active."
    )
    images = forms.FileField(
        required=False, help_text="Optional ZIP of the images that the image column names by path."
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if Path(upload.name).suffix.lower() not in {".csv", ".jsonl", ".ndjson"}:
            raise ValidationError("Upload a .csv or .jsonl file.")
        return upload

    def clean_images(self):
        upload = self.cleaned_data.get("images")
        if not upload:
            return upload
        try:
            with zipfile.ZipFile(upload) as archive:
                infos = archive.infolist()
        except zipfile.BadZipFile as exc:
            raise ValidationError("The images file is not a readable ZIP archive.") from exc
        too_big = [i.filename for i in infos if i.file_size > catalog_config().max_image_bytes]
        if too_big:
            raise ValidationError(f"{too_big[0]} is over the per-image size limit.")
        if sum(i.file_size for i in infos) > MAX_ARCHIVE_UNPACKED_BYTES:
            raise ValidationError("The archive unpacks to more than 2 GB; split it.")
        upload.seek(0)
        return upload
