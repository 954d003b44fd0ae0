#!/usr/bin/env bash
# The paper's Appendix B at 16M parameters ("fully trained in a few minutes" on a GPU): two 16m teachers, their
# top-64 cache, the 16m student, the zero-shot suite, fine-tuning and the report. Same options as
# experiments/paper_recipe.sh (--dry-run, --compliant, --gpus N, --corpus/--dev/--eval/--out).
exec env PRESET=16m EPOCHS=8 BATCH=128 LR=7e-4 OUT="${OUT:-experiments/out/paper_16m}" \
  "$(dirname "$0")/paper_recipe.sh" "$@"
