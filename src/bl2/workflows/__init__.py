"""Whole workflows built from the packages below: `quickstart` (the pipeline end to end), `sweep` (Optuna
studies of teachers, students and fine-tuning), `report` (the paper's tables and figures from run dirs)."""
