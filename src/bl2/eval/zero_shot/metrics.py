"""From completion scores to the official 2025 numbers (its `sentence_zero_shot/run.py` and
`compute_results.py`, causal backend): the chosen option is the first maximum (the correct option comes first,
so a tie counts as correct; ties are counted separately here); accuracies in % per value of each metadata key;
the task average is the unweighted mean over UIDs, for entity tracking the mean over its splits (regular,
ambiref, move_contents) of the mean over each split's UIDs; WUG is Spearman's rho between P(first option),
the softmax over the options' scores, and the human ratio. With a temperature sweep the best average wins
(the first one on equal averages); the report and the predictions are those of that temperature."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

ET_SPLITS = ("regular", "ambiref", "move_contents")


def option_matrix(scores: np.ndarray, offsets: list[int]) -> np.ndarray:
    """[T, n_items, max_options] from flat per-sentence scores [T, N] (missing options are -inf)."""
    counts = np.diff(offsets)
    out = np.full((scores.shape[0], len(counts), int(counts.max())), -np.inf)
    for i, (lo, n) in enumerate(zip(offsets[:-1], counts)):
        out[:, i, :n] = scores[:, lo : lo + n]
    return out


def accuracies(items, chosen: np.ndarray) -> dict[str, dict[str, float]]:
    """{metadata key: {value: accuracy %}} in the order keys and values are first seen."""
    total: dict[str, Counter] = {}
    correct: dict[str, Counter] = {}
    for item, pick in zip(items, chosen):
        for key, value in item.meta.items():
            total.setdefault(key, Counter())[value] += 1
            correct.setdefault(key, Counter())[value] += int(pick == 0)
    return {key: {v: 100.0 * correct[key][v] / n for v, n in counts.items()} for key, counts in total.items()}


def average(task: str, accs: dict[str, dict[str, float]]) -> float:
    uid = accs["UID"]
    if task != "entity_tracking":
        return sum(uid.values()) / len(uid)
    split_accs = []
    for split in ET_SPLITS:
        keys = [k for k in uid if k.startswith(split)]
        if keys:
            uid[split] = sum(uid[k] for k in keys) / len(keys)  # the official report lists the split means too
            split_accs.append(uid[split])
    return sum(split_accs) / len(split_accs)


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b)[0])


def first_option_probs(options: np.ndarray) -> np.ndarray:
    """softmax over each item's options, P of the first one."""
    shifted = options - options.max(-1, keepdims=True)
    p = np.exp(shifted)
    return p[..., 0] / p.sum(-1)


def evaluate_temperature(task: str, items, options: np.ndarray) -> dict:
    """One system at one temperature: options [n_items, n_opts] -> chosen, ties, the report's dicts."""
    chosen = options.argmax(-1)  # numpy and torch.max both return the first maximum
    ties = int(((options == options.max(-1, keepdims=True)).sum(-1) > 1).sum())
    if task.startswith("wug"):
        probs = first_option_probs(options)
        rho = spearman(probs, [it.ratio for it in items])
        return {"chosen": chosen, "ties": ties, "probs": probs, "accs": {"UID": {"avg": rho}}, "average": rho}
    accs = accuracies(items, chosen)
    return {"chosen": chosen, "ties": ties, "accs": accs, "average": average(task, accs)}


def best_temperature(per_temp: list[dict]) -> int:
    """Index of the best average (strictly greater wins, so the first on ties; NaN never wins)."""
    best, best_avg = 0, -math.inf
    for t, r in enumerate(per_temp):
        if r["average"] > best_avg:
            best, best_avg = t, r["average"]
    return best


def predictions(task: str, items, result: dict) -> dict:
    """The official predictions.json: {UID: {"predictions": [{"id": UID_n, "pred": .., ("prob": ..)}]}}."""
    out: dict[str, dict] = {}
    for n, (item, pick) in enumerate(zip(items, result["chosen"])):
        uid = item.meta["UID"]
        preds = out.setdefault(uid, {"predictions": []})["predictions"]
        chosen = item.sentences[pick] if task == "comps" else item.completions[pick]
        entry = {"id": f"{uid}_{len(preds)}", "pred": chosen}
        if task.startswith("wug"):
            entry["prob"] = float(result["probs"][n])
        preds.append(entry)
    return out


def report_text(task: str, temperature: float, result: dict) -> str:
    """best_temperature_report.txt, line for line as the official create_evaluation_report prints it."""
    metric = "SPEARMAN'S RHO" if task.startswith("wug") else "ACCURACY"
    lines = [f"TEMPERATURE: {temperature:.2f}", ""]
    for domain, accs in result["accs"].items():
        if task.startswith("wug") and domain != "UID":
            continue
        lines.append(f"### {domain.upper()} {metric}")
        lines += [f"{sub}: {acc:.2f}" for sub, acc in accs.items()]
        lines.append("")
    lines += [f"### AVERAGE {metric}", f"{result['average']:.2f}", ""]
    return "\n".join(lines) + "\n"
