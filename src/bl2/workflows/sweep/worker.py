"""`bl2 sweep teachers|students|finetune`: hyperparameter sweeps with Optuna (TPE sampler + Hyperband pruner, the
BOHB combination the reference's W&B "bayes + hyperband" sweep stands for), minimising validation CE (fine-tuning:
the validation error, 1 - the task's metric, reported every epoch; its runner is in finetune.py).

A trial is an ordinary run (a Job from distill/job.py, trained by loop.train) with one extra hook: at every
validation row it reports val CE to Optuna (the optimizer step is Optuna's step) and raises StopRun when the
pruner says so. Trial dirs are `STUDY/trials/trial-NNNN/`, each a Hugging Face model dir whose run.json carries
{"sweep": {"study", "trial", "params", "kind"}}. Student sweeps decode the cache once per worker process and
hand it to every trial: no teacher is ever loaded.

Workers: any number of `bl2 sweep` processes on one study: on one machine with the default SQLite file, on many
machines with PostgreSQL (db.py), each machine writing its trial dirs under its own --study folder while the
database holds every trial's parameters, state, values, run dir and host. Under the study lock (db.py) each
worker counts the study's trials and asks for a new one only while COMPLETE + PRUNED + RUNNING < --trials,
so the study ends with exactly --trials finished trials. A running trial records a heartbeat (a user attr)
every --heartbeat seconds; a worker that finds a RUNNING trial without a heartbeat for 3 of its intervals (its
worker was killed) marks it FAIL and enqueues a retry with the same parameters (at most MAX_RETRIES per configuration).
Optuna's own heartbeat works only inside study.optimize and only for RDB storages: this one also covers
journal files. Status and confirm: results.py.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bl2.distill.config import TrainConfig
from bl2.errors import Diverged, UserError, require
from bl2.workflows.sweep.db import (
    META_ATTR,
    STUDY_JSON,
    default_storage,
    for_record,
    from_cli,
    from_record,
    load_study,
    make_storage,
    read_meta,
    refuse_sqlite_on_network_fs,
    require_optuna,
    shown,
    study_lock,
    sweep_host,
    without_password,
)
from bl2.workflows.sweep.show import fmt_value, params_table, settings_diff
from bl2.workflows.sweep.space import FINETUNE, TRAINING, Space, load_space, space_warnings

__all__ = ["SweepConfig", "run_sweep", "load_study", "default_storage", "best_trial", "counts", "trial_dir"]
KINDS = ("teachers", "students", "finetune")
HEARTBEAT = "heartbeat"  # user attr: Unix time of a running trial's last sign of life
HEARTBEAT_S = "heartbeat_s"  # user attr: its worker's heartbeat interval
GRACE_BEATS = 3  # a running trial is lost after this many missed heartbeats
MAX_RETRIES = 1  # re-runs of a configuration whose worker died
MAX_FAILS_IN_A_ROW = 3  # a worker whose trials keep failing stops (the space or data are wrong)


@dataclass
class SweepConfig:
    """One `bl2 sweep teachers|students` worker."""

    kind: str  # teachers | students
    study: Path  # study folder: study.json, the default SQLite storage, trials/
    space: Path  # search space YAML (sweep_space.py)
    trials: int  # finished (complete + pruned) trials the study should reach
    base: TrainConfig  # fixed options of every trial (finetune: a Hyper); the space overrides what it names
    data: str | None = None  # teachers: DATA_DIR; students: optional (default: the cache's)
    cache: str | None = None  # students: the logit cache
    storage: str | None = None  # Optuna storage URL (default: sqlite:///STUDY/study.db); postgresql://, journal:PATH
    allow_sqlite_on_network_fs: bool = False  # the user accepts SQLite's broken locks on NFS & co.
    study_name: str | None = None  # default: the study folder's name
    sampler_seed: int = 0  # TPE seed (worker w of the study uses sampler_seed + w)
    startup_trials: int = 10  # TPE's random trials before it models the results
    eta: int = 3  # Hyperband reduction factor (the reference's W&B sweep used 2)
    min_resource: int | None = None  # Hyperband's first rung in steps (default: val_every_steps, else 1)
    heartbeat: float = 30.0  # seconds between a running trial's heartbeats
    device: str = "auto"
    extra: dict = field(default_factory=dict)  # recorded in study.json only
    model: str | None = None  # finetune: the model dir every trial fine-tunes
    task: str | None = None  # finetune: the task (its files in `data`)
    finetune: dict = field(default_factory=dict)  # finetune: head, select, max_train

    def __post_init__(self):
        require(self.kind in KINDS, f"sweep kind must be one of {', '.join(KINDS)}")
        require(self.trials >= 1, f"--trials must be >= 1, got {self.trials}")
        require(self.eta >= 2, f"--eta must be >= 2, got {self.eta}")
        require(self.min_resource is None or self.min_resource >= 1, "--min-resource-steps must be >= 1")
        require(self.heartbeat > 0, "--heartbeat-s must be > 0")
        require(self.sampler_seed >= 0, f"--sampler-seed must be >= 0, got {self.sampler_seed}")
        require(not Path(self.study).exists() or Path(self.study).is_dir(),
                f"--study {self.study} is a file, not a study folder")
        require(self.startup_trials >= 0, "--startup-trials must be >= 0")
        if self.kind == "teachers":
            require(self.data is not None, "bl2 sweep teachers needs --data DATA_DIR")
        elif self.kind == "finetune":
            require(None not in (self.model, self.task, self.data), "bl2 sweep finetune needs MODEL, --task and "
                    "--data-dir")
        else:
            require(self.cache is not None, "bl2 sweep students needs --cache CACHE")
        self.study = Path(self.study)


# ---------------------------------------------------------------------------------------------- study folder
def _settings(cfg: SweepConfig, space: Space, min_resource: int) -> dict:
    """What every worker of one study must share (a rerun with other settings is refused)."""
    from bl2.storage import display

    fixed = cfg.base.identity() if cfg.kind != "finetune" else cfg.base.to_dict() | cfg.finetune | {
        "model": display(cfg.model), "task": cfg.task}
    return {"kind": cfg.kind, "space": space.to_dict(), "fixed": fixed,
            "data": cfg.data and display(cfg.data), "cache": cfg.cache and display(cfg.cache),
            "sampler": {"name": "TPESampler", "seed": cfg.sampler_seed, "n_startup_trials": cfg.startup_trials,
                        "constant_liar": True},
            "pruner": {"name": "HyperbandPruner", "min_resource": min_resource, "max_resource": "auto",
                       "reduction_factor": cfg.eta}}


def _open_or_create(cfg: SweepConfig, settings: dict, url: str, store, name: str):
    """Under the study lock: check or write study.json, create or load the study, check the settings that the
    database records (workers on other machines wrote them), register this worker."""
    optuna = require_optuna()
    path = cfg.study / STUDY_JSON
    if path.is_file():
        meta = read_meta(cfg.study)
        diff = settings_diff(meta.get("settings", {}), settings)
        require(not diff, f"{cfg.study} is a study with other settings ({'; '.join(diff)}); use another --study "
                "or the study's settings")
        recorded = without_password(from_record(meta["storage"], cfg.study))
        require(recorded == without_password(url) and meta["study_name"] == name,
                f"{cfg.study} uses storage {shown(meta['storage'])} (study {meta['study_name']!r}); "
                "pass the same --storage")
    else:
        require(not (cfg.study / "trials").exists(), f"{cfg.study} has trials/ but no {STUDY_JSON}; refusing it")
        meta = {"study_name": name, "storage": for_record(url, cfg.study), "space_file": str(cfg.space),
                "settings": settings, "created": time.strftime("%Y-%m-%dT%H:%M:%S")} | cfg.extra
    meta["trials"] = cfg.trials
    study = optuna.create_study(study_name=name, storage=store, direction="minimize", load_if_exists=True)
    shared = study.user_attrs.get(META_ATTR)
    if isinstance(shared, dict):  # another worker (maybe on another machine) made the study
        diff = settings_diff(shared.get("settings", {}), settings)
        require(not diff, f"study {name!r} in {shown(url)} has other settings ({'; '.join(diff)}); "
                "use another --study-name")
    study.set_user_attr(META_ATTR, {k: v for k, v in meta.items() if k != "storage"})
    worker = int(study.user_attrs.get("workers", 0))
    study.set_user_attr("workers", worker + 1)
    path.write_text(json.dumps(meta, indent=2))
    return study, worker


# ---------------------------------------------------------------------------------------------- the worker
def run_sweep(cfg: SweepConfig) -> dict:
    """One worker: run trials until the study has `cfg.trials` finished ones; returns the counts and the best."""
    optuna = require_optuna()
    from bl2.progress import console
    from bl2.runs.sinks import require_installed

    require_installed(getattr(cfg.base, "report_to", None))  # --report-to: each trial is a run of its sinks
    base = cfg.base
    if cfg.kind != "finetune" and base.val_every_steps is None:
        console.print("[yellow]warning: no --val-every-steps: Hyperband's rungs are the epoch ends only")
    url = from_cli(cfg.storage) if cfg.storage else default_storage(cfg.study)
    name = cfg.study_name or cfg.study.resolve().name
    if not cfg.allow_sqlite_on_network_fs:
        refuse_sqlite_on_network_fs(url)
    store = make_storage(url) if cfg.storage else None  # a bad URL or a dead server: before any work or folder
    space = load_space(cfg.space, base, students=cfg.kind == "students",
                       vocab=FINETUNE if cfg.kind == "finetune" else TRAINING)
    for warning in [] if cfg.kind == "finetune" else space_warnings(space, base):
        console.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)
    runner, space = _runner(cfg, space)
    min_resource = cfg.min_resource or (1 if cfg.kind == "finetune" else base.val_every_steps or 1)
    settings = _settings(cfg, space, min_resource)
    cfg.study.mkdir(parents=True, exist_ok=True)
    store = store or make_storage(url)
    with study_lock(cfg.study, store, name):
        study, worker = _open_or_create(cfg, settings, url, store, name)
    sampler = optuna.samplers.TPESampler(seed=cfg.sampler_seed + worker, n_startup_trials=cfg.startup_trials,
                                         constant_liar=True)
    pruner = optuna.pruners.HyperbandPruner(min_resource=min_resource, reduction_factor=cfg.eta)
    study = optuna.load_study(study_name=name, storage=store, sampler=sampler, pruner=pruner)
    console.print(f"sweep {cfg.kind}: study {name!r} in {shown(url)}, worker {worker} on {sweep_host()}, "
                  f"target {cfg.trials} finished "
                  f"trials; space {cfg.space}: {', '.join(space.params)}")
    fails, waiting_said = 0, False
    while True:
        with study_lock(cfg.study, store, name):
            reap_lost_trials(study, cfg.heartbeat)
            n = counts(study)
            if n["finished"] >= cfg.trials:
                break
            trial = study.ask() if n["finished"] + n["running"] < cfg.trials else None
        if trial is None:  # the last trials are running in other workers: wait for them (or for their loss)
            if not waiting_said:
                console.print(f"waiting for {n['running']} trial(s) running in other workers")
                waiting_said = True
            time.sleep(min(cfg.heartbeat, 5.0))
            continue
        trial.set_user_attr("worker", worker)
        trial.set_user_attr(HEARTBEAT_S, cfg.heartbeat)
        ok = run_trial(study, trial, space, cfg, runner)
        fails = 0 if ok else fails + 1
        require(fails < MAX_FAILS_IN_A_ROW, f"{fails} trials in a row failed (see `bl2 sweep status {cfg.study}`)")
    n = counts(study)
    best = best_trial(study)
    console.print(f"study {name!r}: {n['complete']} complete, {n['pruned']} pruned, {n['failed']} failed"
                  + (f"; best trial {best.number}: {runner.value_name} {best.value:.4f}" if best else ""),
                  soft_wrap=True)
    if best is not None and best.params:
        console.print(params_table(best.params, f"best trial {best.number}"))
    return n | {"best_trial": best and best.number, "best_value": best and best.value}


class TrainRunner:
    """Trains a trial's config as a run (loop.train) with the pruning hook; its value is the best val CE."""

    value_name = "val CE"

    def __init__(self, make_job, device: str):
        self.make_job, self.device = make_job, device

    def run(self, config, out: Path, info: dict, trial) -> dict:
        from bl2.distill.loop import train

        job = self.make_job(config)
        job.info = {"sweep": info}
        summary = train(job, str(out), device=self.device, hooks=[PruningHook(trial)])
        return {"stopped": summary.get("stopped"), "value": summary["best_val_ce"], "step": summary["step"]}


