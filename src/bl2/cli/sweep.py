"""`bl2 sweep teachers|students|finetune|status|confirm`: Optuna studies over pretraining, cached-student or
fine-tuning runs (the trials' fixed training options come from TrainConfig through bl2.cli.options, as for
pretrain and distill; a fine-tuning sweep's from its recipe, as for `bl2 finetune`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bl2.cli.common import DATA, DeviceOpt, user_errors
from bl2.cli.finetune import DataDirOpt, HeadOpt, MaxTrainOpt, ModelArg, RecipeFileOpt, RecipeOpt, SelectOpt
from bl2.cli.options import ConfigOpt, train_config, train_options
from bl2.errors import require

SWEEP = "Sweep"
sweep_app = typer.Typer(help="Hyperparameter sweeps (Optuna TPE + Hyperband) of teachers, of students from "
                        "one cache, or of one task's fine-tuning.", no_args_is_help=True)

SpaceOpt = Annotated[str, typer.Option(
    help="Search space: a YAML file, or a space shipped with bl2 by name: teacher (the paper's teacher sweep), "
    "student (alpha, T and the optimiser), finetune (the paper's fine-tuning axes).", rich_help_panel=SWEEP)]
TrialsOpt = Annotated[int, typer.Option(help="Finished (complete + pruned) trials the study should reach.",
                                        rich_help_panel=SWEEP)]
StudyOpt = Annotated[Path, typer.Option(help="Study folder: study.json, study.db, trials/trial-NNNN/.",
                                        rich_help_panel=SWEEP)]
OptunaStorageOpt = Annotated[str | None, typer.Option(
    help="Optuna storage URL (default sqlite:///STUDY/study.db); workers on many machines: "
    "postgresql://USER[:PASS]@HOST:PORT/DB (the sweep-pg extra); or journal:PATH.", rich_help_panel=SWEEP)]
NetworkFsOpt = Annotated[bool, typer.Option(
    "--allow-sqlite-on-network-fs", help="Keep a SQLite study on NFS, CIFS/SMB, Lustre or FUSE (its locks do not "
    "hold there: use --storage postgresql://... instead).", rich_help_panel=SWEEP, metavar="")]
StudyNameOpt = Annotated[str | None, typer.Option(help="Study name in the storage (default: the folder's name).",
                                                  rich_help_panel=SWEEP)]
SamplerSeedOpt = Annotated[int, typer.Option(help="TPE sampler seed (worker w uses seed + w; >= 0).",
                                             rich_help_panel=SWEEP)]
StartupOpt = Annotated[int, typer.Option(help="Random trials before TPE models the results.", rich_help_panel=SWEEP)]
EtaOpt = Annotated[int, typer.Option(help="Hyperband reduction factor.", rich_help_panel=SWEEP)]
MinResourceOpt = Annotated[int | None, typer.Option(
    "--min-resource-steps", help="Hyperband's first rung in optimizer steps (default --val-every-steps).",
    rich_help_panel=SWEEP)]
HeartbeatOpt = Annotated[float, typer.Option(
    "--heartbeat-s", help="Seconds between a running trial's heartbeats; a trial silent for 3 of them is failed and "
    "retried by another worker.", rich_help_panel=SWEEP)]


def _sweep(kind: str, cfg, study, space, trials, storage, study_name, sampler_seed, startup_trials, eta,
           min_resource, heartbeat, device, allow_network_fs, **paths) -> None:
    from bl2.workflows.sweep.worker import SweepConfig, run_sweep

    run_sweep(SweepConfig(kind=kind, study=study, space=space, trials=trials, base=cfg, storage=storage,
                          study_name=study_name, sampler_seed=sampler_seed, startup_trials=startup_trials, eta=eta,
                          min_resource=min_resource, heartbeat=heartbeat, device=device,
                          allow_sqlite_on_network_fs=allow_network_fs, **paths))


@sweep_app.command("teachers")
@user_errors
@train_options(distillation=False, sweep=True)
def sweep_teachers(
    data: Annotated[str, typer.Option(help="Prepared DATA_DIR (from `bl2 prepare`).", rich_help_panel=DATA)],
    space: SpaceOpt, trials: TrialsOpt, study: StudyOpt, storage: OptunaStorageOpt = None,
    study_name: StudyNameOpt = None, sampler_seed: SamplerSeedOpt = 0, startup_trials: StartupOpt = 10,
    eta: EtaOpt = 3, min_resource: MinResourceOpt = None, heartbeat: HeartbeatOpt = 30.0,
    allow_sqlite_on_network_fs: NetworkFsOpt = False, config: ConfigOpt = None, device: DeviceOpt = "auto",
    train: dict | None = None,
):
    """Sweep pretraining hyperparameters (the paper's teacher sweep): every trial is a `bl2 pretrain` run under
    STUDY/trials/. The options fix every trial's config; the space overrides what it names. Rerun (or start
    more workers on the same --study) to continue until --trials trials are finished."""
    _sweep("teachers", train_config(config, train), study, space, trials, storage, study_name, sampler_seed,
           startup_trials, eta, min_resource, heartbeat, device, allow_sqlite_on_network_fs, data=data)


@sweep_app.command("students")
@user_errors
@train_options(distillation=True, sweep=True)
def sweep_students(
    cache: Annotated[str, typer.Option(help="Logit cache from `bl2 cache-logits` (opened once per worker).",
                                       rich_help_panel=DATA)],
    space: SpaceOpt, trials: TrialsOpt, study: StudyOpt,
    data: Annotated[str | None, typer.Option(help="DATA_DIR (default: the one recorded in the cache).",
                                             rich_help_panel=DATA)] = None,
    storage: OptunaStorageOpt = None, study_name: StudyNameOpt = None, sampler_seed: SamplerSeedOpt = 0,
    startup_trials: StartupOpt = 10, eta: EtaOpt = 3, min_resource: MinResourceOpt = None,
    heartbeat: HeartbeatOpt = 30.0, allow_sqlite_on_network_fs: NetworkFsOpt = False, config: ConfigOpt = None,
    device: DeviceOpt = "auto", train: dict | None = None,
):
    """Sweep distillation hyperparameters (alpha, T, lr, ...) of students trained from one cache: no teacher is
    ever loaded, and the cache is decoded once per worker when it fits in RAM. Same study mechanics as
    `bl2 sweep teachers`."""
    _sweep("students", train_config(config, train, alpha=0.5), study, space, trials, storage, study_name,
           sampler_seed, startup_trials, eta, min_resource, heartbeat, device, allow_sqlite_on_network_fs,
           cache=cache, data=data)


@sweep_app.command("finetune")
@user_errors
def sweep_finetune(
    model: ModelArg,
    task: Annotated[str, typer.Option(help="One task whose TASK.train/valid.jsonl are in --data-dir (rte, mrpc, wsc, "
                                      "mnli, ...).", rich_help_panel=DATA)],
    data_dir: DataDirOpt, space: SpaceOpt, trials: TrialsOpt, study: StudyOpt,
    recipe: RecipeOpt = "babylm2025", recipe_file: RecipeFileOpt = None, head: HeadOpt = "hf",
    select: SelectOpt = "last", max_train_examples: MaxTrainOpt = None,
    storage: OptunaStorageOpt = None, study_name: StudyNameOpt = None, sampler_seed: SamplerSeedOpt = 0,
    startup_trials: StartupOpt = 10, eta: EtaOpt = 3, heartbeat: HeartbeatOpt = 30.0,
    allow_sqlite_on_network_fs: NetworkFsOpt = False, device: DeviceOpt = "auto",
):
    """Sweep one task's fine-tuning hyperparameters (the paper's Appendix A): every trial is a `bl2 finetune` run
    under STUDY/trials/, its value the validation error (1 - the task's metric) that Hyperband reads after every
    epoch. The recipe fixes what the space does not name. `bl2 sweep confirm` re-runs the best with rounded
    values and new seeds."""
    from bl2.cli.finetune import hyper_of

    require(max_train_examples is None or max_train_examples >= 1, "--max-train-examples must be >= 1")
    _sweep("finetune", hyper_of(task, recipe, recipe_file), study, space, trials, storage, study_name, sampler_seed,
           startup_trials, eta, None, heartbeat, device, allow_sqlite_on_network_fs, data=str(data_dir),
           model=str(model), task=task, finetune={"head": head, "select": select, "max_train": max_train_examples})


@sweep_app.command("status")
@user_errors
def sweep_status(
    study: Annotated[Path, typer.Argument(help="Study folder (with --storage, on a machine without it: the study's "
                                          "name, or pass --study-name).")],
    storage: OptunaStorageOpt = None, study_name: StudyNameOpt = None,
    out: Annotated[Path | None, typer.Option(help="Also write the trials as JSON (a file).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out file.", metavar="")] = False,
):
    """Table of a study's trials: parameters, val CE, state (complete / pruned / failed / running), the host and
    worker of each, the best."""
    import json

    from bl2.errors import require
    from bl2.storage import require_writable_file, write_text_atomic
    from bl2.workflows.sweep.results import sweep_status as run

    if out is not None:
        require_writable_file(out, "--out")
        require(overwrite or not out.exists(), f"{out} exists; pass --overwrite to replace it")
    result = run(study, storage, study_name)
    if out is not None:
        write_text_atomic(out, json.dumps(result, indent=2, default=str))


@sweep_app.command("confirm")
@user_errors
def sweep_confirm(
    study: Annotated[Path, typer.Argument(help="Study folder (with --storage, on a machine without it: the study's "
                                          "name, or pass --study-name).")],
    seeds: Annotated[int, typer.Option(help="New seeds to re-train the best configuration with.")] = 3,
    storage: OptunaStorageOpt = None, study_name: StudyNameOpt = None,
    device: DeviceOpt = "auto",
):
    """Re-train the best complete trial's configuration from new seeds; prints their val CE (mean ± sd) against
    the sweep's value and writes STUDY/confirm.json. Rerun to resume."""
    from bl2.workflows.sweep.results import confirm

    confirm(study, seeds=seeds, device=device, storage=storage, study_name=study_name)


def register(app: typer.Typer) -> None:
    app.add_typer(sweep_app, name="sweep")
