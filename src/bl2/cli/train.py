"""`bl2 pretrain` and `bl2 distill`: the commands that train a model (their training options come from
TrainConfig through bl2.cli.options)."""

from __future__ import annotations

from typing import Annotated

import typer

from bl2.cli.common import (
    DATA,
    DISTILL,
    ENSEMBLE_RULES,
    DeviceOpt,
    Ensemble,
    OverwriteOpt,
    StorageOpt,
    split_list,
    use_storage_options,
    user_errors,
)
from bl2.cli.options import ConfigOpt, ResumeOpt, RunOutOpt, train_config, train_options

DataOpt = Annotated[str, typer.Option(help="Prepared DATA_DIR (from `bl2 prepare`).", rich_help_panel=DATA)]


@train_options(distillation=False)
def pretrain(data: DataOpt, out: RunOutOpt, config: ConfigOpt = None, resume: ResumeOpt = False,
             overwrite: OverwriteOpt = False, device: DeviceOpt = "auto", storage_options: StorageOpt = None,
             train: dict | None = None):
    """Pretrain a Llama preset from scratch with cross-entropy (a teacher, or a no-distillation baseline)."""
    use_storage_options(storage_options)
    from bl2.distill.run import pretrain as run

    run(train_config(config, train), data, out, resume=resume, overwrite=overwrite, device=device)


@train_options(distillation=True)
def distill(
    out: RunOutOpt,
    cache: Annotated[str | None, typer.Option(help="Logit cache from `bl2 cache-logits`.",
                                              rich_help_panel=DATA)] = None,
    teachers: Annotated[str | None, typer.Option(help="Online baseline: teacher dirs T1,T2 run live.",
                                                 rich_help_panel=DATA)] = None,
    data: Annotated[str | None, typer.Option(help="DATA_DIR (default: the one recorded in the cache).",
                                             rich_help_panel=DATA)] = None,
    ensemble: Annotated[Ensemble, typer.Option(help="Online teachers: logit-mean (the paper) | prob-mean.",
                                               rich_help_panel=DISTILL)] = "logit-mean",
    fresh_offsets: Annotated[bool, typer.Option(
        "--fresh-offsets", metavar="", help="Online teachers: a fresh random window offset every epoch, as "
        "pretraining and the reference code (default: the cache's fixed windows, so online == a full cache).",
        rich_help_panel=DISTILL)] = False,
    teacher_words: Annotated[str | None, typer.Option(
        help="Words the teachers were trained on, for the budget ledger when their run.json cannot tell: one "
        "count for each (e.g. 80M) or one per teacher (80M,80M).", rich_help_panel=DISTILL)] = None,
    config: ConfigOpt = None, resume: ResumeOpt = False, overwrite: OverwriteOpt = False,
    device: DeviceOpt = "auto", storage_options: StorageOpt = None, train: dict | None = None,
):
    """Train a student on alpha * CE + (1 - alpha) * T^2 * KL(teachers || student), from a cache or live."""
    use_storage_options(storage_options)
    from bl2.distill.run import distill as run
    from bl2.runs.marks import parse_count

    cfg = train_config(config, train, alpha=0.5)  # a student: alpha 0.5 unless the file or the command line say
    run(cfg, out, cache=cache, teachers=split_list(teachers) or None, data_dir=data,
        ensemble=ENSEMBLE_RULES[ensemble], resume=resume, overwrite=overwrite, fresh_offsets=fresh_offsets,
        device=device, teacher_words=[parse_count(w, "--teacher-words") for w in split_list(teacher_words)])


def register(app: typer.Typer) -> None:
    app.command()(user_errors(pretrain))
    app.command()(user_errors(distill))
