"""`bl2 eval loss|blimp` (and, from cli/zero_shot.py, `eval zero-shot|ewok|entity-tracking|wug|comps|reading`):
score model dirs (several = each and their direct ensemble)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from bl2.cli.common import (
    DeviceOpt,
    OverwriteOpt,
    ReportToOpt,
    StorageOpt,
    check_report_to,
    report_evals,
    split_list,
    use_storage_options,
    user_errors,
)
from bl2.errors import UserError, require

eval_app = typer.Typer(help="Evaluate model dirs: held-out loss, BLiMP minimal pairs, the BabyLM 2025 zero-shot suite.",
                       no_args_is_help=True)
ModelsArg = Annotated[str, typer.Argument(
    metavar="MODEL_DIR[,MODEL_DIR..]",
    help="Any Hugging Face causal-LM dir(s) with a tokenizer. Several = the direct ensemble (raw logits averaged, "
    "then log-softmax), reported after each member.")]


@eval_app.command("loss")
@user_errors
def eval_loss(
    models: ModelsArg,
    data: Annotated[str, typer.Option(help="Prepared DATA_DIR whose split is scored.")],
    split: Annotated[Literal["test", "val", "train"], typer.Option(help="The split scored.")] = "test",
    seq_len: Annotated[int | None, typer.Option(help="Window length in tokens (>= 1; default: "
                                                "max_position_embeddings / 2).")] = None,
    batch_size: Annotated[int, typer.Option(help="Windows per forward.")] = 32,
    out: Annotated[Path | None, typer.Option(help="Write the results as JSON (and record them in each evaluated "
                                             "bl2 run dir: evals.json + its README.md card).")] = None,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = "auto",
    storage_options: StorageOpt = None,
    report_to: ReportToOpt = None,
):
    """Mean token cross-entropy and perplexity over the non-overlapping windows of a split."""
    use_storage_options(storage_options)
    from bl2.eval.loss import evaluate_loss
    from bl2.runs.card import loss_entries, record_entries

    require(seq_len is None or seq_len >= 1, f"--seq-len must be >= 1, got {seq_len}")
    sinks = check_report_to(report_to)
    report = evaluate_loss(split_list(models), data, split=split, batch_size=batch_size, device=device,
                           seq_len=seq_len, out=out, overwrite=overwrite)
    if out is not None:
        record_entries(loss_entries(report, out))
    report_evals(sinks, loss_entries(report, out))


@eval_app.command("blimp")
@user_errors
def eval_blimp(
    models: ModelsArg,
    suite: Annotated[Literal["filtered", "supplement", "all"], typer.Option(
        help="all also reports their mean.")] = "all",
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
    members: Annotated[bool, typer.Option(help="With several dirs, also report each member.", metavar="")] = True,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing --out / --log-samples files.",
                                            metavar="")] = False,
    report_to: ReportToOpt = None,
):
    """BLiMP minimal-pair accuracy, scored as the BabyLM 2024 pipeline (lm-eval) does: one BOS token as the
    prefix, sum of log p over the tokens of " " + sentence, correct when good >= bad (a tie counts as correct,
    the 2024 rule; ties are counted and reported); suite score = unweighted mean over subtasks (file stems)."""
    from bl2.eval.blimp import evaluate_blimp
    from bl2.runs.card import blimp_entries, record_entries
    from bl2.runtime import pick_device

    if data_dir is None:
        raise UserError("no BLiMP data dir: pass --data-dir DIR or set BL2_EVAL_DATA")
    sinks = check_report_to(report_to)
    dirs = [Path(m) for m in split_list(models)]
    results = evaluate_blimp(dirs, data_dir, suite=suite, limit=limit, batch_size=batch_size,
                             device=pick_device(device), out=out, log_samples=log_samples, overwrite=overwrite,
                             members=members)
    if out is not None:
        record_entries(blimp_entries(results, out, limit))
    report_evals(sinks, blimp_entries(results, out, limit))


def register(app: typer.Typer) -> None:
    from bl2.cli import zero_shot

    zero_shot.register(eval_app)
    app.add_typer(eval_app, name="eval")
