"""Catalog write services: every change to products goes through here."""
from .importing import ImportReport, RowError, catalog_import
from .products import (
    product_create,
    product_delete,
    product_update,
    products_enqueue,
    products_enqueue_on_commit,
    products_reindex,
)

__all__ = [
    "ImportReport",
    "RowError",
    "catalog_import",
    "product_create",
    "product_delete",
    "product_update",
    "products_enqueue",
    "products_enqueue_on_commit",
    "products_reindex",
]
