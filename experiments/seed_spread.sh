#!/usr/bin/env bash
# Seed spread at quickstart scale (issue #17, EXPERIMENTS.md section 3): is the distilled student's advantage
# larger than what changing the seed alone does? The built-in sample corpus with `bl2 quickstart`'s defaults
# (tiny preset, vocab 2000, 8000 sample lines, 12 epochs, batch 32, lr 3e-3, topk k=64, alpha 0.5, T 1):
#   - 3 teachers: `bl2 pretrain`, seeds 0, 1, 2 (seeds 0 and 1 are the quickstart's teachers);
#   - one 2-teacher cache of teachers 0 + 1 (the quickstart's);
#   - 3 students distilled from that cache, seeds 2, 3, 4 (seed 2 is the quickstart's student);
#   - 3 CE-only baselines with the students' budget: the same cache windows, steps and seeds, alpha = 1;
#   - the direct ensemble of teachers 0 + 1;
# then `bl2 eval loss` (test and val) and `bl2 eval blimp` (the built-in minimal pairs, all 1,250) of each, and
# `bl2 report` over everything. Teacher 2 is in no cache, so its role would be "baseline (pretrained)": --group
# puts it with the teachers. Rerunnable: finished runs and evaluations are skipped.
#
#   experiments/seed_spread.sh            # ~10 min on 2 idle CPU cores; writes experiments/out/seed_spread/
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-experiments/out/seed_spread}
BL2=${BL2:-.venv/bin/bl2}
PY=${PY:-.venv/bin/python}
TRAIN=(--preset tiny --epochs 12 --batch-size 32 --lr 3e-3 --log-every-steps 25 --ckpt-every-steps 10000 --device cpu)
mkdir -p "$OUT"/{eval,runs}
log() { printf '\n=== %s  %s\n' "$(date +%H:%M:%S)" "$*"; }
done_run() { [ -f "$1/model.safetensors" ] && grep -q '"event": "done"' "$1/metrics.jsonl" 2>/dev/null; }
fresh() { if [ -d "$1" ] && ! done_run "$1"; then echo --overwrite; fi; }  # an unfinished run starts over
SECONDS=0

log "built-in sample corpus (the quickstart's: 8000 train lines, 800 dev lines) and minimal pairs"
[ -d "$OUT/sample/corpus" ] || "$PY" - "$OUT/sample" <<'PYEOF'
import sys
from bl2.data.sample import write_sample_corpus, write_sample_pairs
write_sample_corpus(sys.argv[1], n_train_lines=8000, n_dev_lines=800)
write_sample_pairs(sys.argv[1])
PYEOF
[ -d "$OUT/data" ] || "$BL2" prepare "$OUT/sample/corpus" --dev "$OUT/sample/dev" --out "$OUT/data" --vocab-size 2000
DATA="$OUT/data"

for s in 0 1 2; do
  T="$OUT/runs/teacher$s"
  log "teacher $s"
  done_run "$T" || "$BL2" pretrain --data "$DATA" --out "$T" --seed "$s" "${TRAIN[@]}" $(fresh "$T")
done
CACHE="$OUT/cache.zarr"
log "cache of teachers 0 + 1"
"$BL2" cache-logits --data "$DATA" --teachers "$OUT/runs/teacher0,$OUT/runs/teacher1" --out "$CACHE" --k 64 \
  --temperatures 1 --device cpu
for s in 2 3 4; do
  S="$OUT/runs/student$s"
  log "student seed $s"
  done_run "$S" || "$BL2" distill --cache "$CACHE" --data "$DATA" --out "$S" --seed "$s" --alpha 0.5 \
    --temperature 1 "${TRAIN[@]}" $(fresh "$S")
  B="$OUT/runs/baseline$s"
  log "CE-only baseline seed $s"
  done_run "$B" || "$BL2" distill --cache "$CACHE" --data "$DATA" --out "$B" --seed "$s" --alpha 1 \
    "${TRAIN[@]}" $(fresh "$B")
done

log "eval loss (test; the ensemble also on val, for Figure 2) and eval blimp (built-in pairs)"
evaluate() {  # evaluate NAME DIRS [eval blimp options...]
  local name=$1 dirs=$2; shift 2
  [ -f "$OUT/eval/loss_$name.json" ] || "$BL2" eval loss "$dirs" --data "$DATA" --split test --device cpu \
    --out "$OUT/eval/loss_$name.json"
  [ -f "$OUT/eval/blimp_$name.json" ] || "$BL2" eval blimp "$dirs" --data-dir "$OUT/sample" --suite filtered \
    --device cpu --out "$OUT/eval/blimp_$name.json" "$@"
}
for m in teacher0 teacher1 teacher2 student2 student3 student4 baseline2 baseline3 baseline4; do
  evaluate "$m" "$OUT/runs/$m"
done
evaluate ensemble "$OUT/runs/teacher0,$OUT/runs/teacher1" --no-members
[ -f "$OUT/eval/val_ensemble.json" ] || "$BL2" eval loss "$OUT/runs/teacher0,$OUT/runs/teacher1" --data "$DATA" \
  --split val --device cpu --out "$OUT/eval/val_ensemble.json"

log "report"
"$BL2" report "$OUT/runs" --evals "$OUT/eval" --cache "$CACHE" --group "$OUT/runs/teacher2=teachers" \
  --out "$OUT/report" --overwrite
echo "wall time: $((SECONDS / 60)) min $((SECONDS % 60)) s"
