#!/usr/bin/env bash
# The click calibration before and after propensity weighting (docs/quality.md, "Online
# experiments"): the quality chain's tuning shop (seed 101) and held-out shop (seed 202), 1,500
# products, 15%/15% missing, 200 queries each. Simulated shoppers click in the tuning shop, once
# SESSIONS_PLAIN sessions without swaps and once SESSIONS sessions with SWAP of the searches
# swapped; a calibration is fitted on each click log alone (the swapped one with and without
# the propensities) and measured on the held-out shop against the default (no calibration).
#   SEARCH_EMBEDDING_MODEL=<demo model> OUT=var/click-calibration benchmarks/click_calibration.sh
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=${OUT:-var/click-calibration}
SESSIONS=${SESSIONS:-20000}
SESSIONS_PLAIN=${SESSIONS_PLAIN:-3000}
SWAP=${SWAP:-0.5}
in_shop() { local world=$1; shift; env -u DATABASE_URL -u QDRANT_PATH SHOP_SEARCH_VAR_DIR="$OUT/$world" \
    SEARCH_FUSION_CALIBRATION="${CALIBRATION:-off}" LOG_LEVEL=WARNING "$PY" manage.py "$@"; }
measure() {  # calibration file, report name
    CALIBRATION="$1" in_shop heldout/var evaluate_search --catalog "$OUT/heldout/catalog" \
        --strategies normalized --baseline "$OUT/heldout/default/report.json" --report "$OUT/heldout/$2"
}
mkdir -p "$OUT"
for shop in tune:101 heldout:202; do
    name=${shop%%:*} seed=${shop##*:}
    [[ -f "$OUT/$name/catalog/catalog.jsonl" ]] || "$PY" manage.py generate_catalog "$OUT/$name/catalog" \
        --products 1500 --seed "$seed" --missing-image 0.15 --missing-description 0.15 --queries 200
done
in_shop heldout/var migrate --noinput -v0
[[ -f "$OUT/heldout/default/report.json" ]] || in_shop heldout/var evaluate_search --catalog "$OUT/heldout/catalog" \
    --strategies normalized --report "$OUT/heldout/default"
for variant in plain swapped; do
    world=tune/var-$variant swap=0 sessions=$SESSIONS_PLAIN
    [[ $variant == swapped ]] && swap=$SWAP sessions=$SESSIONS
    rm -rf "${OUT:?}/$world"
    in_shop "$world" migrate --noinput -v0
    in_shop "$world" evaluate_search --catalog "$OUT/tune/catalog" --strategies normalized --verbosity 0 \
        --report "$OUT/tune/report-$variant"   # imports and embeds the shop
    SEARCH_SWAP_PROBABILITY=$swap in_shop "$world" simulate_shoppers --queries "$OUT/tune/catalog/queries.jsonl" \
        --sessions "$sessions" --seed 101
    rm -f "$OUT/cal-$variant.json"
    CALIBRATION="$OUT/cal-$variant.json" in_shop "$world" calibrate_fusion | tee "$OUT/cal-$variant.txt"
    measure "$OUT/cal-$variant.json" "clicks-$variant"
done
rm -f "$OUT/cal-unweighted.json"
CALIBRATION="$OUT/cal-unweighted.json" in_shop tune/var-swapped calibrate_fusion --no-weighing | tee "$OUT/cal-unweighted.txt"
measure "$OUT/cal-unweighted.json" clicks-swapped-unweighted
for report in default clicks-plain clicks-swapped-unweighted clicks-swapped; do
    printf '\n=== %s\n' "$report"
    grep -E "^\| normalized \| [0-9+-]" "$OUT/heldout/$report/report.md" | head -2
done
