"""What the commands of the `bl2` CLI share: the error wrapper (a user mistake is one stderr line and exit code
2; a diverged run one line and exit 1), the options every family of commands repeats (device, output,
object-storage options), and small parsers. Nothing heavy is imported here (`bl2 --help` stays instant)."""

from __future__ import annotations

import functools
import sys
from typing import Annotated, Literal

import typer

from bl2.errors import Diverged, UserError

# --help panels, in the order a command shows them
PANELS = ("Data", "Model", "Optimisation", "Schedule", "Distillation", "Checkpoints", "Output", "Distributed")
DATA, MODEL, OPTIM, SCHEDULE, DISTILL, CKPT, OUTPUT, DISTRIBUTED = PANELS


def user_errors(fn):
    """Turn UserError into one clean stderr line and exit code 2, Diverged into one line and exit 1, Ctrl-C into
    exit code 130. Under torchrun only rank 0 prints an error every rank raised alike (bl2.runtime.Dist.on_main
    broadcasts rank 0's decisions); an error of another rank alone is printed with its rank."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            _say(e)
            raise typer.Exit(2) from None
        except Diverged as e:
            _say(e)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise typer.Exit(130) from None

    return wrapper


def _say(error: Exception) -> None:
    """Rank 0 prints; another rank prints only an error rank 0 cannot have seen, and only after a pause: an
    input check every rank makes fails on rank 0 too, torchrun then stops this rank before the pause is over,
    and the user reads the line once."""
    import os
    import time

    from bl2.runtime import dist_env
    env = dist_env()
    if env.rank != 0 and getattr(error, "shared", False):
        return
    if env.rank != 0:
        time.sleep(float(os.environ.get("BL2_RANK_ERROR_PAUSE_S", "5")))
    prefix = "" if env.world_size == 1 or env.rank == 0 else f"[rank {env.rank}] "
    print(f"error: {prefix}{error}", file=sys.stderr)


Device = Literal["auto", "cpu", "cuda", "mps"]
DeviceOpt = Annotated[Device, typer.Option(help="auto: cuda, then mps, then cpu.", rich_help_panel=DISTRIBUTED)]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output that bl2 made.",
                                            rich_help_panel=OUTPUT, metavar="")]
StorageOpt = Annotated[str | None, typer.Option(
    "--storage-options", envvar="BL2_STORAGE_OPTIONS", rich_help_panel=DATA,
    help="JSON of fsspec options for s3:// (gs://, ...) locations, e.g. '{\"anon\": false}'; credentials and "
    "endpoint otherwise come from the usual environment (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ...).")]
Ensemble = Literal["logit-mean", "prob-mean"]
ENSEMBLE_RULES = {"logit-mean": "logit_mean", "prob-mean": "prob_mean"}


def use_storage_options(value: str | None) -> None:
    """Apply --storage-options for every remote location of this process (none given: none, so a command never
    inherits the options of an earlier one run in the same process)."""
    import json

    from bl2 import storage

    if value is None:
        storage.configure({})
        return
    try:
        options = json.loads(value)
    except ValueError:
        raise UserError(f"--storage-options must be a JSON object, got {value!r}") from None
    if not isinstance(options, dict):
        raise UserError(f"--storage-options must be a JSON object, got {value!r}")
    storage.configure(options)


def split_list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def parse_floats(value: str | None, option: str) -> list[float] | None:
    if value is None:
        return None
    try:
        return [float(v) for v in split_list(value)]
    except ValueError:
        raise UserError(f"{option} takes comma-separated numbers, got {value!r}") from None


ReportToOpt = Annotated[str | None, typer.Option(
    help="Also log the results of each evaluated bl2 run dir into the runs its training reported to (RUN/tracking."
    "json): none, or a list of tensorboard, wandb and mlflow.", rich_help_panel=OUTPUT)]


def check_report_to(report_to: str | None) -> tuple[str, ...]:
    """The sinks of an eval's --report-to, their packages checked before any model is loaded."""
    from bl2.runs.sinks import require_installed

    return require_installed(report_to)


def report_evals(sinks: tuple[str, ...], entries: list) -> None:
    """An eval's results (card entries: run dir, task, key, entry) into the sink runs of their run dirs."""
    if sinks:
        from bl2.runs.sinks import report_evals as run

        run(sinks, entries)
