#!/usr/bin/env bash
# The paper's Figure 3 at CPU scale (issue #29, EXPERIMENTS.md section 7): validation CE against training words
# for two presets, on nested random subsets of the shared corpus (100K, 300K, 1M words and all 2.67M), equal
# epochs. Does the larger model use data better, as the paper found at 16M vs 345M?
#   - DATA dirs: `bl2 prepare --max-words W --subset-seed 0` (each subset inside the next; the tokenizer, val and
#     test splits those of the whole corpus, so every val CE is on the same 166,743 tokens);
#   - `bl2 pretrain`, presets debug (0.5M parameters at vocab 16000, almost all embeddings) and tiny (5.1M), 2
#     epochs, batch 32 x 128, 20 warm-up steps, cosine, the presets' peak lr, seed 0, validation twice an epoch;
#   - `bl2 report` over the runs: Figure 3 analogue (best val CE against the DATA dirs' train words).
# Rerunnable: finished DATA dirs and runs are skipped.
#
#   experiments/data_scaling.sh          # ~60 min on 2 idle CPU cores (tiny on the whole corpus: ~30 min of it)
#   SIZES="100K 300K" PRESETS=debug OUT=/tmp/x experiments/data_scaling.sh     # a smoke run
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-experiments/out/data_scaling}
CORPUS=${CORPUS:-../shared/data/babylm_10M}
DEV=${DEV:-../shared/data/babylm_dev}
SIZES=${SIZES:-100K 300K 1M all}
PRESETS=${PRESETS:-debug tiny}
EPOCHS=${EPOCHS:-2}
BL2=${BL2:-.venv/bin/bl2}
mkdir -p "$OUT/runs"
log() { printf '\n=== %s  %s\n' "$(date +%H:%M:%S)" "$*"; }
done_run() { [ -f "$1/model.safetensors" ] && grep -q '"event": "done"' "$1/metrics.jsonl" 2>/dev/null; }
fresh() { if [ -d "$1" ] && ! done_run "$1"; then echo --overwrite; fi; }
# validation twice an epoch: ~words / 0.708 words per token / 4096 tokens per step / 2
val_every() { case $1 in 100K) echo 17;; 300K) echo 50;; 1M) echo 170;; *) echo 420;; esac; }
SECONDS=0

for w in $SIZES; do
  D="$OUT/data_$w"
  [ "$w" = all ] && MAX=() || MAX=(--max-words "$w" --subset-seed 0)
  log "DATA dir: $w words"
  grep -qs '"splits"' "$D/tokens.zarr/zarr.json" || "$BL2" prepare "$CORPUS" --dev "$DEV" \
    --out "$D" "${MAX[@]}" $([ -d "$D" ] && echo --overwrite)
done
for w in $SIZES; do  # size by size, so that an interrupted run still has both presets on the smaller sizes
  for p in $PRESETS; do
    R="$OUT/runs/${p}_$w"
    log "pretrain $p on $w words"
    done_run "$R" || "$BL2" pretrain --data "$OUT/data_$w" --out "$R" --preset "$p" --epochs "$EPOCHS" \
      --batch-size 32 --warmup-steps 20 --seed 0 --val-every-steps "$(val_every "$w")" --ckpt-every-steps 100000 \
      --log-every-steps 100 --device cpu $(fresh "$R")
  done
done
log "report"
"$BL2" report "$OUT/runs" --out "$OUT/report" --overwrite
echo "wall time: $((SECONDS / 60)) min $((SECONDS % 60)) s"
