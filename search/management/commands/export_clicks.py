from __future__ import annotations

from datetime import date
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from search.services import clicks_export, export_size, write_export
from search.services.exports import FORMATS, KINDS


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(f"{value!r} is not a date; write it as YYYY-MM-DD.") from exc


class Command(BaseCommand):
    help = (
        "Export the search and click log: raw events (one row per search) or training "
        "triplets (query, clicked product, skipped higher-ranked product)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--kind", choices=KINDS, required=True)
        parser.add_argument("--format", choices=FORMATS, default="jsonl")
        parser.add_argument("--since", help="first day, YYYY-MM-DD (inclusive)")
        parser.add_argument("--until", help="last day, YYYY-MM-DD (inclusive)")
        parser.add_argument(
            "--text-only",
            action="store_true",
            help="triplets: only query/positive/negative (sentence-transformers' form)",
        )
        parser.add_argument("--out", required=True)

    def handle(
        self, *args, kind: str, format: str, since: str | None, until: str | None, text_only: bool, out: str, **options
    ):
        start, end = (_date(since) if since else None), (_date(until) if until else None)
        if start and end and start > end:
            raise CommandError("--since is after --until.")
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        total = export_size(kind=kind, since=start, until=end)
        with (
            tqdm(total=total, desc=f"export {kind}", unit="search", disable=options["verbosity"] == 0) as bar,
            path.open("wb") as handle,
        ):
            rows = write_export(
                clicks_export(kind=kind, since=start, until=end, text_only=text_only, progress=bar.update),
                fmt=format,
                kind=kind,
                text_only=text_only,
                out=handle,
            )
        self.stdout.write(f"Wrote {rows} {kind} rows from {total} searches to {path}.")
