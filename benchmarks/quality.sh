#!/usr/bin/env bash
# The offline quality chain behind `make quality`, on two generated shops:
#   tune    (seed TUNE_SEED):    the image tower is trained, simulated shoppers click, and the fusion
#                                weights are chosen here (for the base model, then again for the
#                                fine-tuned one: fine-tuning changes how the two modalities compare);
#   heldout (seed HELDOUT_SEED): only ever measured: before and after fine-tuning on those clicks.
# Each shop has its own SQLite database and Qdrant folder, so neither sees the other's products.
# Everything lands in QUALITY_DIR (default var/quality); heldout/after/report.md is the result.
set -euo pipefail

PY=${PY:-.venv/bin/python}
OUT=${QUALITY_DIR:-var/quality}
PRODUCTS=${QUALITY_PRODUCTS:-1500}
QUERIES=${QUALITY_QUERIES:-200}
SESSIONS=${QUALITY_SESSIONS:-3000}
TUNE_SEED=${TUNE_SEED:-101}
HELDOUT_SEED=${HELDOUT_SEED:-202}
DEMO_EPOCHS=${DEMO_EPOCHS:-6}
FINETUNE_EPOCHS=${FINETUNE_EPOCHS:-2}
WEIGHT_SETS=${WEIGHT_SETS:-"text=1,image=1,keyword=0.25;text=1,image=0.5,keyword=0.25;text=1,image=0.3,keyword=0.25;text=1,image=0.5,keyword=0;text=1,image=0.5,keyword=0.5;text=0.7,image=1,keyword=0.25"}

step() { printf '\n=== %s\n' "$*"; }
# manage.py in one shop's embedded world (SQLite + Qdrant local mode + in-process tasks)
in_shop() {
    local shop=$1
    shift
    env -u DATABASE_URL -u CELERY_BROKER_URL -u QDRANT_URL -u QDRANT_PATH \
        SHOP_SEARCH_VAR_DIR="$OUT/$shop/var" LOG_LEVEL=WARNING "$PY" manage.py "$@"
}

rm -rf "$OUT/tune" "$OUT/heldout" "$OUT/model" "$OUT/model-finetuned" "$OUT/clicks"
mkdir -p "$OUT"

step "1/9 generate the tuning shop (seed $TUNE_SEED) and the held-out shop (seed $HELDOUT_SEED)"
for pair in "tune:$TUNE_SEED" "heldout:$HELDOUT_SEED"; do
    shop=${pair%%:*}
    "$PY" manage.py generate_catalog "$OUT/$shop/catalog" --products "$PRODUCTS" --seed "${pair##*:}" \
        --missing-image 0.15 --missing-description 0.15 --queries "$QUERIES"
    in_shop "$shop" migrate --noinput --verbosity 0
done

step "2/9 train the offline two-tower model's image tower on the tuning shop"
"$PY" manage.py train_demo_model --catalog "$OUT/tune/catalog" --out "$OUT/model" --epochs "$DEMO_EPOCHS"
export SEARCH_EMBEDDING_MODEL="$OUT/model"

step "3/9 tune the fusion weights on the tuning shop"
in_shop tune evaluate_search --catalog "$OUT/tune/catalog" --tune-weights "$WEIGHT_SETS" --report "$OUT/tune/report"
export "$(cat "$OUT/tune/report/weights.env")"

step "4/9 measure the held-out shop before fine-tuning ($SEARCH_FUSION_WEIGHTS)"
in_shop heldout evaluate_search --catalog "$OUT/heldout/catalog" --report "$OUT/heldout/before"

step "5/9 simulated shoppers search and click in the tuning shop"
in_shop tune simulate_shoppers --queries "$OUT/tune/catalog/queries.jsonl" --sessions "$SESSIONS" --seed "$TUNE_SEED"
in_shop tune export_clicks --kind triplets --out "$OUT/clicks/triplets.jsonl"

step "6/9 fine-tune the text tower on those clicks"
"$PY" manage.py finetune_model --data "$OUT/clicks/triplets.jsonl" --out "$OUT/model-finetuned" \
    --epochs "$FINETUNE_EPOCHS" --train text
export SEARCH_EMBEDDING_MODEL="$OUT/model-finetuned"

step "7/9 re-tune the fusion weights for the fine-tuned model on the tuning shop"
in_shop tune evaluate_search --catalog "$OUT/tune/catalog" --tune-weights "$WEIGHT_SETS" \
    --report "$OUT/tune/report-finetuned"
export "$(cat "$OUT/tune/report-finetuned/weights.env")"

step "8/9 re-embed the held-out shop with the fine-tuned model"
in_shop heldout index_products --all

step "9/9 measure the held-out shop after fine-tuning ($SEARCH_FUSION_WEIGHTS)"
in_shop heldout evaluate_search --catalog "$OUT/heldout/catalog" --baseline "$OUT/heldout/before/report.json" \
    --report "$OUT/heldout/after"

printf '\n=== Held-out shop, before fine-tuning (%s)\n\n' "$OUT/heldout/before/report.md"
cat "$OUT/heldout/before/report.md"
printf '\n=== Held-out shop, after fine-tuning (%s)\n\n' "$OUT/heldout/after/report.md"
cat "$OUT/heldout/after/report.md"
