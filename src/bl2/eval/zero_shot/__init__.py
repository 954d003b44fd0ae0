"""The BabyLM 2025 zero-shot suite (BLiMP, supplement, EWoK, entity tracking, WUG, COMPS, reading), scored as the
official pipeline scores a causal model: tasks.py reads the data, scoring.py computes completion log-probs,
metrics.py and reading.py turn them into the official numbers, suite.py runs and writes them."""
