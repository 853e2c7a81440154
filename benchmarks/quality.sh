#!/usr/bin/env bash
# The offline quality chain behind `make quality`:
#   the grid (seeds x missing-field rates): every cell a generated shop of its own, measured with
#     the default settings and the fusion calibration cross-fitted on its own labelled queries;
#   tune    (seed TUNE_SEED):    the demo model's image tower is trained here, and simulated
#                                shoppers click here; both towers are fine-tuned on those clicks;
#   heldout (seed HELDOUT_SEED): only ever measured, before and after fine-tuning.
# Each shop has its own SQLite database and Qdrant folder, so none sees another's products.
# What does not change between runs is kept in QUALITY_DIR (default var/quality) and reused: the
# generated catalogs and their drawn images, the demo model (trained again only when its
# parameters change), and each shop's store of embeddings for a model (encoded once).
# QUALITY_FRESH=1 starts from nothing.
set -euo pipefail

PY=${PY:-.venv/bin/python}
OUT=${QUALITY_DIR:-var/quality}
PRODUCTS=${QUALITY_PRODUCTS:-1500}
QUERIES=${QUALITY_QUERIES:-200}
SESSIONS=${QUALITY_SESSIONS:-3000}
TUNE_SEED=${TUNE_SEED:-101}
HELDOUT_SEED=${HELDOUT_SEED:-202}
GRID_SEEDS=${GRID_SEEDS:-301,302,303}
GRID_RATES=${GRID_RATES:-0.05,0.15,0.3,0.5}
FIRST_DAY_MIXES=${FIRST_DAY_MIXES:-0.3/0.3,0.5/0.05,0.05/0.5}
DEMO_EPOCHS=${DEMO_EPOCHS:-6}
FINETUNE_EPOCHS=${FINETUNE_EPOCHS:-2}
FINETUNE_TRAIN=${FINETUNE_TRAIN:-all}
FINETUNE_LR=${FINETUNE_LR:-5e-5}
START=$SECONDS

step() { printf '\n=== %s (%d s so far)\n' "$*" "$((SECONDS - START))"; }
# manage.py in one embedded world (SQLite + Qdrant Edge + in-process tasks) under $OUT/$1, default
# settings; a shop has one per model (a store of embeddings)
in_shop() {
    local world=$1
    shift
    env -u DATABASE_URL -u CELERY_BROKER_URL -u QDRANT_URL -u QDRANT_PATH -u SEARCH_FUSION_WEIGHTS \
        SHOP_SEARCH_VAR_DIR="$OUT/$world" SEARCH_FUSION_CALIBRATION="${CALIBRATION:-off}" LOG_LEVEL=WARNING \
        "$PY" manage.py "$@"
}
# generate a shop's catalog unless the same parameters made the one there
catalog() {
    local shop=$1 seed=$2 params="products=$PRODUCTS seed=$2 missing=0.15/0.15 queries=$QUERIES"
    if [[ "$(cat "$OUT/$shop/catalog/params" 2>/dev/null)" != "$params" ]]; then
        rm -rf "$OUT/$shop"
        "$PY" manage.py generate_catalog "$OUT/$shop/catalog" --products "$PRODUCTS" --seed "$seed" \
            --missing-image 0.15 --missing-description 0.15 --queries "$QUERIES"
        echo "$params" > "$OUT/$shop/catalog/params"
    fi
}

[[ "${QUALITY_FRESH:-0}" == 1 ]] && rm -rf "$OUT"
mkdir -p "$OUT"
# what each run makes again: the clicks, the fine-tuned model and the shops' stores of it
rm -rf "$OUT/clicks" "$OUT/model-finetuned" "$OUT"/tune/var-* "$OUT/heldout/var-finetuned" "$OUT"/heldout/after*

step "1/8 the tuning shop (seed $TUNE_SEED) and the held-out shop (seed $HELDOUT_SEED)"
catalog tune "$TUNE_SEED"
catalog heldout "$HELDOUT_SEED"

step "2/8 the offline two-tower model's image tower, trained on the tuning shop"
demo="catalog=$OUT/tune/catalog epochs=$DEMO_EPOCHS products=$PRODUCTS seed=$TUNE_SEED"
if [[ "$(cat "$OUT/model/params" 2>/dev/null)" != "$demo" ]]; then
    rm -rf "$OUT/model" "$OUT/heldout/var-base"
    "$PY" manage.py train_demo_model --catalog "$OUT/tune/catalog" --out "$OUT/model" --epochs "$DEMO_EPOCHS"
    echo "$demo" > "$OUT/model/params"
