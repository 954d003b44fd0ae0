"""What the commands of the `bl2` CLI share: the user-error wrapper (one stderr line, exit 2), the fsspec
storage options, the training options of pretrain / distill / sweep and their config assembly. Nothing heavy is
imported here (`bl2 --help` stays instant)."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated

import typer

from bl2.errors import UserError


def user_errors(fn):
    """Turn UserError (and Ctrl-C) into one clean stderr line and exit code 2 (130 for Ctrl-C)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise typer.Exit(130) from None

    return wrapper


StorageOpt = Annotated[str | None, typer.Option(
    "--storage-options", envvar="BL2_STORAGE_OPTIONS",
    help="JSON of fsspec options for s3:// (gs://, ...) locations, e.g. '{\"anon\": false}'; credentials and "
    "endpoint otherwise come from the usual environment (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ...).")]


def use_storage_options(value: str | None) -> None:
    """Apply --storage-options for every remote location of this process."""
    import json

    from bl2 import storage

    if value is None:
        return
    try:
        options = json.loads(value)
    except ValueError:
        raise UserError(f"--storage-options must be a JSON object, got {value!r}") from None
    if not isinstance(options, dict):
        raise UserError(f"--storage-options must be a JSON object, got {value!r}")
    storage.configure(options)


def split_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


ENSEMBLE_RULES = {"logit-mean": "logit_mean", "prob-mean": "prob_mean", "logit_mean": "logit_mean",
                  "prob_mean": "prob_mean"}


def ensemble_rule(name: str) -> str:
    """The ensemble rule an --ensemble value names (`logit-mean` or `prob-mean`, either spelling)."""
    if name not in ENSEMBLE_RULES:
        raise UserError(f"unknown --ensemble {name!r}; choose logit-mean or prob-mean")
    return ENSEMBLE_RULES[name]

# Options shared by pretrain and distill. None means "not given": the YAML file, then the preset, decide.
DeviceOpt = Annotated[str, typer.Option(help="auto (cuda, then mps, then cpu) | cpu | cuda | mps.")]
PresetOpt = Annotated[str, typer.Option(help="Model preset: debug | tiny | 16m | 345m.")]
OutOpt = Annotated[str, typer.Option(help="Run dir; becomes the final Hugging Face model dir.")]
SeedOpt = Annotated[int | None, typer.Option(help="Seed of init, data order and window offsets (default 0).")]
EpochsOpt = Annotated[int | None, typer.Option(help="Passes over the training windows (preset default).")]
LrOpt = Annotated[float | None, typer.Option(help="Peak learning rate (preset default).")]
BatchOpt = Annotated[int | None, typer.Option(help="Sequences per optimizer step (preset default).")]
AccumOpt = Annotated[int | None, typer.Option(help="Micro-batches per step (preset default).")]
WarmupOpt = Annotated[int | None, typer.Option(help="Linear warm-up steps before cosine decay (preset default).")]
WdOpt = Annotated[float | None, typer.Option(help="AdamW decay on matrices (preset default).")]
MaxStepsOpt = Annotated[int | None, typer.Option(help="Optimizer steps in total (overrides epochs).")]
LogEveryOpt = Annotated[int | None, typer.Option(help="Steps between log lines (default 10).")]
ValEveryOpt = Annotated[int | None, typer.Option(help="Steps between validations (default: each epoch's end).")]
CkptOpt = Annotated[int | None, typer.Option(help="Steps between checkpoints (default 200).")]
CompileOpt = Annotated[bool | None, typer.Option("--compile", help="torch.compile the model.")]
WordCkptOpt = Annotated[str | None, typer.Option(
    help="Save a Hugging Face model dir RUN/word-checkpoints/chck_1M/ .. as the run passes each count of words "
    "seen: `babylm` (1M..10M, 20M..100M, 200M..1000M: the BabyLM 2025 revisions) or a list like 1M,5M,500K.")]
ConfigOpt = Annotated[Path | None, typer.Option(help="YAML file of config keys (command-line values win).")]
ResumeOpt = Annotated[bool, typer.Option(help="Continue from the newest checkpoint in --out.")]
OverwriteOpt = Annotated[bool, typer.Option(help="Replace an existing run dir.")]


# the training options that pretrain and distill share (their parameters of the same names)
TRAIN_OPTIONS = ("seed", "epochs", "lr", "batch_size", "grad_accum", "warmup", "weight_decay", "max_steps",
                 "val_every", "log_every", "ckpt_every", "compile", "word_checkpoints")


def train_config(preset: str, config: Path | None, options: dict, **extra):
    """Preset defaults < YAML file < command line (`options`: the command's locals(); unset ones are None)."""
    from bl2.distill.config import TrainConfig

    values = {k: options.get(k) for k in TRAIN_OPTIONS} | extra
    return TrainConfig.from_sources(preset, config, {k: v for k, v in values.items() if v is not None})



def parse_floats(value: str | None, option: str) -> list[float] | None:
    if value is None:
        return None
    try:
        return [float(v) for v in split_list(value)]
    except ValueError:
        raise UserError(f"{option} takes comma-separated numbers, got {value!r}") from None


