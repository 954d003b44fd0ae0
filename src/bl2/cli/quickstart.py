"""`bl2 quickstart`: the whole pipeline end to end, on the built-in sample corpus or on real data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bl2.cli.common import DeviceOpt, OverwriteOpt, user_errors
from bl2.distill.config import Preset


def quickstart(
    out: Annotated[Path, typer.Option(help="Folder for everything the pipeline writes.")] = Path("bl2-quickstart"),
    corpus: Annotated[Path | None, typer.Option(help="Real data: *.train files (e.g. BabyLM train_10M).")] = None,
    dev: Annotated[Path | None, typer.Option(help="Real data: folder of *.dev files.")] = None,
    blimp_dir: Annotated[Path | None, typer.Option(help="Real data: BabyLM evaluation_data dir.")] = None,
    preset: Annotated[Preset, typer.Option(help="Preset of teachers and student.")] = "tiny",
    vocab_size: Annotated[int | None, typer.Option(help="BPE vocabulary (default 2000 built-in, 16000 real).")] = None,
    sample_lines: Annotated[int | None, typer.Option(help="Built-in corpus: lines of training text.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs of each teacher and of the student.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Sequences per step (default 32).")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Cap on the steps of each model.")] = None,
    k: Annotated[int | None, typer.Option(help="Cached top-k (default 64).")] = None,
    eval_limit: Annotated[int | None, typer.Option(help="Pairs per BLiMP subtask (default: all).")] = None,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = "auto",
):
    """Run the whole pipeline (prepare, 2 teachers, cache, student, eval) on the built-in sample corpus:
    no download, no GPU, a few minutes on a laptop CPU. With --corpus/--dev/--blimp-dir, on real data."""
    from bl2.workflows.quickstart import QuickstartConfig
    from bl2.workflows.quickstart import quickstart as run

    if vocab_size is None:
        vocab_size = 2000 if corpus is None else 16000
    given = dict(sample_lines=sample_lines, epochs=epochs, batch_size=batch_size, max_steps=max_steps, k=k,
                 eval_limit=eval_limit)  # None = the QuickstartConfig default
    run(QuickstartConfig(out=out, corpus=corpus, dev=dev, blimp_dir=blimp_dir, preset=preset, vocab_size=vocab_size,
                         overwrite=overwrite, device=device, **{n: v for n, v in given.items() if v is not None}))


def register(app: typer.Typer) -> None:
    app.command()(user_errors(quickstart))
