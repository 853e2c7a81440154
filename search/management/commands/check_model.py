from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from search.retrieval.config import search_config
from search.retrieval.encoders import ModelUnavailableError
from search.retrieval.providers import get_encoder


class Command(BaseCommand):
    help = "Load the configured embedding model once, or say clearly why it cannot be loaded."

    def handle(self, *args, **options):
        self.stdout.write(f"Loading SEARCH_EMBEDDING_MODEL={search_config().embedding_model} ...")
        try:
            encoder = get_encoder()
        except ModelUnavailableError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"OK: {encoder.model_id}, {encoder.dim}-d vectors, device {getattr(encoder, 'device', '?')}."
            )
        )
