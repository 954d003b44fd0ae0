"""The `bl2` command line: a thin Typer app, one module per noun (data: prepare; train: pretrain, distill; cache:
cache-logits and cache info|verify|compare; eval: eval loss|blimp; sweep; report: report, budget; quickstart).
Each command parses and validates its options, then calls one function of the packages below. The training
options of every command that trains are made from TrainConfig's fields (cli/options.py). Heavy imports (torch,
transformers, zarr) happen inside the commands so that `bl2 --help` stays instant. User mistakes end as one line
on stderr with exit code 2 (cli/common.py).
"""

from __future__ import annotations

import os
import sys

import typer
from typer.core import TyperCommand, TyperGroup

from bl2.cli import cache, data, finetune, quickstart, report, sweep, train
from bl2.cli import eval as eval_cli


class Bl2Group(TyperGroup):
    """The root command: a command-line mistake (an unknown option, a value outside an option's choices, a
    missing required option) is one line on stderr and exit code 2, like every other user mistake."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)  # typer.Exit(n) comes back as n
        except typer.Exit as e:
            sys.exit(e.exit_code)
        except typer.Abort:
            print("interrupted", file=sys.stderr)
            sys.exit(130)
        except typer.TyperException as e:  # click's exceptions, as Typer vendors them
            if type(e).__name__ == "NoArgsIsHelpError":  # `bl2` or `bl2 cache` alone: the help itself
                print(e.format_message(), file=sys.stderr)
                sys.exit(2)
            if os.environ.get("RANK", "0") != "0":  # under torchrun: every rank parses alike, rank 0 says it
                sys.exit(getattr(e, "exit_code", 2))
            ctx = getattr(e, "ctx", None)
            hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            print(f"error: {e.format_message().replace('Value error, ', '')}{hint}", file=sys.stderr)
            sys.exit(getattr(e, "exit_code", 2))
        sys.exit(code if isinstance(code, int) else 0)


def _help_option_without_type(get_help_option):
    """`--help` is a flag: no `<bool>` type in the help tables (Typer labels every option with its type)."""

    def wrapper(self, ctx):
        option = get_help_option(self, ctx)
        if option is not None and option.metavar is None:
            option.metavar = ""
        return option

    return wrapper


for _cls in (TyperCommand, TyperGroup):
    _cls.get_help_option = _help_option_without_type(_cls.get_help_option)

app = typer.Typer(
    cls=Bl2Group,
    help="bl2: BabyLlama-2 style ensemble distillation with teacher soft targets cached once in Zarr.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _setup() -> None:
    """Process-wide settings for every command (cheap: no heavy import)."""
    from bl2.runtime import tune_allocator

    tune_allocator()


for _module in (data, train, cache, eval_cli, finetune, sweep, report, quickstart):
    _module.register(app)