def _runner(cfg: SweepConfig, space: Space):
    """(the trials' runner, the space with the cache's temperatures). Validates the data/cache once, up front."""
    if cfg.kind == "finetune":
        from bl2.workflows.sweep.finetune import FinetuneRunner

        return FinetuneRunner(cfg), space
    make_job, space = _job_maker(cfg, space)
    return TrainRunner(make_job, cfg.device), space


def _job_maker(cfg: SweepConfig, space: Space):
    """(config -> Job, the space with the cache's temperatures). Students: the cache is opened (decoded) here,
    once for every trial of this worker."""
    from bl2.distill.job import cache_job, pretrain_job

    if cfg.kind == "teachers":
        pretrain_job(cfg.base, cfg.data)  # fails now, not in every trial, when DATA is wrong
        return (lambda c: pretrain_job(c, cfg.data)), space
    from bl2.cache.loader import open_cache

    opened = open_cache(cfg.cache, cfg.base.cache_in_memory)
    reader = opened.reader
    grid = [float(reader.sample_temperature)] if reader.mode == "sample" else reader.temperatures
    space = space.with_temperatures(grid, continuous_ok=reader.mode == "full")
    t = space.params.get("temperature")
    for value in ([] if t is None else t.extremes()):
        reader.temperature_index(value)  # one-line error for a T the cache cannot give
    probe = cfg.base if t is None else space.apply(cfg.base, {"temperature": t.extremes()[0]})
    cache_job(probe, opened, cfg.data)  # tokenizer and data checks, once
    return (lambda c: cache_job(c, opened, cfg.data)), space


