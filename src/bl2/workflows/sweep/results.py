"""`bl2 sweep status` (a table of a study's trials) and `bl2 sweep confirm` (re-train the best configuration
from new seeds: did the sweep's best survive re-seeding, or was it a lucky initialisation?).

Confirmation runs go to `STUDY/confirm/trial-NNNN-seed-S/` (ordinary run dirs; run.json carries
{"sweep_confirm": {"study", "trial", "params", "kind", "seed"}}) and the summary to `STUDY/confirm.json`.
Rerunning `confirm` skips finished seeds and resumes interrupted ones.

Both work from any machine that reaches the study's database (`--storage URL`, the study named by the folder's
name or --study-name): each trial records its host, its run dir and its config in the database, so `confirm`
needs no trial dir; the data or cache of the study must be reachable where it runs.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from bl2.errors import UserError, require
from bl2.workflows.sweep.show import fmt_value
from bl2.workflows.sweep.worker import best_trial, counts, load_study, trial_dir

CONFIRM_JSON = "confirm.json"
STATES = {"FAIL": "failed"}  # Optuna's state names, lower case, with this one spelt as the counts spell it


def trial_rows(study) -> list[dict]:
    """One dict per trial: number, state, value, last reported step, params, note, host, worker, run dir."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        note = attrs.get("error") or ("" if attrs.get("stopped") == "pruned" else attrs.get("stopped", ""))
        if "retry_of" in attrs:
            note = f"retry of {attrs['retry_of']}" + (f"; {note}" if note else "")
        if t.state.name == "FAIL" and not note:  # failed by a worker that found it without a heartbeat
            note = "worker lost"
        rows.append({"trial": t.number, "state": STATES.get(t.state.name, t.state.name.lower()), "value": t.value,
                     "step": t.last_step, "params": dict(t.params), "note": note, "host": attrs.get("host"),
                     "worker": attrs.get("worker"), "run_dir": attrs.get("run_dir")})
    return rows


def sweep_status(study_dir: Path, storage: str | None = None, study_name: str | None = None) -> dict:
    """Print the trials of a study (params, val CE, state, host, best) and return them."""
    from rich.table import Table

    from bl2.progress import console

    meta, study = load_study(Path(study_dir), storage, study_name=study_name)
    rows = trial_rows(study)
    best = best_trial(study)
    n = counts(study)
    title = (f"sweep {meta['settings']['kind']} {meta['study_name']!r}: {n['finished']}/{meta.get('trials', '?')} "
             f"finished ({n['complete']} complete, {n['pruned']} pruned), {n['failed']} failed, "
             f"{n['running']} running, {n['waiting']} waiting")
    value = "val CE" if meta["settings"]["kind"] != "finetune" else "val error"  # 1 - the task's metric
    step = "step" if meta["settings"]["kind"] != "finetune" else "epoch"
    table = Table(title=title, caption=None if best is None else
                  f"best: trial {best.number}, {value} {best.value:.4f}")
    for col in ("trial", "state", value, step):
        table.add_column(col, justify="left" if col == "state" else "right", no_wrap=True)
    table.add_column("parameters", ratio=1)  # wraps: any number of parameters stays readable at 80 columns
    table.add_column("host")  # which machine holds the trial dir (workers on many machines share one database)
    table.add_column("note")
    for r in rows:
        mark = " *" if best is not None and r["trial"] == best.number else ""
        table.add_row(f"{r['trial']}{mark}", r["state"], "" if r["value"] is None else f"{r['value']:.4f}",
                      "" if r["step"] is None else str(r["step"]),
                      ", ".join(f"{k} {fmt_value(v)}" for k, v in r["params"].items()), _host(r), r["note"])
    console.print(table)
    return {"study": meta["study_name"], "counts": n, "trials": rows,
            "best": None if best is None else {"trial": best.number, "value": best.value, "params": best.params}}


def _host(row: dict) -> str:
    return "" if row["host"] is None else row["host"] + ("" if row["worker"] is None else f" w{row['worker']}")


def trial_config(study_dir: Path, trial) -> dict:
    """The trial's full config: its run.json where this machine reaches it, else the database's record."""
    from bl2.runs import record

    for folder in (trial_dir(study_dir, trial.number), trial.user_attrs.get("run_dir")):
        if folder and (Path(folder) / "run.json").is_file():
            doc = record.read(Path(folder))
            return doc["hyper"] if doc.get("kind") == "finetune" else doc["config"]
    config = trial.user_attrs.get("config")
    require(isinstance(config, dict), f"trial {trial.number}'s run dir {trial.user_attrs.get('run_dir')} is not "
            f"on this machine (host {trial.user_attrs.get('host')}) and the database has no config for it")
    return config


