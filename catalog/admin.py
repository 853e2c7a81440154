"""Merchandiser screens: products with their index state, bulk import, re-embed."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import UploadedFile
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.timezone import localtime

from .forms import CatalogImportForm, ProductAdminForm
from .models import ImportJob, IndexStatus, Product
from .money import money
from .services import (
    EDITABLE_FIELDS,
    import_job_resume,
    import_job_start,
    product_create,
    product_delete,
    product_update,
    products_delete,
    products_reindex,
)

STATUS_COLOURS = {
    IndexStatus.PENDING: "#8a6d00",
    IndexStatus.INDEXED: "#1b7f3b",
    IndexStatus.FAILED: "#b3261e",
    IndexStatus.UNLISTED: "#5f6b7a",
}


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    form = ProductAdminForm
    list_display = (
        "picture",
        "title",
        "sku",
        "brand",
        "category",
        "price_shown",
        "active",
        "index_state",
        "indexed_when",
    )
    list_display_links = ("title",)
    ordering = ("-created_at", "-pk")  # the newest first: what a merchandiser just added
    list_filter = ("index_status", "active", "category", "brand")
    search_fields = ("sku", "title", "brand", "category")
    list_per_page = 50
    readonly_fields = (
        "index_status",
        "index_error",
        "indexed_model",
        "indexed_at",
        "content_hash",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "sku",
                    "title",
                    "description",
                    "brand",
                    "category",
                    "price",
                    "currency",
                    "image",
                    "attributes",
                    "active",
                )
            },
        ),
        ("Search index", {"fields": ("index_status", "index_error", "indexed_model", "indexed_at", "content_hash")}),
        ("History", {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )
    actions = ("reembed_selected",)
    change_list_template = "admin/catalog/product/change_list.html"

    @admin.display(description="Picture")
    def picture(self, obj: Product) -> str:
        if not obj.image:
            return format_html('<span class="no-picture" title="No image">—</span>')
        return format_html('<img src="{}" alt="" width="40" height="40" class="thumb">', obj.image.url)

    @admin.display(description="Indexed at", ordering="indexed_at")
    def indexed_when(self, obj: Product) -> str:
        return date_format(localtime(obj.indexed_at), "Y-m-d H:i") if obj.indexed_at else "—"

    @admin.display(description="Price", ordering="price")
    def price_shown(self, obj: Product) -> str:
        return money(obj.price, obj.currency)

    @admin.display(description="Index status", ordering="index_status")
    def index_state(self, obj: Product) -> str:
        colour = STATUS_COLOURS.get(obj.index_status, "#000")
        return format_html(
            '<strong style="color:{}" title="{}">{}</strong>',
            colour,
            obj.index_error[:500],
            obj.get_index_status_display(),
        )

    # Saves and deletes go through the catalog services, like the importer and the API: the
    # image is checked and stored under its content name, and the dirty flag is set.
    def save_model(self, request: HttpRequest, obj: Product, form, change: bool) -> None:
        data = form.cleaned_data
        fields = {name: data[name] for name in EDITABLE_FIELDS if name in data}
        upload = data.get("image")
        image_bytes, image_name = None, None
        if isinstance(upload, UploadedFile):  # a new upload, not the file already stored
            upload.seek(0)
            image_bytes, image_name = upload.read(), upload.name
        if change:
            product_update(
                product=obj,
                sku=data["sku"],
                image_bytes=image_bytes,
                image_name=image_name,
                remove_image=upload is False,
                **fields,
            )
            return
        created = product_create(sku=data["sku"], image_bytes=image_bytes, image_name=image_name, **fields)
        obj.pk = created.pk  # the admin's redirect and history entry name the saved row
        obj.refresh_from_db()

    def delete_model(self, request: HttpRequest, obj: Product) -> None:
        product_delete(product=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        products_delete(product_ids=list(queryset.values_list("pk", flat=True)))

    @admin.action(description="Re-embed selected products", permissions=["change"])
    def reembed_selected(self, request: HttpRequest, queryset) -> None:
        count = products_reindex(product_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"{count} product(s) queued for re-embedding.", messages.SUCCESS)

    def get_urls(self):
        urls = super().get_urls()
        custom = [
            path("import/", self.admin_site.admin_view(self.import_view), name="catalog_product_import"),
            path(
                "import/<int:job_id>/",
                self.admin_site.admin_view(self.import_job_view),
                name="catalog_product_import_job",
            ),
        ]
        return custom + urls

    def _may_import(self, request: HttpRequest) -> None:
        if not self.has_add_permission(request) or not self.has_change_permission(request):
            raise PermissionDenied

    def import_view(self, request: HttpRequest) -> HttpResponse:
        """The upload: kept, and imported in the background; the report is on the job's page."""
        self._may_import(request)
        form = CatalogImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            job = import_job_start(
                upload=form.cleaned_data["file"], images=form.cleaned_data.get("images"), user=request.user
            )
            return redirect(reverse("admin:catalog_product_import_job", args=[job.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "form": form,
            "jobs": ImportJob.objects.all()[:10],
            "title": "Import products",
        }
        return render(request, "admin/catalog/product/import.html", context)

    def import_job_view(self, request: HttpRequest, job_id: int) -> HttpResponse:
        self._may_import(request)
        job = get_object_or_404(ImportJob, pk=job_id)
        if request.method == "POST" and import_job_resume(job=job):
            self.message_user(request, "The import goes on after the last rows it wrote.", messages.SUCCESS)
            return redirect(request.path)
        running = job.status in (ImportJob.Status.QUEUED, ImportJob.Status.RUNNING) and not job.stalled
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "job": job,
            "running": running,
            "title": f"Import of {job.file_name}",
        }
        return render(request, "admin/catalog/product/import_job.html", context)
