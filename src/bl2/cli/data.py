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
    max_words: Annotated[str | None, typer.Option(
        help="Keep a random subset of the train split with at least this many words (e.g. 100K, 1M): nested "
        "across sizes for one --subset-seed; val, test and the tokenizer stay those of the whole corpus.",
        rich_help_panel=DATA)] = None,
    subset_seed: Annotated[int, typer.Option(help="Seed of the subset's line order.", rich_help_panel=DATA)] = 0,
    overwrite: OverwriteOpt = False,
    storage_options: StorageOpt = None,
):
    """Clean, split and tokenize a corpus into DATA_DIR. Empty files are skipped with a warning."""
    use_storage_options(storage_options)
    from bl2.data.prepare import PrepareConfig
    from bl2.data.prepare import prepare as run
    from bl2.runs.marks import parse_count

    words = None if max_words is None else parse_count(max_words, "--max-words")
    run(PrepareConfig(corpus_dir, dev, out, vocab_size=vocab_size, val_fraction=val_fraction, overwrite=overwrite,
                      max_words=words, subset_seed=subset_seed))


def register(app: typer.Typer) -> None:
    app.command()(user_errors(prepare))
