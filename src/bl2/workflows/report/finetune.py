"""`bl2 finetune --out` results in `bl2 report`: the "(Super)GLUE avg (fine-tuned)" column (results table,
groups, Figure 1), the per-task table (the paper's Table 5 analogue) and results.json's "finetune" section.

Inputs: OUT/results.json ({"kind": "finetune", "model", "head", "tasks": {task: result}, "select", "recipe"}) and
OUT/TASK/results.json (one task's result: "task", "model", "metric" (the headline: accuracy, F1 for MRPC/QQP, MCC
for CoLA), "score" in 0..1, "metrics", "select"). A per-task file whose OUT/results.json is also read is skipped
(same numbers), and so is one of a `bl2 sweep finetune` trial or confirm run (a search, not a model's score).
Each model's average is over the tasks it has; when models have different task sets (or selection rules), the
notes say so, since their averages then do not compare. The fine-tuning task dirs
themselves (run.json of kind finetune) are outputs, not models: `is_finetune_run` lets inputs.py skip them.
This module sits below inputs.py: `match` (a run dir's key) is passed in.
"""

from __future__ import annotations

from pathlib import Path

AVG = "(Super)GLUE avg (fine-tuned)"
NAMES = {"boolq": "BoolQ", "cola": "CoLA", "mnli": "MNLI", "mrpc": "MRPC", "multirc": "MultiRC", "qnli": "QNLI",
         "qqp": "QQP", "rte": "RTE", "sst2": "SST-2", "wsc": "WSC"}
METRICS = {"accuracy": "acc.", "f1": "F1", "mcc": "MCC"}
SELECT = {"last": "last epoch", "best": "best epoch on the valid file it reports"}
UNIT = "score (%): acc., F1 or MCC × 100"


def is_finetune_run(info: dict) -> bool:
    """run.json of a `bl2 finetune` task dir (OUT/TASK): an output, not a model of the report."""
    return isinstance(info, dict) and info.get("kind") == "finetune"


def is_task_result(doc) -> bool:
    return (isinstance(doc, dict) and isinstance(doc.get("task"), str) and isinstance(doc.get("model"), str)
            and isinstance(doc.get("metric"), str) and isinstance(doc.get("score"), (int, float))
            and isinstance(doc.get("metrics"), dict))


def is_finetune(doc) -> bool:
    """OUT/results.json of `bl2 finetune`, or one task's OUT/TASK/results.json (run.json, which holds no
    score at its top level, is neither)."""
    if isinstance(doc, dict) and doc.get("kind") == "finetune" and isinstance(doc.get("tasks"), dict):
        return bool(doc["tasks"]) and all(is_task_result(r) for r in doc["tasks"].values())
    return is_task_result(doc)


def entries(doc: dict) -> list[dict]:
    """One dict per task of a document: the task's result with the run's head and recipe where known."""
    if "tasks" not in doc:
        return [doc]
    return [r | {"head": r.get("head", doc.get("head")), "recipe": doc.get("recipe")} for r in doc["tasks"].values()]


def attach(docs: list[tuple[Path, dict]], models: dict, match, unmatched: list[str], used: set) -> None:
    """Put each task's headline score (%) on its model (`model.finetune[task]`) and the average column on
    `model.metrics`; results of other models go to `unmatched`, files that gave a number to `used`. A task
    fine-tuned twice for one model (two --out dirs) keeps the first file's numbers and names the others."""
    tops = {p.parent.resolve(): d for p, d in docs if "tasks" in d}
    trials = [p for p, d in docs if "tasks" not in d and of_sweep(p)]
    if trials:
        from bl2.progress import console

        console.print(f"skipped {len(trials)} fine-tuning result(s) of `bl2 sweep finetune` trials or confirm runs "
                      "(a search, not a model's score: see `bl2 sweep status`)", soft_wrap=True)
    for path, doc in docs:
        top = tops.get(path.parent.parent.resolve())
        if path in trials or ("tasks" not in doc and top is not None and doc["task"] in top["tasks"]):
            continue  # OUT/results.json holds the same numbers
        missed: dict[str, list[str]] = {}
        for r in entries(doc):
            key = match(r["model"], models)
            if key is None:
                missed.setdefault(r["model"], []).append(r["task"])
                continue
            used.add(path)
            have = models[key].finetune
            if r["task"] in have:
                have[r["task"]]["also"].append(str(path))
                continue
            have[r["task"]] = {"metric": r["metric"], "score": 100 * float(r["score"]), "select": r.get("select"),
                               "head": r.get("head_name") or head_name(r.get("head")), "recipe": r.get("recipe"),
                               "file": str(path), "also": []}
        unmatched += [f"{path}: {name} (fine-tuned: {', '.join(tasks)})" for name, tasks in missed.items()]
    for m in models.values():
        if m.finetune:
            m.metrics[AVG] = sum(r["score"] for r in m.finetune.values()) / len(m.finetune)


