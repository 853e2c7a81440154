from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from catalog.services import catalog_import
from catalog.services.importing import ImportFileError

SHOW_ERRORS = 50


class Command(BaseCommand):
    help = (
        "Create or update products from a CSV or JSONL file (existing skus are updated). "
        "Bad rows are reported by line; good rows are kept. Exits 1 if any row failed."
    )

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--images-dir", help="where relative image paths point (default: the file's folder)")
        parser.add_argument("--format", choices=["csv", "jsonl"], help="default: from the file name")
        parser.add_argument("--chunk-size", type=int, default=500, help="rows per transaction")

    def handle(self, *args, path: str, images_dir: str | None, format: str | None, chunk_size: int, **options):
        source = Path(path)
        if not source.is_file():
            raise CommandError(f"No file at {source}.")
        if images_dir and not Path(images_dir).is_dir():
            raise CommandError(f"--images-dir {images_dir} is not a directory.")
        with source.open("rb") as handle:
            total = sum(1 for line in handle if line.strip())
        if (format or source.suffix.lower().lstrip(".")) == "csv":
            total = max(total - 1, 0)  # header
        with tqdm(total=total, desc="import", unit="row", disable=options["verbosity"] == 0) as bar:
            try:
                report = catalog_import(
                    source=source,
                    file_format=format,
                    images_dir=Path(images_dir) if images_dir else None,
                    chunk_size=chunk_size,
                    progress=bar.update,
                )
            except ImportFileError as exc:
                raise CommandError(str(exc)) from exc
        for warning in report.warnings:
            self.stderr.write(self.style.WARNING(warning))
        for error in report.errors[:SHOW_ERRORS]:
            self.stderr.write(self.style.ERROR(str(error)))
        if len(report.errors) > SHOW_ERRORS:
            self.stderr.write(f"... and {len(report.errors) - SHOW_ERRORS} more bad rows")
        self.stdout.write(f"Import finished: {report.summary()}.")
        if report.errors:
            raise CommandError(f"{report.failed} row(s) failed; the other rows were saved.", returncode=1)
