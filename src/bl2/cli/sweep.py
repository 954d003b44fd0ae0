"""`bl2 sweep teachers|students|status|confirm`: Optuna studies over pretraining or cached-student runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bl2.cli.options import (
    AccumOpt,
    BatchOpt,
    CkptOpt,
    CompileOpt,
    ConfigOpt,
    DeviceOpt,
    EpochsOpt,
    LogEveryOpt,
    LrOpt,
    MaxStepsOpt,
    PresetOpt,
    SeedOpt,
    ValEveryOpt,
    WarmupOpt,
    WdOpt,
    train_config,
    user_errors,
)

sweep_app = typer.Typer(help="Hyperparameter sweeps (Optuna TPE + Hyperband) of teachers, or of students from "
                        "one cache.", no_args_is_help=True)

SpaceOpt = Annotated[Path, typer.Option(help="Search space YAML (e.g. sweeps/teacher.yaml).")]
TrialsOpt = Annotated[int, typer.Option(help="Finished (complete + pruned) trials the study should reach.")]
StudyOpt = Annotated[Path, typer.Option(help="Study folder: study.json, study.db, trials/trial-NNNN/.")]
OptunaStorageOpt = Annotated[str | None, typer.Option(
    help="Optuna storage URL (default sqlite:///STUDY/study.db), e.g. postgresql://..., or journal:PATH.")]
StudyNameOpt = Annotated[str | None, typer.Option(help="Study name in the storage (default: the folder's name).")]
SamplerSeedOpt = Annotated[int, typer.Option(help="TPE sampler seed (worker w uses seed + w).")]
StartupOpt = Annotated[int, typer.Option(help="Random trials before TPE models the results.")]
EtaOpt = Annotated[int, typer.Option(help="Hyperband reduction factor.")]
MinResourceOpt = Annotated[int | None, typer.Option(help="Hyperband's first rung in steps (default --val-every).")]
HeartbeatOpt = Annotated[float, typer.Option(help="Seconds between a running trial's heartbeats; a trial silent "
                                             "for 3 of them is failed and retried by another worker.")]


def _sweep(kind: str, cfg, options: dict, **paths) -> None:
    from bl2.workflows.sweep.worker import SweepConfig, run_sweep

    run_sweep(SweepConfig(kind=kind, study=options["study"], space=options["space"], trials=options["trials"],
                          base=cfg, storage=options["storage"], study_name=options["study_name"],
                          sampler_seed=options["sampler_seed"], startup_trials=options["startup_trials"],
                          eta=options["eta"], min_resource=options["min_resource"], heartbeat=options["heartbeat"],
                          device=options["device"], **paths))


@sweep_app.command("teachers")
@user_errors
def sweep_teachers(
    data: Annotated[str, typer.Option(help="Prepared DATA_DIR (from `bl2 prepare`).")],
    space: SpaceOpt,
    trials: TrialsOpt,
    study: StudyOpt,
    preset: PresetOpt,
    storage: OptunaStorageOpt = None,
    study_name: StudyNameOpt = None,
    sampler_seed: SamplerSeedOpt = 0,
    startup_trials: StartupOpt = 10,
    eta: EtaOpt = 3,
    min_resource: MinResourceOpt = None,
    heartbeat: HeartbeatOpt = 30.0,
    seed: SeedOpt = None,
    epochs: EpochsOpt = None,
    lr: LrOpt = None,
    batch_size: BatchOpt = None,
    grad_accum: AccumOpt = None,
    warmup: WarmupOpt = None,
    weight_decay: WdOpt = None,
    max_steps: MaxStepsOpt = None,
    val_every: ValEveryOpt = None,
    log_every: LogEveryOpt = None,
    ckpt_every: CkptOpt = None,
    compile: CompileOpt = None,
    config: ConfigOpt = None,
    device: DeviceOpt = "auto",
):
    """Sweep pretraining hyperparameters (the paper's teacher sweep): every trial is a `bl2 pretrain` run under
    STUDY/trials/. The options fix every trial's config; the space overrides what it names. Rerun (or start
    more workers on the same --study) to continue until --trials trials are finished."""
    _sweep("teachers", train_config(preset, config, locals()), locals(), data=data)


@sweep_app.command("students")
@user_errors
def sweep_students(
    cache: Annotated[str, typer.Option(help="Logit cache from `bl2 cache-logits` (decoded once per worker).")],
    space: SpaceOpt,
    trials: TrialsOpt,
    study: StudyOpt,
    preset: PresetOpt,
    data: Annotated[str | None, typer.Option(help="DATA_DIR (default: the one recorded in the cache).")] = None,
    alpha: Annotated[float, typer.Option(help="Weight of CE (unless the space searches alpha).")] = 0.5,
    temperature: Annotated[float, typer.Option(help="Distillation temperature (unless searched).")] = 1.0,
    kl_reduction: Annotated[str, typer.Option(help="sequence (as the reference) | token.")] = "sequence",
    cache_in_memory: Annotated[str, typer.Option(help="yes (decode once, reuse in every trial) | auto | no.")] = "yes",
    shuffle_buffer: Annotated[int | None, typer.Option(help="Windows shuffled together (default 8192).")] = None,
    storage: OptunaStorageOpt = None,
    study_name: StudyNameOpt = None,
    sampler_seed: SamplerSeedOpt = 0,
    startup_trials: StartupOpt = 10,
    eta: EtaOpt = 3,
    min_resource: MinResourceOpt = None,
    heartbeat: HeartbeatOpt = 30.0,
    seed: SeedOpt = None,
    epochs: EpochsOpt = None,
    lr: LrOpt = None,
    batch_size: BatchOpt = None,
    grad_accum: AccumOpt = None,
    warmup: WarmupOpt = None,
    weight_decay: WdOpt = None,
    max_steps: MaxStepsOpt = None,
    val_every: ValEveryOpt = None,
    log_every: LogEveryOpt = None,
    ckpt_every: CkptOpt = None,
    compile: CompileOpt = None,
    config: ConfigOpt = None,
    device: DeviceOpt = "auto",
):
    """Sweep distillation hyperparameters (alpha, T, lr, ...) of students trained from one cache: no teacher is
    ever loaded. Same study mechanics as `bl2 sweep teachers`."""
    cfg = train_config(preset, config, locals(), alpha=alpha, temperature=temperature, kl_reduction=kl_reduction,
                       shuffle_buffer=shuffle_buffer)
    _sweep("students", cfg, locals(), cache=cache, data=data, cache_in_memory=cache_in_memory)


@sweep_app.command("status")
@user_errors
def sweep_status(
    study: Annotated[Path, typer.Argument(help="Study folder.")],
    storage: OptunaStorageOpt = None,
    out: Annotated[Path | None, typer.Option(help="Also write the trials as JSON.")] = None,
):
    """Table of a study's trials: parameters, val CE, state (complete / pruned / failed / running), the best."""
    import json

    from bl2.workflows.sweep.results import sweep_status as run

    result = run(study, storage)
    if out is not None:
        out.write_text(json.dumps(result, indent=2, default=str))


@sweep_app.command("confirm")
@user_errors
def sweep_confirm(
    study: Annotated[Path, typer.Argument(help="Study folder.")],
    seeds: Annotated[int, typer.Option(help="New seeds to re-train the best configuration with.")] = 3,
    storage: OptunaStorageOpt = None,
    device: DeviceOpt = "auto",
):
    """Re-train the best complete trial's configuration from new seeds; prints their val CE (mean ± sd) against
    the sweep's value and writes STUDY/confirm.json. Rerun to resume."""
    from bl2.workflows.sweep.results import confirm

    confirm(study, seeds=seeds, device=device, storage=storage)


