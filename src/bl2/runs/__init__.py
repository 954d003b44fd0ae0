"""Torch-free records of a run dir, each read and written by one module: run.json (`record`), metrics.jsonl
(`metrics`), the model card and evals.json (`card`), the BabyLM budget ledger (`ledger`, and `budget` for
`bl2 budget`), word-count checkpoint marks (`marks`). Nothing here imports torch, so `bl2 budget`, `bl2 report`
and `bl2 sweep status` start fast."""
