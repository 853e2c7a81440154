from __future__ import annotations

from django.core.management.base import BaseCommand

from lab.tiny_model import build_tiny_clip


class Command(BaseCommand):
    help = (
        "Write a small randomly initialised CLIP model (tokenizer and image processor "
        "included) that loads offline through SEARCH_EMBEDDING_MODEL=DIR. Its results are random."
    )

    def add_arguments(self, parser):
        parser.add_argument("out_dir")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--dim", type=int, help="embedding size (default: the preset's)")
        parser.add_argument(
            "--preset",
            choices=["tiny", "vit-b-32"],
            default="tiny",
            help="vit-b-32: ViT-B/32's shape with random weights, for speed tests",
        )

    def handle(self, *args, out_dir: str, seed: int, dim: int | None, preset: str, **options):
        path = build_tiny_clip(out_dir, seed=seed, dim=dim, preset=preset)
        self.stdout.write(
            self.style.SUCCESS(
                f"Wrote a random CLIP to {path}. Use it with SEARCH_EMBEDDING_MODEL={path} "
                "(search results will be random: it exercises the pipeline, not the quality)."
            )
        )
