"""`bl2 prepare`: clean, split and tokenize a corpus into a DATA dir."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bl2.cli.common import DATA, OUTPUT, OverwriteOpt, StorageOpt, use_storage_options, user_errors


def prepare(
    corpus_dir: Annotated[Path, typer.Argument(help="Folder of *.train (or *.txt) files, e.g. BabyLM train_10M.")],
    dev: Annotated[Path, typer.Option("--dev", help="Folder of *.dev (or *.txt) files: the test split.",
                                      rich_help_panel=DATA)],
    out: Annotated[str, typer.Option("--out", help="DATA_DIR to create (tokenizer files + tokens.zarr).",
                                     rich_help_panel=OUTPUT)],
    vocab_size: Annotated[int, typer.Option(help="BPE vocabulary size (260..65536).", rich_help_panel=DATA)] = 16000,
    val_fraction: Annotated[float, typer.Option(help="Last fraction of every train file's lines -> val.",
                                                rich_help_panel=DATA)] = 0.05,
    overwrite: OverwriteOpt = False,
    storage_options: StorageOpt = None,
):
    """Clean, split and tokenize a corpus into DATA_DIR. Empty files are skipped with a warning."""
    use_storage_options(storage_options)
    from bl2.data.prepare import PrepareConfig
    from bl2.data.prepare import prepare as run

    run(PrepareConfig(corpus_dir, dev, out, vocab_size=vocab_size, val_fraction=val_fraction, overwrite=overwrite))


def register(app: typer.Typer) -> None:
    app.command()(user_errors(prepare))
