"""Search write services: the vector index, the search and click log, exports."""

from .events import ClickError, click_log, search_event_log, search_logs_prune, session_pseudonym
from .exports import clicks_export, export_columns, export_size, iter_encoded, write_export
from .indexing import (
    IndexReport,
    ProductSource,
    model_switch_advance,
    product_payload,
    product_source,
    products_index,
    products_reindex_if_index_missing,
)
from .photos import PhotoGone, photo_bytes, photo_image, photo_kept, photo_load, photo_save, photos_prune
from .reconcile import ReconcileReport, index_reconcile

__all__ = [
    "ClickError",
    "PhotoGone",
    "IndexReport",
    "ProductSource",
    "ReconcileReport",
    "click_log",
    "clicks_export",
    "export_columns",
    "export_size",
    "index_reconcile",
    "iter_encoded",
    "model_switch_advance",
    "photo_bytes",
    "photo_image",
    "photo_kept",
    "photo_load",
    "photo_save",
    "photos_prune",
    "product_payload",
    "product_source",
    "products_index",
    "products_reindex_if_index_missing",
    "search_event_log",
    "search_logs_prune",
    "session_pseudonym",
    "write_export",
]
