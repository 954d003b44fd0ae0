"""Evaluation: BLiMP minimal pairs and held-out loss, for single model dirs and direct ensembles."""
