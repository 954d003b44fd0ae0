"""`bl2 cache info|verify|compare` and `bl2 eval loss|blimp`: the inspection and evaluation sub-commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bl2.cli.options import DeviceOpt, StorageOpt, split_list, use_storage_options, user_errors
from bl2.errors import UserError

cache_app = typer.Typer(help="Inspect, verify and compare teacher-logit caches.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate model dirs: BLiMP minimal pairs, held-out loss.", no_args_is_help=True)


@cache_app.command("info")
@user_errors
def cache_info(
    cache: Annotated[str, typer.Argument(help="Cache path.")],
    storage_options: StorageOpt = None,
):
    """Attrs, arrays (shape, dtype, chunks), size on disk, bytes per token and diagnostics of a cache."""
    use_storage_options(storage_options)
    from bl2.cache.info import cache_info as run

    run(cache)


@cache_app.command("verify")
@user_errors
def cache_verify(
    cache: Annotated[str, typer.Argument(help="Cache path.")],
    data: Annotated[str | None, typer.Option(help="DATA_DIR to check input_ids against (default: recorded).")] = None,
    teachers: Annotated[str | None, typer.Option(help="Teacher dirs: recompute random windows and compare.")] = None,
    windows: Annotated[int, typer.Option(help="Windows to recompute with --teachers.")] = 4,
    device: Annotated[str, typer.Option(help="Device for the recomputation.")] = "auto",
    storage_options: StorageOpt = None,
):
    """Read everything (checksums), check attrs, counts, tokens and ordering; exit 1 if any check fails."""
    use_storage_options(storage_options)
    from bl2.cache.verify import verify

    ok = verify(cache, data=data, teachers=split_list(teachers) if teachers else None,
                n_windows=windows, device=device)
    if not ok:
        raise typer.Exit(1)


@cache_app.command("compare")
@user_errors
def cache_compare(
    sparse: Annotated[str, typer.Argument(help="A topk, sample or hybrid cache.")],
    full: Annotated[str, typer.Argument(help="A full-mode cache of the same windows (same teachers and data).")],
    windows: Annotated[int | None, typer.Option(help="Compare only the first N windows per alignment.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write the table as JSON.")] = None,
    storage_options: StorageOpt = None,
):
    """How far a sparse cache's targets are from the full distribution: KL, head mass, gradient error, and the
    KL a lossy compact encoding adds."""
    use_storage_options(storage_options)
    from bl2.cache.compare import compare

    compare(sparse, full, max_windows=windows, out=out)


# ----------------------------------------------------------------------------------------------- eval
@eval_app.command("loss")
@user_errors
def eval_loss(
    models: Annotated[str, typer.Argument(help="Model dir, or comma-separated dirs (each + their direct ensemble).")],
    data: Annotated[str, typer.Option(help="Prepared DATA_DIR whose split is scored.")],
    split: Annotated[str, typer.Option(help="test | val | train.")] = "test",
    seq_len: Annotated[int | None, typer.Option(help="Window length (default: max_position_embeddings / 2).")] = None,
    batch_size: Annotated[int, typer.Option(help="Windows per forward.")] = 32,
    out: Annotated[Path | None, typer.Option(help="Write the results as JSON (and record them in each evaluated "
                                             "bl2 run dir: evals.json + its README.md card).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out file.")] = False,
    device: DeviceOpt = "auto",
    storage_options: StorageOpt = None,
):
    """Mean token cross-entropy and perplexity over the non-overlapping windows of a split."""
    use_storage_options(storage_options)
    from bl2.eval.loss import evaluate_loss

    report = evaluate_loss(split_list(models), data, split=split, batch_size=batch_size, device=device,
                           seq_len=seq_len, out=out, overwrite=overwrite)
    if out is not None:
        from bl2.runs.card import record_loss

        record_loss(report, out)


@eval_app.command("blimp")
@user_errors
def eval_blimp(
    models: Annotated[str, typer.Argument(
        metavar="MODEL_DIR[,MODEL_DIR..]",
        help="Any Hugging Face causal-LM dir(s) with a tokenizer. Several = the direct ensemble (raw logits "
        "averaged, then log-softmax), reported after each member.")],
    suite: Annotated[str, typer.Option(help="filtered | supplement | all (all also reports their mean).")] = "all",
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", envvar="BL2_EVAL_DATA",
        help="BabyLM evaluation_data layout: DIR/blimp_filtered/*.jsonl, DIR/supplement_filtered/*.jsonl. "
        "A DIR holding *.jsonl files itself (e.g. the original BLiMP) is one filtered-style suite named "
        "after the folder (--suite filtered or all).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write results JSON (per subtask acc, n and ties, suite "
                                             "scores, model dirs, settings) and record the suite scores in each "
                                             "evaluated bl2 run dir (evals.json + its README.md card).")] = None,
    log_samples: Annotated[Path | None, typer.Option("--log-samples", help="Write one JSON line per pair "
                                                     "(sentences, logp_good, logp_bad, correct, tie).")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N pairs of each subtask.")] = None,
    batch_size: Annotated[int, typer.Option(help="Sentences per forward pass.")] = 64,
    device: DeviceOpt = "auto",
    members: Annotated[bool, typer.Option(help="With several dirs, also report each member.")] = True,
    overwrite: Annotated[bool, typer.Option(help="Replace existing --out / --log-samples files.")] = False,
):
    """BLiMP minimal-pair accuracy, scored as the BabyLM 2024 pipeline (lm-eval) does: one BOS token as the
    prefix, sum of log p over the tokens of " " + sentence, correct when good >= bad (a tie counts as correct,
    the 2024 rule; ties are counted and reported); suite score = unweighted mean over subtasks (file stems)."""
    from bl2.eval.blimp import evaluate_blimp
    from bl2.runtime import pick_device

    if data_dir is None:
        raise UserError("no BLiMP data dir: pass --data-dir DIR or set BL2_EVAL_DATA")
    dirs = [Path(m) for m in split_list(models)]
    results = evaluate_blimp(dirs, data_dir, suite=suite, limit=limit, batch_size=batch_size,
                             device=pick_device(device), out=out, log_samples=log_samples, overwrite=overwrite,
                             members=members)
    if out is not None:
        from bl2.runs.card import record_blimp

        record_blimp(results, out, limit)


