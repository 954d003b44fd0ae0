"""`bl2 sweep finetune`: the paper's per-task fine-tuning sweep (its Appendix A / Table 4) on the study machinery
of worker.py: TPE over the fine-tuning hyperparameters (lr, batch size, epochs, weight decay, schedule, warm-up),
Hyperband on the validation metric after every epoch, and `sweep confirm` re-running the best configuration
with rounded values and new seeds (the paper's stability check).

Optuna minimises, so a trial's value is the validation error 1 - metric (the task's headline metric: accuracy,
F1 for MRPC/QQP, MCC for CoLA); tables and confirm.json also give the metric itself. A trial is a `bl2 finetune`
task dir (run.json kind finetune, with the trial's {"sweep": ...} record) under STUDY/trials/trial-NNNN/.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from bl2.errors import require


def value_name(task: str) -> str:
    from bl2.eval.finetune.tasks import FORMATS

    return f"val error (1 - {FORMATS[task].metrics[0]})"


class EpochPruner:
    """A finetune_task hook: reports the epoch's error to Optuna (the epoch is Hyperband's step) and returns
    "pruned" when the pruner stops the trial ("lost" when the storage says another worker ended it)."""

    def __init__(self, trial, key: str):
        self.trial, self.key = trial, key

    def __call__(self, row: dict) -> str | None:
        error = 1.0 - float(row[self.key])
        try:
            self.trial.report(error, int(row["epoch"]))
            return "pruned" if self.trial.should_prune() else None
        except Exception as e:  # noqa: BLE001 - the trial is over in the storage (declared lost)
            return f"lost: {e}"


class FinetuneRunner:
    """Fine-tunes one trial's Hyper on the sweep's model and task; the model dir and task files are checked once."""

    def __init__(self, cfg):
        from bl2.eval.blimp import check_model_dirs
        from bl2.eval.finetune.tasks import FORMATS, TASKS

        require(cfg.task in TASKS, f"unknown task {cfg.task!r}; choose one of {', '.join(TASKS)}")
        check_model_dirs([Path(cfg.model)])
        for split in ("train", "valid"):
            require((Path(cfg.data) / f"{cfg.task}.{split}.jsonl").is_file(),
                    f"no {cfg.task}.{split}.jsonl in {cfg.data}")
        self.cfg, self.key = cfg, FORMATS[cfg.task].metrics[0]
        self.value_name = value_name(cfg.task)

    def run(self, config, out: Path, info: dict, trial) -> dict:
        from bl2.runs import record

        r = run_finetune(self.cfg, config, out, [EpochPruner(trial, self.key)])
        record.update(out, sweep=info)
        return {"stopped": r["stopped"], "value": 1.0 - r["score"], "step": r["epochs_run"]}


def run_finetune(cfg, hyper, out: Path, hooks=()) -> dict:
    from bl2.eval.finetune.train import finetune_task
    from bl2.runtime import pick_device

    ft = cfg.finetune
    return finetune_task(Path(cfg.model), Path(cfg.data), cfg.task, hyper, Path(out), pick_device(cfg.device),
                         ft.get("select", "last"), ft.get("max_train"), head=ft.get("head", "hf"), hooks=hooks)


def rounded(params: dict) -> dict:
    """The values a paper would print: floats to 2 significant digits, integers and names as they are."""
    out = {}
    for k, v in params.items():
        if isinstance(v, float) and v != 0 and math.isfinite(v):
            out[k] = float(f"{v:.2g}")
        else:
            out[k] = v
    return out


def confirm(study_dir: Path, meta: dict, best, config: dict, seeds: int, device: str) -> dict:
    """Re-run the best trial's config with rounded values and `seeds` new seeds; STUDY/confirm.json."""
    from types import SimpleNamespace

    from bl2.eval.finetune.train import Hyper
    from bl2.progress import console

    s = meta["settings"]
    fixed = s["fixed"]
    hyper = Hyper.from_dict(config | rounded({k: config[k] for k in best.params}))
    cfg = SimpleNamespace(model=fixed["model"], task=fixed["task"], data=s["data"], device=device,
                          finetune={k: fixed.get(k) for k in ("head", "select", "max_train")})
    values = []
    for seed in range(hyper.seed + 1, hyper.seed + 1 + seeds):
        out = study_dir / "confirm" / f"trial-{best.number:04d}-seed-{seed}"
        done = out / "results.json"
        if not done.is_file():
            console.rule(f"[bold]confirm trial {best.number} with seed {seed} (rounded values)")
            run_finetune(cfg, Hyper.from_dict(hyper.to_dict() | {"seed": seed}), out)
        score = json.loads(done.read_text())["score"]
        values.append({"seed": seed, "score": score, "run_dir": str(out.resolve())})
    return summary(best, hyper, values, fixed["task"])


def summary(best, hyper, values: list[dict], task: str) -> dict:
    scores = [v["score"] for v in values]
    mean = statistics.fmean(scores)
    sd = statistics.stdev(scores) if len(scores) > 1 else 0.0
    sweep_score = 1.0 - best.value
    as_good = sum(x >= sweep_score for x in scores)
    verdict = (f"trial {best.number} ({task}): the sweep's score {100 * sweep_score:.2f} vs {100 * mean:.2f} ± "
               f"{100 * sd:.2f} (mean ± sd over {len(scores)} new seeds, rounded values); {as_good}/{len(scores)} "
               "new seeds do as well")
    return {"trial": best.number, "task": task, "params": dict(best.params),
            "rounded_params": {k: getattr(hyper, k) for k in best.params}, "sweep_value": best.value,
            "sweep_score": sweep_score, "seeds": values, "mean": mean, "sd": sd, "n_as_good": as_good,
            "verdict": verdict}
