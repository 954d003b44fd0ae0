"""The `bl2` command line: a thin Typer app. Each command parses and validates its options, then calls one
function of the package. Heavy imports (torch, transformers, zarr) happen inside the commands so that
`bl2 --help` stays instant. User mistakes end as one line on stderr with exit code 2.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated

import typer

from bl2.errors import UserError

app = typer.Typer(
    help="bl2: BabyLlama-2 style ensemble distillation with teacher soft targets cached once in Zarr.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
cache_app = typer.Typer(help="Inspect, verify and compare teacher-logit caches.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate model dirs: BLiMP minimal pairs, held-out loss.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")
app.add_typer(eval_app, name="eval")


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


def split_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


# ----------------------------------------------------------------------------------------------- prepare
@app.command()
@user_errors
def prepare(
    corpus_dir: Annotated[Path, typer.Argument(help="Folder of *.train (or *.txt) files, e.g. BabyLM train_10M.")],
    dev: Annotated[Path, typer.Option("--dev", help="Folder of *.dev (or *.txt) files: the test split.")],
    out: Annotated[Path, typer.Option("--out", help="DATA_DIR to create (tokenizer files + tokens.zarr).")],
    vocab_size: Annotated[int, typer.Option(help="BPE vocabulary size (260..65536).")] = 16000,
    val_fraction: Annotated[float, typer.Option(help="Last fraction of every train file's lines -> val.")] = 0.05,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing DATA_DIR.")] = False,
):
    """Clean, split and tokenize a corpus into DATA_DIR. Empty files are skipped with a warning."""
    from bl2.data.prepare import PrepareConfig
    from bl2.data.prepare import prepare as run

    run(PrepareConfig(corpus_dir, dev, out, vocab_size=vocab_size, val_fraction=val_fraction, overwrite=overwrite))


# ----------------------------------------------------------------------------------------------- pretrain
# ----------------------------------------------------------------------------------------------- cache-logits
# ----------------------------------------------------------------------------------------------- distill
# ----------------------------------------------------------------------------------------------- eval
# ----------------------------------------------------------------------------------------------- quickstart
