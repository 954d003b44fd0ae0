"""Evaluation of model dirs: BLiMP minimal pairs (`blimp`, `blimp_data`) and held-out loss (`loss`). Sits
beside `cache` (neither imports the other) above `data` and `model`."""