def counts(study) -> dict:
    from optuna.trial import TrialState as S

    states = [t.state for t in study.get_trials(deepcopy=False)]
    n = {name: states.count(s) for name, s in (("complete", S.COMPLETE), ("pruned", S.PRUNED),
                                                 ("failed", S.FAIL), ("running", S.RUNNING), ("waiting", S.WAITING))}
    return n | {"finished": n["complete"] + n["pruned"]}


def best_trial(study):
    """The complete trial of least value (pruned trials never count), or None."""
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    return min(done, key=lambda t: (t.value, t.number)) if done else None


def reap_lost_trials(study, interval: float) -> list[int]:
    """Mark RUNNING trials without a heartbeat for GRACE_BEATS of their worker's intervals (default `interval`)
    FAIL (their worker died) and enqueue one retry of each configuration. Called under the study lock."""
    from optuna.trial import TrialState

    lost = []
    now = time.time()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        last = t.user_attrs.get(HEARTBEAT) or (t.datetime_start.timestamp() if t.datetime_start else now)
        if now - last <= GRACE_BEATS * float(t.user_attrs.get(HEARTBEAT_S, interval)):
            continue
        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        lost.append(t.number)
        retries = int(t.user_attrs.get("retries", 0))
        if retries < MAX_RETRIES and t.params:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number, "retries": retries + 1})
    if lost:
        from bl2.progress import console

        console.print(f"[yellow]trial(s) {', '.join(map(str, lost))}: worker lost (no heartbeat); marked failed, "
                      "retried with the same parameters")
    return lost