def of_sweep(path: Path) -> bool:
    """A task's results.json beside a run.json with a sweep trial's or a confirm run's record."""
    import json

    try:
        info = json.loads((path.parent / "run.json").read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(info, dict) and ("sweep" in info or "sweep_confirm" in info)


def head_name(head) -> str | None:
    """"hf" of both the option (OUT/results.json) and its label (OUT/TASK/results.json: "hf (Auto...)")."""
    return str(head).split()[0] if head else None


def task_order(tasks: set[str]) -> list[str]:
    from bl2.eval.finetune.tasks import TASKS  # torch-free: formats and recipes only

    return sorted(tasks, key=lambda t: (TASKS.index(t) if t in TASKS else len(TASKS), t))


def section(rows: list) -> dict | None:
    """results.json's "finetune" section (None when no model has fine-tuning results): the tasks, each task's
    headline metric, and per model its scores (%), average, selection rule(s) and head(s)."""
    tuned = [m for m in rows if m.finetune]
    if not tuned:
        return None
    tasks = task_order({t for m in tuned for t in m.finetune})
    metric = {t: "/".join(sorted({m.finetune[t]["metric"] for m in tuned if t in m.finetune})) for t in tasks}
    models = [{"label": m.label, "path": m.path, "group": m.group,
               "scores": {t: m.finetune[t]["score"] for t in tasks if t in m.finetune}, "average": m.metrics[AVG],
               "tasks": [t for t in tasks if t in m.finetune], "select": values(m, "select"),
               "head": values(m, "head"), "recipe": values(m, "recipe"),
               "duplicates": {t: r["also"] for t, r in m.finetune.items() if r["also"]}} for m in tuned]
    return {"column": AVG, "tasks": tasks, "metrics": metric, "models": models,
            "same_tasks": len({tuple(d["tasks"]) for d in models}) == 1,
            "select": sorted({s for d in models for s in d["select"]})}


def values(m, key: str) -> list[str]:
    return sorted({str(r[key]) for r in m.finetune.values() if r.get(key) is not None})


def header(task: str, metric: str) -> str:
    return f"{NAMES.get(task, task)} ({'/'.join(METRICS.get(x, x) for x in metric.split('/'))})"


def avg_note(sec: dict) -> str:
    """What the average column is: its tasks and selection rule, or that they differ between models."""
    if sec["same_tasks"]:
        what = f"avg of {', '.join(sec['tasks'])}"
    else:
        what = "avg over each model's tasks, which DIFFER between models (not comparable): " + "; ".join(
            f"{d['label']}: {', '.join(d['tasks'])}" for d in sec["models"])
    if len(sec["select"]) > 1:
        return f"{what}; model selection DIFFERS between models: " + "; ".join(
            f"{d['label']}: {'/'.join(d['select']) or '?'}" for d in sec["models"])
    return f"{what}; model selection: {SELECT.get(sec['select'][0], sec['select'][0]) if sec['select'] else '?'}"


def short_note(sec: dict | None) -> str:
    """Figure 1's subtitle for the average's panel."""
    if sec is None:
        return ""
    tasks = ", ".join(sec["tasks"]) if sec["same_tasks"] else "task sets DIFFER"
    rule = {0: "selection unknown", 1: f"{sec['select'][0]} epoch"}.get(len(sec["select"]), "selection DIFFERS")
    return f"\n({tasks}; {rule})"


def avg_cell(sec: dict | None, label: str, text: str) -> str:
    """The results table's cell: with its task count when the task sets differ."""
    if sec is None or sec["same_tasks"] or text == "–":
        return text
    n = next(len(d["tasks"]) for d in sec["models"] if d["label"] == label)
    return f"{text} ({n} task{'s' * (n != 1)})"


def table_rows(sec: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-task table (the paper's Table 5 analogue): a model per row, a task per
    column (named with its headline metric), the average last."""
    head = ["model", "group"] + [header(t, sec["metrics"][t]) for t in sec["tasks"]] + ["average"]
    body = [[d["label"], d["group"]] + [f"{d['scores'][t]:.2f}" if t in d["scores"] else "–" for t in sec["tasks"]]
            + [f"{d['average']:.2f}"] for d in sec["models"]]
    return head, body


def notes(sec: dict) -> list[str]:
    """The per-task table's notes: what the numbers are, the average's tasks and rule, differing heads, tasks
    fine-tuned twice."""
    lines = [f"`bl2 finetune` results: each task's headline metric in % (MCC × 100 for CoLA), scored on the "
             f"task's valid file. `{AVG}` = {avg_note(sec)}.", ""]
    heads = sorted({h for d in sec["models"] for h in d["head"]})
    if len(heads) > 1:
        lines += [f"Classifier heads differ between models ({', '.join(heads)}): see each run's results.json.", ""]
    twice = [f"- {d['label']}: {t} fine-tuned again in {', '.join(files)} (not shown: the first file is kept)"
             for d in sec["models"] for t, files in d["duplicates"].items()]
    return lines + (twice + [""] if twice else [])
