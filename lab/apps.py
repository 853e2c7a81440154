from __future__ import annotations

from django.apps import AppConfig

# The offline demo model's checkpoint type (config.json "model_type") and the module whose
# import registers it with transformers' Auto classes.
TWO_TOWER_MODEL_TYPE = "shop_two_tower"
TWO_TOWER_MODULE = "lab.two_tower"


class LabConfig(AppConfig):
    """Offline tooling: sample shops, evaluation, simulated shoppers, training, demo models.

    The serving app never imports this one; the lab imports the serving app, to measure the
    code shoppers hit and to train the models it serves."""

    name = "lab"
    verbose_name = "Search lab (offline tooling)"

    def ready(self) -> None:
        # Only the name is registered: the demo model's code (torch, transformers) is imported
        # when a checkpoint of its type is loaded, never when a serving process starts.
        from search.retrieval.encoders import model_type_register

        model_type_register(TWO_TOWER_MODEL_TYPE, TWO_TOWER_MODULE)
