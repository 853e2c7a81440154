from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from search.retrieval.config import search_config
from search.services import photos_prune, search_logs_prune


class Command(BaseCommand):
    help = (
        "Delete searches, impressions and clicks older than DAYS (retention), and shoppers' photos "
        "older than SEARCH_PHOTO_DAYS."
    )

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=int, required=True, metavar="DAYS")

    def handle(self, *args, older_than: int, **options):
        if older_than < 0:
            raise CommandError("--older-than must be 0 or more days.")
        deleted = search_logs_prune(older_than_days=older_than)
        self.stdout.write(f"Deleted {deleted} searches older than {older_than} days (with their clicks).")
        photos = photos_prune()
        self.stdout.write(
            f"Deleted {photos} photo(s) of photo searches older than {search_config().photo_days:g} days."
        )
