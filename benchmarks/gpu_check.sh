#!/usr/bin/env bash
# The GPU check: bl2's own numbers on the first GPU it meets, in one command (at most ~8 minutes on one GPU).
#
#   benchmarks/gpu_check.sh [--device cuda] [--preset 16m] [--out DIR]
#   benchmarks/gpu_check.sh --device cpu --preset debug        # what the test suite runs, so it cannot rot
#
# On the built-in sample corpus (no download), it trains two teachers for a few steps, then prints:
#   1. the bl2 CE step and the from-cache step (RAM and streamed) against a Hugging Face Trainer CE step
#      (bf16 on CUDA), and online distillation (benchmarks/bench_distill.py, side by side);
#   2. peak accelerator memory of distillation from the cache against CE-only and against online distillation
#      with live teachers (the claim that teachers never occupy accelerator memory, as a number);
#   3. the fused output layer + loss against HF's, at each chunk size and at the one bl2 measures on this device;
#   4. cache-logits tokens/s against a bare forward pass of one teacher over the same windows;
#   5. zero-shot items/s (`bl2 eval zero-shot`, first items of each fast-set file) when the BabyLM evaluation
#      data is beside the repository (../shared/data/babylm_eval_2025).
# Everything is written under --out (default: a temporary folder), the numbers to OUT/gpu_check.json.
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=cuda PRESET=16m OUT="" STEPS=20 WINDOWS=256 BENCH_STEPS=6 LIMIT=40
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE=$2; shift 2 ;;
    --preset) PRESET=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;          # teacher training steps
    --windows) WINDOWS=$2; shift 2 ;;      # windows cached and forwarded
    --bench-steps) BENCH_STEPS=$2; shift 2 ;;  # measured training steps per configuration
    --limit) LIMIT=$2; shift 2 ;;          # zero-shot items per file
    *) echo "error: unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
PY=${PY:-.venv/bin/python}
BL2=("$PY" -m bl2)
OUT=${OUT:-$(mktemp -d -t bl2-gpu-check.XXXX)}
mkdir -p "$OUT"
VOCAB=$([ "$PRESET" = debug ] && echo 1000 || echo 16000)
BATCH=$([ "$PRESET" = debug ] && echo 8 || echo 32)
EVAL=${EVAL:-../shared/data/babylm_eval_2025}
log() { printf '\n=== %s  %s\n' "$(date +%H:%M:%S)" "$*"; }

log "sample corpus -> DATA (vocab $VOCAB)"
[ -d "$OUT/sample" ] || "$PY" -c "import sys; from bl2.data.sample import write_sample_corpus as w; \
w(sys.argv[1], n_train_lines=4000, n_dev_lines=400)" "$OUT/sample"
[ -d "$OUT/data" ] || "${BL2[@]}" prepare "$OUT/sample/corpus" --dev "$OUT/sample/dev" --out "$OUT/data" \
  --vocab-size "$VOCAB" > "$OUT/prepare.log"

log "two $PRESET teachers, $STEPS steps each"
for s in 0 1; do
  [ -f "$OUT/teacher$s/model.safetensors" ] || "${BL2[@]}" pretrain --data "$OUT/data" --preset "$PRESET" \
    --seed "$s" --max-steps "$STEPS" --batch-size "$BATCH" --device "$DEVICE" --out "$OUT/teacher$s" --overwrite \
    > "$OUT/teacher$s.log"
done
TEACHERS="$OUT/teacher0,$OUT/teacher1"

log "cache-logits (top-64) against bare teacher forwards"
"$PY" benchmarks/gpu_check_parts.py cache --data "$OUT/data" --teachers "$TEACHERS" --out "$OUT/cache.zarr" \
  --windows "$WINDOWS" --batch-size "$BATCH" --device "$DEVICE" > "$OUT/cache.json"
cat "$OUT/cache.json"

log "training steps: Trainer CE, bl2 CE, from the cache (RAM, streamed), online"
"$PY" benchmarks/bench_distill.py --data "$OUT/data" --teachers "$TEACHERS" --cache "$OUT/cache.zarr" \
  --preset "$PRESET" --device "$DEVICE" --batch-size "$BATCH" --steps "$BENCH_STEPS" --warmup 2 --repeats 1 \
  --out-json "$OUT/bench_distill.json"

log "the fused output layer + loss against HF's at each chunk size, and the one bl2 measures here"
HIDDEN=$("$PY" -c "from bl2.model.presets import PRESETS; print(PRESETS['$PRESET'].hidden)")
CHUNKS=$([ "$DEVICE" = cpu ] && echo 20,22,24,auto || echo 22,24,26,27,auto)
"$PY" benchmarks/bench_loss_chunk.py --hidden "$HIDDEN" --vocab "$VOCAB" --positions $((BATCH * 128)) \
  --chunks "$CHUNKS" --repeats 5 --device "$DEVICE" --out-json "$OUT/loss_chunk.json"

if [ -d "$EVAL/fast_eval" ]; then
  log "zero-shot items/s (first $LIMIT items of each fast-set file)"
  "${BL2[@]}" eval zero-shot "$OUT/teacher0" --data-dir "$EVAL" --set fast --tasks blimp,ewok,entity_tracking \
    --limit "$LIMIT" --zip-password "${BL2_EVAL_ZIP_PASSWORD:-BabyLM2025}" --device "$DEVICE" --out "$OUT/zero_shot.json" \
    --overwrite > "$OUT/zero_shot.log"
fi

"$PY" benchmarks/gpu_check_parts.py summary --out "$OUT"
