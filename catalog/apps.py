from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "catalog"
    verbose_name = "Catalog"

    def ready(self) -> None:
        # Signals only schedule work; importing them loads no model and opens no client.
        from . import signals  # noqa: F401
