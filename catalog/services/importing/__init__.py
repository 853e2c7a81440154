"""Bulk import of CSV or JSONL catalogs: `reading` (files into rows, bad lines reported),
`rows` (a row to a product, its image) and `importer` (chunks, transactions, announcements)."""

from .importer import ImportCheckpoint, catalog_import
from .reading import COLUMNS, ImportFileError, ImportReport, RowError

__all__ = ["COLUMNS", "ImportCheckpoint", "ImportFileError", "ImportReport", "RowError", "catalog_import"]
