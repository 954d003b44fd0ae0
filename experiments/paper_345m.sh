#!/usr/bin/env bash
# BabyLlama-2 at the paper's scale: two SmolLlama-345M teachers (8 epochs, batch 128, lr 7e-4), their top-64
# cache, the 345M student (alpha 0.5, T 1, 8 epochs), the zero-shot suite, fine-tuning and the report, on one GPU
# node. Options and resuming: experiments/paper_recipe.sh. `--dry-run` prints the plan and its BabyLM budget.
exec env PRESET=345m EPOCHS=8 BATCH=128 LR=7e-4 OUT="${OUT:-experiments/out/paper_345m}" \
  "$(dirname "$0")/paper_recipe.sh" "$@"
