"""The (Super)GLUE tasks of the BabyLM 2025 fine-tuning protocol: how each task's JSONL rows become inputs (as
the official `evaluation_pipeline/finetune/dataset.py` builds them: the A side, optionally a B side passed as a
text pair, templates for MultiRC and WSC), its labels, its metrics, and the recipes (hyperparameters as data,
each with its source)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from bl2.errors import UserError, require


@dataclass(frozen=True)
class Format:
    a_keys: tuple[str, ...]
    b_keys: tuple[str, ...] | None = None
    a_template: str | None = None
    num_labels: int = 2
    metrics: tuple[str, ...] = ("accuracy",)  # the paper's: F1 for MRPC/QQP, MCC for CoLA, accuracy otherwise


FORMATS = {
    "boolq": Format(("question",), ("passage",)),
    "cola": Format(("sentence",), metrics=("mcc", "accuracy")),
    "mnli": Format(("premise",), ("hypothesis",), num_labels=3),
    "mrpc": Format(("sentence1",), ("sentence2",), metrics=("f1", "accuracy")),
    "multirc": Format(("question", "answer"), ("paragraph",), "Question: {} Answer: {}"),
    "qnli": Format(("question",), ("sentence",)),
    "qqp": Format(("question1",), ("question2",), metrics=("f1", "accuracy")),
    "rte": Format(("sentence1",), ("sentence2",)),
    "sst2": Format(("sentence",)),
    "wsc": Format(("span2_text", "span1_text"), ("text",), 'Does "{}" refer to "{}" in this passage?'),
}
TASKS = tuple(FORMATS)
BABYLM2025_TASKS = ("boolq", "mnli", "mrpc", "multirc", "qqp", "rte", "wsc")  # eval_finetuning.sh's

# The official defaults (babylm/evaluation-pipeline-2025: eval_finetuning.sh and finetune/run.py): AdamW
# (betas 0.9/0.999, eps 1e-8, weight decay 0.01), linear warm-up over 6 % of the steps then cosine to 0.1 x lr.
BABYLM2025 = {"lr": 3e-5, "batch_size": 32, "epochs": 10, "weight_decay": 0.01, "warmup_proportion": 0.06,
              "min_factor": 0.1, "schedule": "cosine", "seed": 42, "max_length": 512,
              "source": "babylm/evaluation-pipeline-2025 eval_finetuning.sh + evaluation_pipeline/finetune/run.py"}
BABYLM2025_TASK = {"boolq": {"batch_size": 16}, "multirc": {"batch_size": 16}, "wsc": {"epochs": 30}}


def recipe(name: str, task: str) -> dict:
    """The hyperparameters of a recipe for one task."""
    if name == "babylm2025":
        return BABYLM2025 | BABYLM2025_TASK.get(task, {})
    raise UserError("--recipe paper: the paper's Table 4 (per-task hyperparameters) is not available offline, so "
                    "bl2 ships no numbers for it; pass them yourself as --recipe-file FILE.yaml")


def recipe_file(path: Path, task: str) -> dict:
    """A user's recipe: YAML {key: value} for every task, or {task: {key: value}}; missing keys: babylm2025's."""
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise UserError(f"--recipe-file {path}: {e}") from None
    require(isinstance(doc, dict), f"--recipe-file {path} must be a YAML mapping")
    per_task = doc.get(task, {}) if any(t in doc for t in TASKS) else doc
    unknown = set(per_task) - set(BABYLM2025)
    require(not unknown, f"--recipe-file {path}: unknown keys {', '.join(sorted(unknown))}")
    return recipe("babylm2025", task) | per_task | {"source": str(path)}


@dataclass
class Examples:
    texts: list  # str, or (A, B) pairs
    labels: list[int]


def format_row(task: str, row: dict):
    f = FORMATS[task]
    a = [row[k] for k in f.a_keys]
    a_text = f.a_template.format(*a) if f.a_template else " ".join(a)
    if f.b_keys is None:
        return a_text
    return a_text, " ".join(row[k] for k in f.b_keys)


def read_split(path: Path, task: str, limit: int | None = None) -> Examples:
    """Rows of a task file as the official dataset builds them; labels must be in the task's label set."""
    require(path.is_file(), f"{path} not found" + (" (boolq and multirc need their train files from the official "
                                                   "BabyLM data; ../shared/data has only their valid files)"
                                                   if task in ("boolq", "multirc") else ""))
    texts, labels = [], []
    n_labels = FORMATS[task].num_labels
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            texts.append(format_row(task, row))
            label = row["label"]
        except (ValueError, KeyError, TypeError, IndexError) as e:
            raise UserError(f"{path} line {n + 1} is not a {task} row ({type(e).__name__}: {e})") from None
        require(isinstance(label, int) and 0 <= label < n_labels,
                f"{path} line {n + 1}: label {label!r} is not one of {task}'s labels 0..{n_labels - 1}")
        labels.append(label)
        if limit and len(texts) >= limit:
            break
    require(bool(texts), f"{path} has no rows")
    return Examples(texts, labels)


def metrics(labels: list[int], preds: list[int]) -> dict[str, float]:
    """Accuracy, F1 of class 1 and Matthews' correlation (what sklearn's defaults compute, as the official)."""
    import math

    n = len(labels)
    acc = sum(a == b for a, b in zip(labels, preds)) / n
    tp = sum(a == 1 and b == 1 for a, b in zip(labels, preds))
    fp = sum(a != 1 and b == 1 for a, b in zip(labels, preds))
    fn = sum(a == 1 and b != 1 for a, b in zip(labels, preds))
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    classes = sorted(set(labels) | set(preds))
    # multiclass MCC (Gorodkin), = the binary formula for two classes; 0 when undefined, as sklearn
    c = sum(a == b for a, b in zip(labels, preds))
    t = {k: labels.count(k) for k in classes}
    p = {k: preds.count(k) for k in classes}
    cov_tp = c * n - sum(t[k] * p[k] for k in classes)
    denom = math.sqrt((n * n - sum(v * v for v in p.values())) * (n * n - sum(v * v for v in t.values())))
    return {"accuracy": acc, "f1": f1, "mcc": cov_tp / denom if denom else 0.0}
