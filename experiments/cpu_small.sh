#!/usr/bin/env bash
# The paper's central claims at CPU scale (issue: "Reproduce the paper's central claims at CPU scale").
# tiny preset (5.1M params), vocab 16000, on a subset of ../shared/data (the first FRACTION of the lines of every
# train and dev file). 3 teachers; students distilled through the cache (topk k=64) from 1, 2 and 3 teachers;
# the direct ensemble of 2 teachers; topk vs sample vs full at equal steps; --kl-reduction sequence vs token.
# Rerunnable: finished steps are skipped, interrupted training resumes from its newest checkpoint.
#
#   experiments/cpu_small.sh                 # ~2 h on 2 CPU cores; writes experiments/out/cpu_small/
#   OUT=/tmp/x FRACTION=0.01 EPOCHS=1 SUBSET_WINDOWS=32 BLIMP_LIMIT=5 experiments/cpu_small.sh   # a smoke run
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared/data}
OUT=${OUT:-experiments/out/cpu_small}
FRACTION=${FRACTION:-0.12}      # of the lines of every train and dev file
EPOCHS=${EPOCHS:-8}             # the paper's (345m) epoch count; same for teachers and students
PRESET=${PRESET:-tiny}
VOCAB=${VOCAB:-16000}
SUBSET_WINDOWS=${SUBSET_WINDOWS:-1024}   # windows of the topk/sample/full comparison (a full cache is 4 MB/window)
BLIMP_LIMIT=(${BLIMP_LIMIT:+--limit "$BLIMP_LIMIT"})  # pairs per subtask (default: all; smoke runs: a few)
BL2=${BL2:-.venv/bin/bl2}
PY=${PY:-.venv/bin/python}
TRAIN=(--preset "$PRESET" --epochs "$EPOCHS" --batch-size 32 --device cpu --log-every-steps 25)
mkdir -p "$OUT"/{eval,runs}
log() { printf '\n=== %s  %s\n' "$(date +%H:%M:%S)" "$*"; }
done_run() { [ -f "$1/model.safetensors" ] && grep -q '"event": "done"' "$1/metrics.jsonl" 2>/dev/null; }
resume_flag() { [ -d "$1" ] && echo --resume || true; }
SECONDS=0

log "subset corpus (first $FRACTION of every file's lines)"
if [ ! -d "$OUT/corpus" ]; then
  "$PY" - "$SHARED" "$OUT" "$FRACTION" <<'PYEOF'
import math, sys
from pathlib import Path
shared, out, frac = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
for src, dst, suffix in [("babylm_10M", "corpus", ".train"), ("babylm_dev", "dev", ".dev")]:
    (out / dst).mkdir(parents=True, exist_ok=True)
    for f in sorted((shared / src).glob("*" + suffix)):
        lines = f.read_text(encoding="utf-8").splitlines(keepends=True)
        (out / dst / f.name).write_text("".join(lines[: math.ceil(frac * len(lines))]), encoding="utf-8")
PYEOF
fi
[ -d "$OUT/data" ] || "$BL2" prepare "$OUT/corpus" --dev "$OUT/dev" --out "$OUT/data" --vocab-size "$VOCAB"
DATA="$OUT/data"

for s in 0 1 2; do
  T="$OUT/runs/teacher$s"
  log "teacher $s"
  done_run "$T" || "$BL2" pretrain --data "$DATA" --out "$T" --seed "$s" "${TRAIN[@]}" $(resume_flag "$T")
done
T0="$OUT/runs/teacher0"; T1="$OUT/runs/teacher1"; T2="$OUT/runs/teacher2"

cache() {  # cache NAME TEACHERS [cache-logits options...]
  local name=$1 teachers=$2; shift 2
  log "cache $name"
  "$BL2" cache-logits --data "$DATA" --teachers "$teachers" --out "$OUT/$name.zarr" --device cpu "$@"
}
cache topk1 "$T0" --k 64
cache topk2 "$T0,$T1" --k 64
cache topk3 "$T0,$T1,$T2" --k 64
cache sample2 "$T0,$T1" --mode sample --n-draws 50
cache sub_topk2 "$T0,$T1" --k 64 --max-windows "$SUBSET_WINDOWS"
cache sub_sample2 "$T0,$T1" --mode sample --n-draws 50 --max-windows "$SUBSET_WINDOWS"
cache sub_full2 "$T0,$T1" --mode full --max-windows "$SUBSET_WINDOWS"

student() {  # student NAME CACHE [distill options...]
  local name=$1 c=$2; shift 2
  local S="$OUT/runs/$name"
  log "student $name"
  done_run "$S" || "$BL2" distill --cache "$OUT/$c.zarr" --data "$DATA" --out "$S" --seed 10 "${TRAIN[@]}" \
    --alpha 0.5 --temperature 1 "$@" $(resume_flag "$S")
}
student student1 topk1
student student2 topk2
student student3 topk3
student student2_sample sample2
student student2_token topk2 --kl-reduction token
for m in topk2 sample2 full2; do student "sub_student_$m" "sub_$m"; done
# a no-distillation baseline on the same subset windows, for the comparison above
S="$OUT/runs/sub_ce"
log "CE-only on the subset windows"
done_run "$S" || "$BL2" distill --cache "$OUT/sub_topk2.zarr" --data "$DATA" --out "$S" --seed 10 "${TRAIN[@]}" \
  --alpha 1 $(resume_flag "$S")

log "eval loss (test split)"
MODELS=(teacher0 teacher1 teacher2 student1 student2 student3 student2_sample student2_token
        sub_student_topk2 sub_student_sample2 sub_student_full2 sub_ce)
for m in "${MODELS[@]}"; do
  [ -f "$OUT/eval/loss_$m.json" ] || "$BL2" eval loss "$OUT/runs/$m" --data "$DATA" --split test --device cpu \
    --out "$OUT/eval/loss_$m.json"
done
[ -f "$OUT/eval/loss_ens2.json" ] || "$BL2" eval loss "$T0,$T1" --data "$DATA" --split test --device cpu \
  --out "$OUT/eval/loss_ens2.json"

log "eval blimp (filtered + supplement, all pairs)"
for m in "${MODELS[@]}"; do
  [ -f "$OUT/eval/blimp_$m.json" ] || "$BL2" eval blimp "$OUT/runs/$m" --data-dir "$SHARED" --suite all \
    --device cpu "${BLIMP_LIMIT[@]}" --out "$OUT/eval/blimp_$m.json"
done
[ -f "$OUT/eval/blimp_ens2.json" ] || "$BL2" eval blimp "$T0,$T1" --data-dir "$SHARED" --suite all --no-members \
  --device cpu "${BLIMP_LIMIT[@]}" --out "$OUT/eval/blimp_ens2.json"

log "summary"
"$PY" experiments/summarize.py "$OUT" | tee "$OUT/summary.md"
echo "wall time: $((SECONDS / 60)) min" | tee -a "$OUT/summary.md"
