"""The training options of every command that trains (pretrain, distill, sweep teachers, sweep students), made
from one declaration: the fields of `bl2.distill.config.TrainConfig` (name, type, help with its unit, --help
panel; fixed choices are Literal types, so --help lists them and click checks them). `@train_options(...)` adds
one option per field to a command and hands the command the values given on the command line as `train`
(None = not given: the --config file, then the preset, decide). litgpt's argument dataclasses are the model."""

from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import fields
from pathlib import Path
from typing import Annotated

import typer

from bl2.cli.common import MODEL, OUTPUT, PANELS
from bl2.distill.config import TrainConfig

ConfigOpt = Annotated[Path | None, typer.Option(help="YAML file of config keys (command-line values win).",
                                                rich_help_panel=MODEL)]
NO_SWEEP = ("word_checkpoints",)  # fields a sweep trial does not take (trials keep only their final model)


def _option(f) -> inspect.Parameter:
    """A keyword-only Typer option for TrainConfig field `f`: `--name-with-dashes`, default None."""
    hint = typing.get_type_hints(TrainConfig)[f.name]
    args = typing.get_args(hint)
    base = next(a for a in args if a is not type(None)) if type(None) in args else hint  # `X | None` -> X
    flag = "--" + f.name.replace("_", "-")
    decls = (f"{flag}/--no-{flag[2:]}",) if base is bool else (flag,)
    default = f.default if f.default is not None and not isinstance(f.default, tuple) else None
    shown = "" if default is None or base is bool else f" [default: {default}]"
    info = typer.Option(*decls, help=f.metadata["help"] + shown, rich_help_panel=f.metadata["panel"],
                        show_default=False, metavar="" if base is bool else None)
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[base | None, info])


def _panel_rank(param: inspect.Parameter) -> int:
    """Where a parameter's --help panel comes (PANELS order; arguments and unpanelled options first)."""
    info = next((m for m in getattr(param.annotation, "__metadata__", ()) if hasattr(m, "rich_help_panel")), None)
    panel = getattr(info, "rich_help_panel", None)
    return PANELS.index(panel) + 1 if panel in PANELS else 0


def train_fields(distillation: bool, sweep: bool = False) -> list:
    """The TrainConfig fields a command offers: distillation fields only where a student is trained."""
    return [f for f in fields(TrainConfig) if (distillation or not f.metadata.get("distill_only"))
            and not (sweep and f.name in NO_SWEEP)]


def train_options(distillation: bool, sweep: bool = False):
    """Decorator: the command gets one option per offered TrainConfig field, and receives them as
    `train: dict` (only the options given; the command builds its config with `train_config`)."""

    def decorate(fn):
        offered = train_fields(distillation, sweep)
        names = [f.name for f in offered]
        sig = inspect.signature(fn, eval_str=True)  # real annotations: Typer reads ours from __signature__
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in sig.parameters.values() if p.name != "train"]

        @functools.wraps(fn)
        def wrapper(**kwargs):
            given = {name: kwargs.pop(name) for name in names}
            return fn(**kwargs, train={k: v for k, v in given.items() if v is not None})

        params = sorted(own + [_option(f) for f in offered], key=_panel_rank)  # stable: declaration order within
        wrapper.__signature__ = sig.replace(parameters=params)
        return wrapper

    return decorate


def train_config(config: Path | None, train: dict, **defaults) -> TrainConfig:
    """Preset defaults < the command's `defaults` < YAML file < command line (`train`, from @train_options)."""
    return TrainConfig.from_sources(config, train, defaults)


ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue from the newest checkpoint in --out.",
                                         rich_help_panel=OUTPUT, metavar="")]
RunOutOpt = Annotated[str, typer.Option(help="Run dir; becomes the final Hugging Face model dir.",
                                        rich_help_panel=OUTPUT)]