class _Heartbeat:
    """Records the trial's heartbeat every `interval` seconds while the trial runs (a daemon thread)."""

    def __init__(self, trial, interval: float):
        self.trial, self.interval, self.stop = trial, interval, threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self):
        while True:
            try:
                self.trial.set_user_attr(HEARTBEAT, time.time())
            except Exception:  # the trial was finished (e.g. declared lost by another worker): stop beating
                return
            if self.stop.wait(self.interval):
                return

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


class PruningHook:
    """A loop.train hook: reports val CE at every validation row and stops the run when Optuna prunes it."""

    def __init__(self, trial):
        self.trial = trial

    def __call__(self, row: dict) -> None:
        from bl2.distill.loop import StopRun

        if row.get("kind") != "val":
            return
        value = float(row["val_ce"])
        try:
            self.trial.report(value, int(row["step"]))
            prune = not math.isfinite(value) or self.trial.should_prune()
        except Exception as e:  # the storage says the trial is over: another worker declared it lost
            raise StopRun(f"lost: {e}") from None
        if prune:
            raise StopRun("diverged" if not math.isfinite(value) else "pruned")


def trial_dir(study: Path, number: int) -> Path:
    return Path(study) / "trials" / f"trial-{number:04d}"


def run_trial(study, trial, space: Space, cfg: SweepConfig, runner) -> bool:
    """Run one trial and tell Optuna how it ended; False when it failed (a user error in its config)."""
    from optuna.trial import TrialState

    from bl2.progress import console

    values = space.suggest(trial)
    out = trial_dir(cfg.study, trial.number)
    info = {"study": str(cfg.study.resolve()), "trial": trial.number, "params": values, "kind": cfg.kind}
    if "retry_of" in trial.user_attrs:
        info["retry_of"] = trial.user_attrs["retry_of"]
    # where the trial lives: with workers on many machines, `sweep status` and `confirm` read these from the database
    trial.set_user_attr("run_dir", str(out.resolve()))
    trial.set_user_attr("host", sweep_host())
    console.rule(f"[bold]trial {trial.number}: " + ", ".join(f"{k}={fmt_value(v)}" for k, v in values.items()))
    error, summary = None, None
    with _Heartbeat(trial, cfg.heartbeat):
        try:
            config = space.apply(cfg.base, values)
            trial.set_user_attr("config", config.to_dict())  # `sweep confirm` on a machine without the trial dir
            summary = runner.run(config, out, info, trial)
        except (UserError, Diverged) as e:  # this configuration cannot run (a batch larger than the data, lr 1e30)
            error = str(e)
        except BaseException:  # Ctrl-C or a crash: fail the trial, queue its retry, stop this worker
            with contextlib.suppress(Exception):
                study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
                if int(trial.user_attrs.get("retries", 0)) < MAX_RETRIES:
                    study.enqueue_trial(values, user_attrs={"retry_of": trial.number,
                                                            "retries": int(trial.user_attrs.get("retries", 0)) + 1})
            raise
    shutil.rmtree(out / "checkpoints", ignore_errors=True)  # trials are never resumed; the final model stays
    try:
        if error is not None:
            trial.set_user_attr("error", error)
            study.tell(trial, state=TrialState.FAIL)
            console.print(f"[red]trial {trial.number} failed: {error}")
            return False
        stopped = summary.get("stopped")
        if stopped:
            trial.set_user_attr("stopped", stopped)
            study.tell(trial, state=TrialState.PRUNED)
            console.print(f"trial {trial.number}: {stopped} at step {summary['step']}")
        else:
            study.tell(trial, summary["value"])
            console.print(f"trial {trial.number}: complete, {runner.value_name} {summary['value']:.4f}")
    except Exception as e:  # declared lost by another worker while it ran (a stalled machine): already retried
        console.print(f"[yellow]trial {trial.number}: result not recorded ({str(e).splitlines()[0]})")
    return True
