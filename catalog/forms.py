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


class ProductAdminForm(forms.ModelForm):
    class Meta:
        model = Product
        fields = "__all__"

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
