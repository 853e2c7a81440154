"""Catalog write services: every change to products goes through here."""

from .import_jobs import import_job_resume, import_job_run, import_job_start, import_jobs_resume_stalled
from .importing import ImportReport, RowError, catalog_import
from .products import (
    EDITABLE_FIELDS,
    product_create,
    product_delete,
    product_update,
    products_delete,
    products_reindex,
)

__all__ = [
    "EDITABLE_FIELDS",
    "ImportReport",
    "RowError",
    "catalog_import",
    "import_job_resume",
    "import_job_run",
    "import_job_start",
    "import_jobs_resume_stalled",
    "product_create",
    "product_delete",
    "product_update",
    "products_delete",
    "products_reindex",
]
