"""`bl2 report` (the paper's tables and figures from run dirs), `bl2 budget` (the BabyLM budget ledger) and
`bl2 export-metrics` (metrics.jsonl replayed into TensorBoard, W&B or MLflow)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bl2.cli.common import OverwriteOpt, user_errors


def report(
    runs: Annotated[list[str], typer.Argument(
        metavar="RUN_DIR..", help="Run dirs, or folders searched for run dirs (a sweep study, a runs/ folder).")],
    out: Annotated[Path, typer.Option(help="Folder for report.md, results.json and the figures (PNG + SVG).")],
    evals: Annotated[list[str] | None, typer.Option(
        "--evals", metavar="FILE|DIR",
        help="A JSON written by `bl2 eval loss|blimp|zero-shot --out` or `bl2 finetune --out` (OUT/results.json), or a "
        "folder searched for them; repeatable.")
    ] = None,
    cache: Annotated[list[str] | None, typer.Option(
        "--cache", metavar="CACHE", help="A cache whose diagnostics the report shows; repeatable.")] = None,
    label: Annotated[list[str] | None, typer.Option(
        "--label", metavar="DIR=NAME", help="Show run dir DIR as NAME; repeatable.")] = None,
    group: Annotated[list[str] | None, typer.Option(
        "--group", metavar="DIR=NAME", help="Put run dir DIR in group NAME instead of its role's; repeatable.")] = None,
    overwrite: OverwriteOpt = False,
):
    """The paper's figures and tables from run dirs, evaluations, caches and sweeps: OUT/report.md with training
    curves, every metric by group (Figure 1), BLiMP against validation CE (Figure 2), cache diagnostics and a
    results table. Needs matplotlib (the `report` extra of bl2)."""
    from bl2.workflows.report.build import ReportConfig, parse_pairs
    from bl2.workflows.report.build import report as run

    run(ReportConfig(runs=runs, out=out, evals=evals or [], caches=cache or [],
                     labels=parse_pairs(label or [], "--label"), groups=parse_pairs(group or [], "--group"),
                     overwrite=overwrite))


def budget(
    run_dir: Annotated[str, typer.Argument(metavar="RUN", help="A bl2 run dir (pretrain or distill).")],
    cap: Annotated[float | None, typer.Option("--cap-epochs", help="Exit 1 when the total exceeds this many "
                                              "epoch-equivalents (BabyLM: 10).")] = None,
    corpus_words: Annotated[str | None, typer.Option(help="Words in one epoch (default: train + val words of the "
                                                     "run's DATA dir), e.g. 10M for BabyLM strict-small.")] = None,
):
    """The BabyLM budget ledger: words each teacher was trained on, the run's own words seen, and the total in
    epoch-equivalents of the corpus (BabyLM caps training at 10 and counts the teachers' training text)."""
    from bl2.runs.budget import budget as run
    from bl2.runs.marks import parse_count

    if not run(run_dir, cap, parse_count(corpus_words, "--corpus-words") if corpus_words else None):
        raise typer.Exit(1)


def export_metrics(
    runs: Annotated[list[str], typer.Argument(
        metavar="RUN_DIR..", help="Run dirs, or folders searched for run dirs (a sweep study, a runs/ folder).")],
    to: Annotated[str, typer.Option(help="Sinks: a list of tensorboard, wandb and mlflow (as --report-to).")],
):
    """Replay the metrics.jsonl of finished (or running) run dirs into TensorBoard, W&B or MLflow: runs made
    before --report-to, or without it. Each run dir becomes one sink run, as if it had run with --report-to."""
    from bl2.runs.sinks import export

    export(runs, to)


def register(app: typer.Typer) -> None:
    app.command()(user_errors(report))
    app.command()(user_errors(budget))
    app.command("export-metrics")(user_errors(export_metrics))
