"""`bl2 finetune MODEL --task T|all --data-dir GLUE_DIR --out DIR`: (Super)GLUE fine-tuning, the BabyLM 2025
protocol's recipe by default (hyperparameters as data: eval/finetune/tasks.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from bl2.cli.common import DeviceOpt, user_errors
from bl2.errors import require

TASK_CHOICES = "rte|mrpc|wsc|mnli|qqp|boolq|multirc|cola|sst2|qnli|all"


ModelArg = Annotated[Path, typer.Argument(help="A Hugging Face causal-LM dir with its tokenizer (a bl2 run dir).")]
DataDirOpt = Annotated[Path, typer.Option("--data-dir", help="Folder of TASK.train.jsonl / TASK.valid.jsonl (the "
                                          "official evaluation_data/full_eval/glue_filtered).")]
RecipeOpt = Annotated[Literal["babylm2025", "paper"], typer.Option(
    help="babylm2025: the official defaults (lr 3e-5, batch 32 / 16 for boolq and multirc, 10 epochs / 30 for "
    "wsc, seed 42, warm-up 6 %, cosine to 0.1). paper: not available offline (see --recipe-file).")]
RecipeFileOpt = Annotated[Path | None, typer.Option(help="YAML of hyperparameters (all tasks, or per task); "
                                                    "keys not given: babylm2025's.")]
MaxTrainOpt = Annotated[int | None, typer.Option(help="Only the first N train rows (quick runs).")]
SelectOpt = Annotated[Literal["last", "best"], typer.Option(
    help="last: the last epoch; best: the epoch best on the valid file (the official choice, which selects on "
    "the data it reports).")]
HeadOpt = Annotated[Literal["hf", "babylm2025", "babylm2025-last"], typer.Option(
    help="hf: transformers' AutoModelForSequenceClassification (last non-pad token); babylm2025: the official "
    "pipeline's ClassifierHead on the FIRST token, as eval_finetuning.sh runs it (a decoder then sees only "
    "the first word); babylm2025-last: the official head on the last non-pad token.")]


def finetune(
    model: ModelArg,
    task: Annotated[str, typer.Option(help=f"{TASK_CHOICES}; all = every task whose files are in --data-dir.")],
    data_dir: DataDirOpt,
    out: Annotated[Path, typer.Option(help="Output folder: OUT/TASK/{run.json,results.json,metrics.jsonl,"
                                      "predictions.json} and OUT/results.json.")],
    recipe: RecipeOpt = "babylm2025",
    recipe_file: RecipeFileOpt = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Examples per step.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Passes over the train file.")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="AdamW weight decay.")] = None,
    warmup_proportion: Annotated[float | None, typer.Option(help="Share of the steps with linear warm-up.")] = None,
    schedule: Annotated[Literal["cosine", "none"] | None, typer.Option(help="After warm-up.")] = None,
    seed: Annotated[int | None, typer.Option(help="Head init and batch order.")] = None,
    max_length: Annotated[int | None, typer.Option(help="Truncate inputs to this many tokens (and to the "
                                                   "model's context).")] = None,
    max_train_examples: MaxTrainOpt = None,
    select: SelectOpt = "last",
    head: HeadOpt = "hf",
    babylm_results: Annotated[Path | None, typer.Option(help="Also write DIR/<model>/main/finetune/<task>/"
                                                        "predictions.json (the official layout).")] = None,
    device: DeviceOpt = "auto",
    resume: Annotated[bool, typer.Option("--resume", help="Continue into an existing --out: tasks already finished "
                                         "with the same settings are kept, the others (re)run.", metavar="")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out.", metavar="")] = False,
):
    """Fine-tune a model dir on (Super)GLUE tasks and score the valid files (accuracy, F1, MCC)."""
    import json

    from bl2.eval.blimp import check_model_dirs
    from bl2.eval.finetune.tasks import TASKS
    from bl2.locks import hold, require_free
    from bl2.progress import console
    from bl2.storage import write_text_atomic

    check_model_dirs([model])  # a config.json and tokenizer files, before any work
    require(data_dir.is_dir(), f"--data-dir {data_dir} not found")
    require(task == "all" or task in TASKS, f"unknown task {task!r}; choose one of {TASK_CHOICES}")
    require(not (resume and overwrite), "pass --resume or --overwrite, not both")
    require_free(out, "fine-tuning output")  # in use by another run: say so, not "already exists"
    require(overwrite or resume or not out.exists(), f"{out} already exists; pass --resume to continue it or "
            "--overwrite to replace it")
    require(max_train_examples is None or max_train_examples >= 1, "--max-train-examples must be >= 1")
    tasks = [t for t in TASKS if (data_dir / f"{t}.train.jsonl").is_file()] if task == "all" else [task]
    require(bool(tasks), f"no TASK.train.jsonl in {data_dir}")
    if task == "all":
        for t in TASKS:
            if t not in tasks and (data_dir / f"{t}.valid.jsonl").is_file():
                console.print(f"skip {t}: no {t}.train.jsonl in {data_dir} (only its valid file)")
    overrides = {k: v for k, v in dict(lr=lr, batch_size=batch_size, epochs=epochs, weight_decay=weight_decay,
                                       warmup_proportion=warmup_proportion, schedule=schedule, seed=seed,
                                       max_length=max_length).items() if v is not None}
    hypers = {t: hyper_of(t, recipe, recipe_file, overrides) for t in tasks}
    with hold(out, "fine-tuning output"):  # one writer: a second `bl2 finetune --out` here stops with one line
        results = {t: _task(model, data_dir, t, hypers[t], out, device, select, max_train_examples, head, resume,
                            babylm_results) for t in tasks}
        average = sum(r["score"] for r in results.values()) / len(results)
        write_text_atomic(out / "results.json", json.dumps({
            "kind": "finetune", "model": str(model), "head": head, "tasks": results, "average": average,
            "select": select, "recipe": str(recipe_file or recipe)}, indent=2) + "\n")
    console.print(f"average over {', '.join(results)}: {100 * average:.2f} (each task's headline metric)")


def _task(model: Path, data_dir: Path, t: str, hyper, out: Path, device: str, select: str, max_train: int | None,
          head: str, resume: bool, babylm_results: Path | None) -> dict:
    """One task: fine-tuned (or, with --resume, kept when finished with these settings), its line printed and
    its predictions copied to the official layout when asked."""
    from bl2.eval.finetune.train import finetune_task
    from bl2.progress import console
    from bl2.runtime import pick_device
    from bl2.storage import write_text_atomic

    r = finished(out / t, model, hyper, head, select, max_train) if resume else None
    if r is None:
        r = finetune_task(model, data_dir, t, hyper, out / t, pick_device(device), select, max_train, head=head)
    else:
        console.print(f"{t}: finished earlier in {out / t}, kept (--resume)")
    console.print(f"{t}: {r['metric']} {100 * r['score']:.2f} (accuracy {100 * r['metrics']['accuracy']:.2f}; "
                  f"majority class {100 * r['majority_baseline']:.2f}; epoch {r['selected_epoch']}, {select})")
    if babylm_results is not None:
        folder = babylm_results / model.stem / "main" / "finetune" / t
        folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(folder / "predictions.json", (out / t / "predictions.json").read_text())
    return r


def finished(task_dir: Path, model: Path, hyper, head: str, select: str, max_train: int | None) -> dict | None:
    """--resume: a task dir's results when it finished with these settings; None when it has not finished; a
    one-line error naming the setting that differs."""
    import json
    from dataclasses import asdict

    from bl2.runs import record

    if not (task_dir / "results.json").is_file() or record.find(task_dir) is None:
        return None
    result = json.loads((task_dir / "results.json").read_text())
    ours = {"model": str(model), "head": head, "select": select, "max_train": max_train} | asdict(hyper)
    theirs = {"model": result["model"], "head": result.get("head_name", head), "select": result["select"],
              "max_train": result.get("max_train")} | result["hyper"]
    diff = [f"{k} {ours[k]!r} (there: {theirs.get(k)!r})" for k in ours if theirs.get(k) != ours[k]]
    require(not diff, f"--resume: {task_dir} finished with other settings: {'; '.join(diff)}; use another --out")
    return result


def hyper_of(task: str, recipe: str, recipe_file: Path | None, overrides: dict | None = None):
    """One task's hyperparameters: the recipe's (or the recipe file's), then the command line's overrides."""
    from bl2.eval.finetune.tasks import recipe as recipe_of
    from bl2.eval.finetune.tasks import recipe_file as read_recipe_file
    from bl2.eval.finetune.train import Hyper

    base = read_recipe_file(recipe_file, task) if recipe_file else recipe_of(recipe, task)
    return Hyper(**(base | (overrides or {})))


def register(app: typer.Typer) -> None:
    app.command("finetune")(user_errors(finetune))
