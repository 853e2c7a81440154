"""Search write services: keeping the vector index in step with the catalog. `pipeline` (read,
prepare, encode and write, mark), `sources` (what a product's point holds), `states` (the
rows' index states, and what flags rows for the sweep)."""

from .pipeline import decode_threads, products_index
from .sources import IndexReport, ProductSource, product_payload, product_source
from .states import model_switch_advance, products_reindex_if_index_missing

__all__ = [
    "IndexReport",
    "ProductSource",
    "decode_threads",
    "model_switch_advance",
    "product_payload",
    "product_source",
    "products_index",
    "products_reindex_if_index_missing",
]
