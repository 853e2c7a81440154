from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from lab.training import TRAINABLE, ClipTrainer, TrainConfig, product_pool, split_by_query, training_run, triplets_load
from search.retrieval.config import search_config
from search.retrieval.encoders import ModelUnavailableError
from search.retrieval.providers import fusion_weights


class Command(BaseCommand):
    help = (
        "Fine-tune the CLIP model on exported click triplets (contrastive: in-batch and hard "
        "negatives), report Recall@1/@10 and MRR on held-out queries before and after, and save "
        "a model directory that SEARCH_EMBEDDING_MODEL accepts."
    )

    def add_arguments(self, parser):
        parser.add_argument("--data", required=True, help="export_clicks --kind triplets output")
        parser.add_argument("--base", default=None, help="model id or dir (default: SEARCH_EMBEDDING_MODEL)")
        parser.add_argument("--out", required=True)
        parser.add_argument(
            "--train",
            choices=TRAINABLE,
            default="text",
            help="text: text tower + projection; image: image tower + projection; "
            "projection: both projections; all: everything",
        )
        parser.add_argument("--epochs", type=int, default=3)
        parser.add_argument("--batch-size", type=int, default=32)
        parser.add_argument(
            "--grad-accum",
            type=int,
            default=1,
            help="micro-batches per optimiser step, all of them one contrastive batch: every row's "
            "negatives are the whole window's products (gradient caching keeps the memory of "
            "one micro-batch)",
        )
        parser.add_argument(
            "--warmup",
            type=float,
            default=0.1,
            help="share of the steps over which the learning rate climbs from 0 (then decays to 0)",
        )
        parser.add_argument(
            "--checkpoint-dir",
            help="save the run after each epoch here; started again with the "
            "same folder, it goes on from the last saved epoch",
        )
        parser.add_argument("--lr", type=float, default=2e-5)
        parser.add_argument("--holdout", type=float, default=0.2, help="share of queries held out")
        parser.add_argument(
            "--precision",
            choices=["auto", "fp32", "fp16", "bf16"],
            default="auto",
            help="half precision applies on CUDA (auto: bf16 where supported)",
        )
        parser.add_argument("--gradient-checkpointing", action="store_true", help="trade compute for memory")
        parser.add_argument("--device", default=search_config().device)
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, **opts):
        if (
            opts["epochs"] < 1
            or opts["batch_size"] < 2
            or opts["grad_accum"] < 1
            or not 0 <= opts["holdout"] < 1
            or not 0 <= opts["warmup"] < 1
        ):
            raise CommandError(
                "Need --epochs >= 1, --batch-size >= 2, --grad-accum >= 1, 0 <= --holdout < 1, 0 <= --warmup < 1."
            )
        try:
            examples = triplets_load(opts["data"])
        except (OSError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        train, held = split_by_query(examples, opts["holdout"], opts["seed"])
        if not train:
            raise CommandError("No training examples left after the hold-out; export more clicks.")
        base = opts["base"] or search_config().embedding_model
        try:
            trainer = ClipTrainer(base, device=opts["device"])
        except ModelUnavailableError as exc:
            raise CommandError(str(exc)) from exc
        config = TrainConfig(
            train=opts["train"],
            epochs=opts["epochs"],
            batch_size=opts["batch_size"],
            grad_accum=opts["grad_accum"],
            lr=opts["lr"],
            precision=opts["precision"],
            gradient_checkpointing=opts["gradient_checkpointing"],
            seed=opts["seed"],
            warmup=opts["warmup"],
            checkpoint_dir=opts["checkpoint_dir"],
        )
        pool = product_pool(examples)
        self.stdout.write(
            f"{len(train)} training examples, {len(held)} held out "
            f"({len({e.query for e in held})} queries), {len(pool)} products, device {trainer.device}, "
            f"{config.batch_size * config.grad_accum} examples per contrastive batch"
        )
        run = training_run(
            trainer,
            train=train,
            held=held,
            pool=pool,
            config=config,
            weights=fusion_weights(),
            out_dir=opts["out"],
            desc="fine-tune",
            quiet=opts["verbosity"] == 0,
            report={"base": base, "train_examples": len(train), "held_out": len(held)},
        )
        self.stdout.write("\n" + run.markdown("held-out"))
        self.stdout.write(
            self.style.SUCCESS(
                f"Saved to {run.out}. Use it with SEARCH_EMBEDDING_MODEL={run.out} and re-embed: "
                "python manage.py index_products --all (the vector size is unchanged)"
            )
        )
