#!/usr/bin/env bash
# Does distillation beat the sweep's best teacher, and does the best survive re-seeding? (issue #16)
# `tiny` on the quickstart's built-in corpus (8,000 lines, vocab 2000, 12 epochs of batch 32, as `bl2 quickstart`):
#   1. the quickstart's teacher config, seed 0 (the untuned baseline)
#   2. bl2 sweep teachers: TRIALS trials of TPE + Hyperband over experiments/sweep_tiny.yaml (seed 0 for every trial)
#   3. bl2 sweep confirm: the best configuration re-trained with SEEDS new seeds (1..SEEDS)
#   4. a topk-64 cache of two of those re-trained runs (seeds 1, 2), and students distilled from it with the best
#      configuration plus alpha 0.5, T 1 (seeds 10..)
#   5. test CE of everything (eval loss --split test) and the summary (experiments/sweep_summary.py)
# Rerunnable: finished steps are skipped (the sweep continues its study, confirm skips finished seeds).
#
#   experiments/sweep_tiny.sh                                  # ~40 min on 2 CPU cores -> experiments/out/sweep_tiny/
#   OUT=/tmp/x TRIALS=3 EPOCHS=1 SEEDS=2 STUDENTS=1 experiments/sweep_tiny.sh    # a smoke run
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-experiments/out/sweep_tiny}
TRIALS=${TRIALS:-24}
SEEDS=${SEEDS:-3}
STUDENTS=${STUDENTS:-3}
EPOCHS=${EPOCHS:-12}
VAL_EVERY=${VAL_EVERY:-18}   # about one epoch (18 steps of 32 windows): Hyperband's rungs
BL2=${BL2:-.venv/bin/bl2}
PY=${PY:-.venv/bin/python}
FIXED=(--preset tiny --epochs "$EPOCHS" --batch-size 32 --device cpu --log-every-steps 50)
mkdir -p "$OUT"/{runs,eval}
log() { printf '\n=== %s  %s\n' "$(date +%H:%M:%S)" "$*"; }
done_run() { [ -f "$1/model.safetensors" ] && grep -q '"event": "done"' "$1/metrics.jsonl" 2>/dev/null; }
resume_flag() { [ -d "$1" ] && echo --resume || true; }
SECONDS=0

log "data: the quickstart's sample corpus, vocab 2000"
[ -d "$OUT/sample" ] || "$PY" -c "
from bl2.data.sample import write_sample_corpus
write_sample_corpus('$OUT/sample', n_train_lines=8000, n_dev_lines=800)"
[ -d "$OUT/data" ] || "$BL2" prepare "$OUT/sample/corpus" --dev "$OUT/sample/dev" --out "$OUT/data" --vocab-size 2000
DATA="$OUT/data"

log "baseline: the quickstart's teacher config (lr 3e-3), seed 0"
B="$OUT/runs/default"
done_run "$B" || "$BL2" pretrain --data "$DATA" --out "$B" --lr 3e-3 --seed 0 "${FIXED[@]}" $(resume_flag "$B")

log "sweep: $TRIALS trials"
"$BL2" sweep teachers --data "$DATA" --space experiments/sweep_tiny.yaml --trials "$TRIALS" --study "$OUT/sweep" \
  --val-every-steps "$VAL_EVERY" "${FIXED[@]}" > "$OUT/sweep.log" 2>&1
"$BL2" sweep status "$OUT/sweep" --out "$OUT/eval/status.json"

log "confirm: the best configuration with $SEEDS new seeds"
"$BL2" sweep confirm "$OUT/sweep" --seeds "$SEEDS" --device cpu > "$OUT/confirm.log" 2>&1
tail -3 "$OUT/confirm.log"

log "students from a cache of two re-seeded runs of the best configuration"
BEST=$("$PY" -c "import json; print(json.load(open('$OUT/sweep/confirm.json'))['trial'])")
C=$(printf "%s/sweep/confirm/trial-%04d-seed" "$OUT" "$BEST")
"$PY" - "$OUT" <<'PYEOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
best = json.loads((out / "sweep" / "confirm.json").read_text())
cfg = json.loads((out / "sweep" / "trials" / f"trial-{best['trial']:04d}" / "run.json").read_text())["config"]
keep = ["lr", "lr_schedule", "betas", "eps", "warmup_steps", "weight_decay", "grad_clip", "attention_dropout", "val_every_steps"]
(out / "best.yaml").write_text("".join(f"{k}: {json.dumps(cfg[k])}\n" for k in keep))
PYEOF
"$BL2" cache-logits --data "$DATA" --teachers "$C-1,$C-2" --out "$OUT/cache.zarr" --k 64 --device cpu  # resumes; done: no-op
for i in $(seq 1 "$STUDENTS"); do
  S="$OUT/runs/student$i"
  done_run "$S" || "$BL2" distill --cache "$OUT/cache.zarr" --data "$DATA" --out "$S" --config "$OUT/best.yaml" \
    --seed $((9 + i)) --alpha 0.5 --temperature 1 "${FIXED[@]}" $(resume_flag "$S")
done

log "eval loss (test split)"
loss() { [ -f "$OUT/eval/loss_$1.json" ] || "$BL2" eval loss "$2" --data "$DATA" --split test --device cpu \
  --out "$OUT/eval/loss_$1.json" > /dev/null; }
loss default "$B"
loss best "$(printf "%s/sweep/trials/trial-%04d" "$OUT" "$BEST")"
for s in $(seq 1 "$SEEDS"); do loss "confirm$s" "$C-$s"; done
loss ensemble "$C-1,$C-2"
for i in $(seq 1 "$STUDENTS"); do loss "student$i" "$OUT/runs/student$i"; done

log "summary"
"$PY" experiments/sweep_summary.py "$OUT" | tee "$OUT/summary.md"
echo "wall time: $((SECONDS / 60)) min" | tee -a "$OUT/summary.md"
