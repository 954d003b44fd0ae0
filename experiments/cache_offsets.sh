#!/usr/bin/env bash
# How many cached alignments does a multi-epoch student need? (issue #29, EXPERIMENTS.md section 8)
# A cache fixes its windows; pretraining (and the reference's distillation) draws a fresh offset every epoch.
# At quickstart scale (the models of experiments/seed_spread.sh: tiny, vocab 2000, 12 epochs of batch 32):
#   - caches of teachers 0 + 1, topk k = 64, with --offsets 1, 2, 4, 8 (epoch e reads alignment e mod N);
#     seed_spread's own cache is the offsets-1 one and its students 2-4 are this experiment's offsets-1 students;
#   - students (alpha 0.5, T 1, seeds 2, 3, 4) from the offsets 2, 4, 8 caches;
#   - online distillation from the live teachers (full distribution), seeds 2, 3, 4: on the cache's fixed windows
#     and with --fresh-offsets (the reference's regime, which no cache can hold);
#   - CE-only (alpha 1) from the offsets-8 cache, seeds 2, 3, 4, against seed_spread's alpha-1 baselines
#     (offsets 1) and its teachers (pretraining, fresh offsets): is the 0.054-nat gap of section 3 the windows?
# then `bl2 eval loss --split test` of each and a summary table (bytes, teacher windows, test/val CE).
# Rerunnable: finished caches, runs and evaluations are skipped.
#
#   experiments/seed_spread.sh && experiments/cache_offsets.sh     # ~30 min on 2 idle CPU cores
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=${SRC:-experiments/out/seed_spread}
OUT=${OUT:-experiments/out/cache_offsets}
BL2=${BL2:-.venv/bin/bl2}
PY=${PY:-.venv/bin/python}
SEEDS=${SEEDS:-2 3 4}
TRAIN=(--preset tiny --epochs 12 --batch-size 32 --lr 3e-3 --log-every-steps 50 --ckpt-every-steps 10000 --device cpu)
DATA="$SRC/data"
TEACHERS="$SRC/runs/teacher0,$SRC/runs/teacher1"
mkdir -p "$OUT"/{runs,eval}
log() { printf '\n=== %s  %s\n' "$(date +%H:%M:%S)" "$*"; }
done_run() { [ -f "$1/model.safetensors" ] && grep -q '"event": "done"' "$1/metrics.jsonl" 2>/dev/null; }
fresh() { if [ -d "$1" ] && ! done_run "$1"; then echo --overwrite; fi; }
[ -f "$SRC/runs/student4/model.safetensors" ] || { echo "run experiments/seed_spread.sh first (SRC=$SRC)" >&2; exit 2; }
SECONDS=0

for n in 2 4 8; do
  C="$OUT/cache_o$n.zarr"
  log "cache --offsets $n"
  if [ ! -f "$OUT/cache_o$n.seconds" ]; then
    t0=$SECONDS
    "$BL2" cache-logits --data "$DATA" --teachers "$TEACHERS" --out "$C" --k 64 --temperatures 1 --offsets "$n" \
      --device cpu --overwrite
    echo $((SECONDS - t0)) > "$OUT/cache_o$n.seconds"
  fi
done
student() {  # student NAME [distill options...]
  local r="$OUT/runs/$1"; shift
  log "$(basename "$r")"
  done_run "$r" || "$BL2" distill --out "$r" "$@" "${TRAIN[@]}" $(fresh "$r")
}
cached() { student "o${1}_student$2" --cache "$OUT/cache_o$1.zarr" --data "$DATA" --seed "$2" --alpha 0.5; }
# the question's two ends first (8 alignments, fresh offsets), then the alpha-1 control, the middle, online fixed
for s in $SEEDS; do
  cached 8 "$s"
  student "online_fresh$s" --teachers "$TEACHERS" --data "$DATA" --seed "$s" --alpha 0.5 --fresh-offsets
done
for s in $SEEDS; do student "o8_baseline$s" --cache "$OUT/cache_o8.zarr" --data "$DATA" --seed "$s" --alpha 1; done
for s in $SEEDS; do  # online on fixed windows: full targets without fresh offsets (separates the two)
  student "online_fixed$s" --teachers "$TEACHERS" --data "$DATA" --seed "$s" --alpha 0.5
  cached 2 "$s"
  cached 4 "$s"
done

log "eval loss --split test"
for r in "$OUT"/runs/*; do
  m=$(basename "$r")
  [ -f "$OUT/eval/loss_$m.json" ] || "$BL2" eval loss "$r" --data "$DATA" --split test --device cpu \
    --out "$OUT/eval/loss_$m.json"
done
log "summary"
"$PY" experiments/cache_offsets_summary.py "$SRC" "$OUT" | tee "$OUT/summary.md"
echo "wall time: $((SECONDS / 60)) min $((SECONDS % 60)) s"