else
    echo "kept: $OUT/model (same catalog and epochs)"
fi
export SEARCH_EMBEDDING_MODEL="$OUT/model"

step "3/8 the grid: seeds $GRID_SEEDS x missing-field rates $GRID_RATES, default settings"
"$PY" manage.py evaluate_grid --out "$OUT/grid" --seeds "$GRID_SEEDS" --rates "$GRID_RATES" \
    --products "$PRODUCTS" --queries "$QUERIES"

step "3b/8 a shop's first day (no labels, no clicks): what each word query matches, seeds $GRID_SEEDS x missing ${FIRST_DAY_MIXES}"
"$PY" manage.py evaluate_grid --out "$OUT/grid-first-day" --seeds "$GRID_SEEDS" --mixes "$FIRST_DAY_MIXES" --folds 0 \
    --products "$PRODUCTS" --queries "$QUERIES"

step "4/8 the held-out shop before fine-tuning (calibration cross-fitted on its queries)"
in_shop heldout/var-base migrate --noinput --verbosity 0
in_shop heldout/var-base evaluate_search --catalog "$OUT/heldout/catalog" --cross-fit 2 --report "$OUT/heldout/before"

step "5/8 simulated shoppers search and click in the tuning shop"
in_shop tune/var-base migrate --noinput --verbosity 0
in_shop tune/var-base evaluate_search --catalog "$OUT/tune/catalog" --strategies normalized --verbosity 0 \
    --report "$OUT/tune/report"   # imports and embeds the shop
in_shop tune/var-base simulate_shoppers --queries "$OUT/tune/catalog/queries.jsonl" --sessions "$SESSIONS" \
    --seed "$TUNE_SEED"
in_shop tune/var-base export_clicks --kind triplets --out "$OUT/clicks/triplets.jsonl"

step "6/8 fine-tune both towers ($FINETUNE_TRAIN) on those clicks"
"$PY" manage.py finetune_model --data "$OUT/clicks/triplets.jsonl" --out "$OUT/model-finetuned" \
    --epochs "$FINETUNE_EPOCHS" --train "$FINETUNE_TRAIN" --lr "$FINETUNE_LR" --batch-size 32 --grad-accum 2
export SEARCH_EMBEDDING_MODEL="$OUT/model-finetuned"

step "7/8 the held-out shop after fine-tuning, calibration cross-fitted on its own queries"
in_shop heldout/var-finetuned migrate --noinput --verbosity 0
in_shop heldout/var-finetuned evaluate_search --catalog "$OUT/heldout/catalog" --cross-fit 2 \
    --baseline "$OUT/heldout/before/report.json" --report "$OUT/heldout/after"

step "8/8 the fine-tuned model calibrated on the tuning shop (calibrate_fusion), measured on the held-out shop"
in_shop tune/var-base index_products --all   # the tuning shop's store of the fine-tuned model
for evidence in clicks labels; do
    if [[ $evidence == clicks ]]; then fit=(); else fit=(--queries "$OUT/tune/catalog/queries.jsonl" --no-clicks); fi
    CALIBRATION=auto in_shop tune/var-base calibrate_fusion "${fit[@]}"
    CALIBRATION=auto in_shop heldout/var-finetuned evaluate_search --catalog "$OUT/heldout/catalog" \
        --strategies normalized,text --baseline "$OUT/heldout/before/report.json" --report "$OUT/heldout/after-$evidence"
done

printf '\n=== The grid (%s)\n\n' "$OUT/grid/grid.md"
cat "$OUT/grid/grid.md"
printf '\n=== A shop'"'"'s first day (%s)\n\n' "$OUT/grid-first-day/grid.md"
cat "$OUT/grid-first-day/grid.md"
printf '\n=== Held-out shop, before fine-tuning (%s)\n\n' "$OUT/heldout/before/report.md"
cat "$OUT/heldout/before/report.md"
printf '\n=== Held-out shop, after fine-tuning (%s)\n\n' "$OUT/heldout/after/report.md"
cat "$OUT/heldout/after/report.md"
for evidence in clicks labels; do
    printf '\n=== Held-out shop, after fine-tuning, calibrated on the tuning shop'"'"'s %s (%s)\n\n' "$evidence" \
        "$OUT/heldout/after-$evidence/report.md"
    cat "$OUT/heldout/after-$evidence/report.md"
done
printf '\n=== %d s in all\n' "$((SECONDS - START))"