def confirm(study_dir: Path, seeds: int = 3, device: str = "auto", storage: str | None = None,
            study_name: str | None = None) -> dict:
    """Re-train the best complete trial's configuration with `seeds` new seeds (trial seed + 1 .. + seeds);
    report their best val CE as mean ± sd against the sweep's value and write STUDY/confirm.json."""
    from bl2.distill.config import TrainConfig
    from bl2.distill.loop import train
    from bl2.progress import console
    from bl2.runs import metrics

    require(seeds >= 1, f"--seeds must be >= 1, got {seeds}")
    study_dir = Path(study_dir)
    meta, study = load_study(study_dir, storage, study_name=study_name)
    best = best_trial(study)
    require(best is not None, f"study {meta['study_name']!r} has no complete trial yet")
    if meta["settings"]["kind"] == "finetune":
        from bl2.workflows.sweep.finetune import confirm as confirm_finetune

        result = confirm_finetune(study_dir, meta, best, trial_config(study_dir, best), seeds, device)
        return _write_confirm(study_dir, result)
    cfg = TrainConfig.from_dict(trial_config(study_dir, best))
    make_job = _job_maker(meta)
    kind = meta["settings"]["kind"]
    values = []
    for seed in range(cfg.seed + 1, cfg.seed + 1 + seeds):
        out = study_dir / "confirm" / f"trial-{best.number:04d}-seed-{seed}"
        done = metrics.events(out / metrics.FILENAME, "done")
        if not done:
            console.rule(f"[bold]confirm trial {best.number} with seed {seed}")
            job = make_job(TrainConfig(**(cfg.to_dict() | {"seed": seed})))
            job.info = {"sweep_confirm": {"study": str(study_dir.resolve()), "trial": best.number,
                                          "params": dict(best.params), "kind": kind, "seed": seed}}
            train(job, str(out), resume=(out / "run.json").is_file(), device=device)
            done = metrics.events(out / metrics.FILENAME, "done")
        values.append({"seed": seed, "best_val_ce": done[-1]["best_val_ce"], "run_dir": str(out.resolve())})
    return _write_confirm(study_dir, _summary(best, cfg.seed, values))


def _write_confirm(study_dir: Path, result: dict) -> dict:
    from bl2.progress import console

    study_dir.mkdir(parents=True, exist_ok=True)
    (study_dir / CONFIRM_JSON).write_text(json.dumps(result, indent=2))
    console.print(result["verdict"])
    return result


def _summary(best, sweep_seed: int, values: list[dict]) -> dict:
    ces = [v["best_val_ce"] for v in values]
    mean = statistics.fmean(ces)
    sd = statistics.stdev(ces) if len(ces) > 1 else 0.0
    below = sum(c <= best.value for c in ces)
    z = (best.value - mean) / sd if sd > 0 else math.nan
    verdict = (f"trial {best.number}: the sweep's val CE {best.value:.4f} (seed {sweep_seed}) vs {mean:.4f} ± "
               f"{sd:.4f} (mean ± sd over {len(ces)} new seeds); {below}/{len(ces)} new seeds do as well"
               + ("" if math.isnan(z) else f"; the sweep's value is {z:+.2f} sd from the new seeds' mean"))
    return {"trial": best.number, "params": dict(best.params), "sweep_seed": sweep_seed, "sweep_value": best.value,
            "seeds": values, "mean": mean, "sd": sd, "n_as_good": below, "z": None if math.isnan(z) else z,
            "verdict": verdict}


def _job_maker(meta: dict):
    """config -> Job for the study's kind (students: the cache opened once for every seed)."""
    from bl2.distill.job import cache_job, pretrain_job

    s = meta["settings"]
    if s["kind"] == "teachers":
        return lambda c: pretrain_job(c, s["data"])
    from bl2.cache.loader import open_cache

    try:
        opened = open_cache(s["cache"], "yes")
    except FileNotFoundError:
        raise UserError(f"the study's cache is gone: {s['cache']}") from None
    return lambda c: cache_job(c, opened, s["data"])
