"""`bl2 eval zero-shot`: the BabyLM 2025 zero-shot suite in one process: one model load, one tokenizer, every
task scored with the official rules (scoring.py, metrics.py, reading.py) for each model dir and, with several,
their direct ensemble. Writes a results JSON (per task: headline score, per-UID scores, items, ties, seconds,
temperature) and, on request, the official results layout that its `collate_preds.py` reads."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bl2.errors import require
from bl2.eval.zero_shot import metrics, reading, scoring
from bl2.eval.zero_shot.tasks import FOLDERS, TASKS, load_task, locate
from bl2.progress import console
from bl2.storage import write_text_atomic

ACCURACY_TASKS = ("blimp", "supplement", "ewok", "entity_tracking", "comps")  # the macro-average's tasks


@dataclass
class Settings:
    data_dir: str
    which: str = "fast"  # fast | full
    tasks: tuple[str, ...] = TASKS
    temperatures: tuple[float, ...] = (1.0,)
    full_sentence_scores: bool = False  # EWoK: score the whole sentence, not just the target
    batch_size: int = 64
    device: str = "cpu"
    members: bool = True
    limit: int | None = None  # first N lines of each file (quick looks; the official sets have no limit)
    revision: str = "main"


def plan(settings: Settings) -> tuple[dict[str, Path], dict[str, str]]:
    """{task: source} for the tasks whose data is present, {task: why skipped} for the rest."""
    require(Path(settings.data_dir).is_dir(), f"evaluation data dir not found: {settings.data_dir}")
    found, skipped = {}, {}
    for task in settings.tasks:
        require(task in TASKS, f"unknown task {task!r}; choose from {', '.join(TASKS)}")
        source = locate(Path(settings.data_dir), task, settings.which)
        if source is None:
            name = FOLDERS[task][1].get(settings.which)
            skipped[task] = (f"no {name} in {settings.data_dir}" if name else
                             f"not part of the official {settings.which} suite")
        else:
            found[task] = source
    require(bool(found), f"no task of {', '.join(settings.tasks)} has data in {settings.data_dir} "
            f"({settings.which} set)")
    return found, skipped


def run_choice_task(task, source, ensemble, tok, settings, password, packed, progress) -> list[dict]:
    """Score one multiple-choice task; per system: score, per-UID scores, groups, ties, predictions, report."""
    data = load_task(task, source, FOLDERS[task][1][settings.which], settings.full_sentence_scores, password,
                     settings.limit)
    sentences = [s for it in data.items for s in it.sentences]
    completions = [c for it in data.items for c in it.completions]
    offsets = np.cumsum([0] + [len(it.sentences) for it in data.items]).tolist()
    encoded = scoring.encode(tok, sentences, completions)
    scores = scoring.score_encoded(ensemble, encoded, list(settings.temperatures), settings.batch_size,
                                   settings.members, packed, label=task, progress=progress)
    out = []
    for system in scores:  # [T, N]
        options = metrics.option_matrix(system, offsets)
        per_temp = [metrics.evaluate_temperature(task, data.items, options[t]) for t in range(len(options))]
        best = metrics.best_temperature(per_temp)
        r, temp = per_temp[best], settings.temperatures[best]
        out.append({"task": task, "dataset": data.dataset, "official_task": data.official_task,
                    "metric": "spearman_rho" if task.startswith("wug") else "accuracy_pct",
                    "score": r["average"], "subtasks": r["accs"]["UID"],
                    "groups": {k: v for k, v in r["accs"].items() if k not in ("UID", "ratio")},
                    "n_items": len(data.items), "ties": r["ties"], "temperature": temp,
                    "by_temperature": {f"{t:.2f}": p["average"] for t, p in zip(settings.temperatures, per_temp)},
                    "_predictions": metrics.predictions(task, data.items, r),
                    "_report": metrics.report_text(task, temp, r)})
    return out


def run_reading(source, ensemble, tok, settings, packed, progress) -> list[dict]:
    rows = reading.read_rows(source)
    if settings.limit:
        rows = rows[: settings.limit]
    pred, prev = reading.surprisals(ensemble, tok, rows, settings.members, settings.batch_size, progress, packed)
    out = []
    for k in range(len(pred)):
        r = reading.regressions(rows, pred[k], prev[k])
        preds = {"reading": {"predictions": [{"id": i, "pred": float(p), "prev_pred": float(q)}
                                             for i, (p, q) in enumerate(zip(pred[k], prev[k]))]}}
        out.append({"task": "reading", "dataset": "reading", "official_task": "reading", "metric": "delta_r2_pct",
                    "score": r["eye_tracking"], "subtasks": {"eye_tracking": r["eye_tracking"],
                                                             "self_paced_reading": r["self_paced_reading"]},
                    "groups": {"correlations": r["correlations"]}, "n_items": len(rows), "ties": 0,
                    "temperature": None, "_predictions": preds, "_report": reading.report_text(r),
                    "_fits": {"predictive_power": r["predictive_power"],
                              "predictive_power_spillover": r["predictive_power_spillover"]}})
    return out


def macro(tasks: dict[str, dict]) -> tuple[float | None, list[str]]:
    """Unweighted mean of the accuracy tasks present (WUG's rho and reading's R^2 gains are other units)."""
    present = [t for t in ACCURACY_TASKS if t in tasks]
    return (float(np.mean([tasks[t]["score"] for t in present])) if present else None), present


def evaluate_zero_shot(model_dirs: list[Path], settings: Settings, password: str | None = None,
                       progress: bool = True) -> dict:
    """Every present task for every system; returns the results document (private keys start with _)."""
    from bl2.eval.blimp import check_model_dirs, system_names
    from bl2.eval.blimp_scoring import ENSEMBLE_RULE
    from bl2.model.ensemble import Ensemble

    model_dirs = [Path(d) for d in model_dirs]
    require(settings.batch_size >= 1, f"--batch-size must be >= 1, got {settings.batch_size}")
    check_model_dirs(model_dirs)
    found, skipped = plan(settings)
    for task, why in skipped.items():
        console.print(f"skip {task}: {why}")
    tok = load_offsets_tokenizer(model_dirs[0])
    ensemble = Ensemble(model_dirs, settings.device, ENSEMBLE_RULE)
    systems = [{"name": n, "kind": k, "model_dirs": d, "tasks": {}} for n, k, d in
               system_names(model_dirs, settings.members)]
    packed = None
    for task, source in found.items():
        t0 = time.perf_counter()
        if task == "reading":
            per_system = run_reading(source, ensemble, tok, settings, packed is not False, progress)
        else:
            if packed is None:  # checked once, on the first task's sentences
                probe = load_task(task, source, "probe", settings.full_sentence_scores, password, 8)
                probe_enc = scoring.encode(tok, [s for it in probe.items for s in it.sentences],
                                           [c for it in probe.items for c in it.completions])
                packed = scoring.packing_agrees(ensemble, probe_enc)
                if not packed:
                    console.print("[yellow]warning:[/] prefix packing does not reproduce plain batching for this "
                                  "model; using plain batching")
            per_system = run_choice_task(task, source, ensemble, tok, settings, password, packed, progress)
        seconds = time.perf_counter() - t0
        for system, result in zip(systems, per_system):
            system["tasks"][task] = result | {"seconds": round(seconds, 2), "source": str(source)}
    for system in systems:
        system["macro_average"], system["macro_tasks"] = macro(system["tasks"])
    return {"settings": asdict(settings) | {"packed": bool(packed), "ensemble_rule": ENSEMBLE_RULE,
                                            "backend": "causal (official 2025 rules)"},
            "skipped": skipped, "systems": systems}


def load_offsets_tokenizer(model_dir: Path):
    """The model dir's fast tokenizer (offsets are needed to find each completion's tokens)."""
    from transformers import AutoTokenizer

    from bl2.errors import UserError

    try:
        tok = AutoTokenizer.from_pretrained(str(model_dir))
    except Exception as e:  # any failure to build the tokenizer is a defect of the user's dir
        raise UserError(f"cannot load the tokenizer of {model_dir}: {str(e).splitlines()[0]}") from None
    require(getattr(tok, "is_fast", False), f"the tokenizer of {model_dir} is not a fast tokenizer: the official "
            "scoring needs character offsets")
    return tok


# ------------------------------------------------------------------------------------------------ outputs
def public(doc: dict) -> dict:
    """The results document without the private (_) entries."""
    strip = [{**s, "tasks": {t: {k: v for k, v in r.items() if not k.startswith("_")} for t, r in s["tasks"].items()}}
             for s in doc["systems"]]
    return doc | {"systems": strip}


def write_results(doc: dict, out: Path, device: str) -> None:
    from bl2.runtime import provenance

    body = public(doc) | {"provenance": provenance(device)}
    write_text_atomic(out, json.dumps(body, indent=2, ensure_ascii=False, allow_nan=True) + "\n")


def official_name(system: dict) -> str:
    """The official layout names a model by Path(model_path).stem; the direct ensemble is `ensemble`."""
    return Path(system["model_dirs"][0]).stem if system["kind"] != "ensemble" else "ensemble"


def write_official(doc: dict, root: Path, revision: str) -> list[Path]:
    """RESULTS/<model>/<revision>/zero_shot/causal/<task>/<dataset>/{best_temperature_report.txt,predictions.json}
    (reading: .../causal/reading/{report.txt,predictions.json,predictive_power*.jsonl}), as the official scripts."""
    written = []
    for system in doc["systems"]:
        base = Path(root) / official_name(system) / revision / "zero_shot" / "causal"
        for task, r in system["tasks"].items():
            if task == "reading":
                folder = base / "reading"
                files = {"report.txt": r["_report"], "predictions.json": json.dumps(r["_predictions"])}
                for name, fits in r["_fits"].items():
                    files[f"{name}.jsonl"] = "".join(json.dumps(f) + "\n" for f in fits)
            else:
                folder = base / r["official_task"] / r["dataset"]
                files = {"best_temperature_report.txt": r["_report"], "predictions.json": json.dumps(r["_predictions"])}
            folder.mkdir(parents=True, exist_ok=True)
            for name, text in files.items():
                write_text_atomic(folder / name, text)
            written.append(folder)
    return written


def print_table(doc: dict) -> None:
    from rich.table import Table

    systems = doc["systems"]
    table = Table(title=f"BabyLM 2025 zero-shot ({doc['settings']['which']} set)")
    table.add_column("task", no_wrap=True)
    table.add_column("metric", no_wrap=True)
    table.add_column("items", justify="right", no_wrap=True, min_width=5)
    for s in systems:
        table.add_column(s["name"], justify="right", no_wrap=True)
    table.add_column("ties", justify="right", no_wrap=True, min_width=4)
    for task in systems[0]["tasks"]:
        first = systems[0]["tasks"][task]
        table.add_row(task, first["metric"], str(first["n_items"]),
                      *[f"{s['tasks'][task]['score']:.2f}" for s in systems],
                      "/".join(str(s["tasks"][task]["ties"]) for s in systems))
        if task == "reading":
            table.add_row("reading (self-paced)", "delta_r2_pct", str(first["n_items"]),
                          *[f"{s['tasks'][task]['subtasks']['self_paced_reading']:.2f}" for s in systems], "")
    if systems[0]["macro_tasks"]:
        table.add_section()
        table.add_row(f"macro ({len(systems[0]['macro_tasks'])} tasks)", "accuracy_pct", "",
                      *[f"{s['macro_average']:.2f}" for s in systems], "")
    console.print(table)
    if systems[0]["macro_tasks"]:
        console.print(f"macro = unweighted mean of the accuracy tasks present: {', '.join(systems[0]['macro_tasks'])}")
