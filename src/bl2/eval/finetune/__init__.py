"""(Super)GLUE fine-tuning as the BabyLM 2025 protocol runs it: tasks.py (inputs, labels, metrics, recipes),
train.py (one task's run and its outputs)."""
