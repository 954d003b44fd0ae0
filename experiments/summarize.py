"""Turn the eval JSONs of experiments/cpu_small.sh into the markdown tables of EXPERIMENTS.md.

    python experiments/summarize.py experiments/out/cpu_small
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bl2.runs import metrics

ROWS = [
    ("teacher0", "teacher 0 (seed 0)"), ("teacher1", "teacher 1 (seed 1)"), ("teacher2", "teacher 2 (seed 2)"),
    ("ens2", "direct ensemble of teachers 0+1 (logits averaged)"),
    ("student1", "student from 1 teacher (topk 64)"), ("student2", "student from 2 teachers (topk 64)"),
    ("student3", "student from 3 teachers (topk 64)"),
    ("student2_sample", "student from 2 teachers (sample, 50 draws)"),
    ("student2_token", "student from 2 teachers (topk 64, --kl-reduction token)"),
]
SUBSET = [
    ("sub_ce", "CE only (alpha = 1)"), ("sub_student_topk2", "topk k=64 (+ tail bucket)"),
    ("sub_student_sample2", "sample, 50 draws"), ("sub_student_full2", "full distribution"),
]


def load(out: Path, name: str) -> dict | None:
    loss, blimp = out / "eval" / f"loss_{name}.json", out / "eval" / f"blimp_{name}.json"
    if not loss.exists() or not blimp.exists():
        return None
    ce = json.loads(loss.read_text())["results"]
    ce = ce.get("ensemble") or next(iter(ce.values()))
    b = json.loads(blimp.read_text())["results"][-1]  # the model, or the ensemble (reported last)
    return {"ce": ce["ce"], "ppl": ce["ppl"], "filtered": 100 * b["suites"]["blimp_filtered"]["score"],
            "supplement": 100 * b["suites"]["supplement_filtered"]["score"], "average": 100 * b["average"]}


def best_val(out: Path, name: str) -> str:
    path = out / "runs" / name / "metrics.jsonl"
    if not path.exists():
        return "–"
    done = metrics.events(path, "done")
    return f"{done[-1]['best_val_ce']:.4f} @ {done[-1]['best_step']}" if done else "–"


def table(out: Path, rows) -> list[str]:
    lines = ["| model | test CE | ppl | best val CE @ step | BLiMP filtered | supplement | mean |",
             "|---|---|---|---|---|---|---|"]
    for key, label in rows:
        r = load(out, key)
        if r is None:
            lines.append(f"| {label} | (missing) | | | | | |")
            continue
        lines.append(f"| {label} | {r['ce']:.4f} | {r['ppl']:.2f} | {best_val(out, key)} | {r['filtered']:.2f} | "
                     f"{r['supplement']:.2f} | {r['average']:.2f} |")
    return lines


def main() -> None:
    out = Path(sys.argv[1])
    print("### Main table (test split = the dev files' subset)\n")
    print("\n".join(table(out, ROWS)))
    print("\n### topk vs sample vs full at equal steps (the first subset windows of the 2-teacher caches)\n")
    print("\n".join(table(out, SUBSET)))
    ce = {k: (load(out, k) or {}).get("ce") for k, _ in ROWS}
    needed = ("teacher0", "teacher1", "teacher2", "ens2", "student1", "student2", "student3")
    if all(ce.get(k) is not None for k in needed):
        best_t = min(ce["teacher0"], ce["teacher1"], ce["teacher2"])
        print(f"\nbest teacher test CE {best_t:.4f}; students 1/2/3 teachers: {ce['student1']:.4f} / "
              f"{ce['student2']:.4f} / {ce['student3']:.4f}; direct ensemble of 2: {ce['ens2']:.4f}")
        order = ce["student1"] > ce["student2"] > ce["student3"]
        print(f"every student below the best teacher: {max(ce['student1'], ce['student2'], ce['student3']) < best_t}; "
              f"ordering 1 > 2 > 3 teachers (test CE): {order}")


if __name__ == "__main__":
    main()
