"""`bl2 eval zero-shot` (the BabyLM 2025 zero-shot suite) and one command per task (`bl2 eval ewok`,
`entity-tracking`, `wug`, `comps`, `reading`): the same options, the task list fixed. Registered on `bl2 eval`.
No `from __future__ import annotations` here: each command's options are built in a closure, and Typer must
see their annotations as objects, not as strings naming closure variables."""

from pathlib import Path
from typing import Annotated, Literal

import typer

from bl2.cli.common import DeviceOpt, ReportToOpt, check_report_to, report_evals, split_list, user_errors
from bl2.errors import require

TASK_NAMES = "blimp,supplement,ewok,entity_tracking,wug_adj,wug_past,comps,reading"
ModelsArg = Annotated[str, typer.Argument(
    metavar="MODEL_DIR[,MODEL_DIR..]",
    help="Hugging Face causal-LM dir(s) with a fast tokenizer. Several = each, then their direct ensemble.")]


def run(models: str, data_dir: Path, which: str, tasks: list[str], out: Path | None, babylm_results: Path | None,
        revision: str, all_revisions: bool, zip_password: str | None, full_sentence_scores: bool,
        min_temperature: float, max_temperature: float | None, temperature_interval: float, batch_size: int,
        limit: int | None, device: str, members: bool, overwrite: bool, report_to: str | None = None) -> None:
    from bl2.eval.blimp import check_output
    from bl2.eval.zero_shot import suite
    from bl2.eval.zero_shot.scoring import temperatures
    from bl2.eval.zero_shot.tasks import zip_password as check_password
    from bl2.runtime import pick_device

    dirs = [Path(m) for m in split_list(models)]
    sinks = check_report_to(report_to)
    require(not (sinks and all_revisions), "--report-to takes the results of one revision (drop --all-revisions)")
    require(limit is None or limit >= 1, f"--limit must be >= 1, got {limit}")
    check_output(out, overwrite)
    require(babylm_results is None or overwrite or not any((babylm_results / d.stem).exists() for d in dirs),
            f"{babylm_results} already holds results of these models; pass --overwrite to replace them")
    temps = temperatures(min_temperature, max_temperature, temperature_interval)
    settings = suite.Settings(str(data_dir), which, tuple(tasks), tuple(temps), full_sentence_scores, batch_size,
                              pick_device(device), members, limit, revision)
    found, _ = suite.plan(settings)
    if "ewok" in found and found["ewok"].suffix == ".zip":
        check_password(zip_password)  # before any model is loaded
    targets = revisions(dirs, revision) if all_revisions else [(revision, dirs)]
    docs = {}
    for rev, model_dirs in targets:
        if all_revisions:
            suite.console.print(f"[bold]revision {rev}[/]")
        doc = suite.evaluate_zero_shot(model_dirs, settings, zip_password)
        if all_revisions:  # the official layout names a revision's results after the run, not the checkpoint
            for system, d in zip(doc["systems"], dirs):
                system["model_dirs"] = [str(d)]
        suite.print_table(doc)
        docs[rev] = doc
        if babylm_results is not None:
            written = suite.write_official(doc, babylm_results, rev)
            suite.console.print(f"official layout: {len(written)} task folders under {babylm_results}")
    if out is not None:
        import json

        from bl2.storage import write_text_atomic

        if all_revisions:
            body = {"revisions": {rev: suite.public(d) for rev, d in docs.items()}}
            write_text_atomic(out, json.dumps(body, indent=2, allow_nan=True) + "\n")
        else:
            from bl2.runs.card import record_zero_shot

            suite.write_results(docs[revision], out, settings.device)
            record_zero_shot(docs[revision], out)
        suite.console.print(f"results: {out}")
    if sinks:
        from bl2.runs.card import zero_shot_entries

        report_evals(sinks, zero_shot_entries(docs[revision], out))


def revisions(dirs: list[Path], revision: str) -> list[tuple[str, list[Path]]]:
    """(chck_* name, [checkpoint dir]) of every word checkpoint of one run dir, in word order."""
    from bl2.runs.marks import mark_dirs

    require(len(dirs) == 1, "--all-revisions takes one run dir")
    found = mark_dirs(dirs[0])
    require(bool(found), f"{dirs[0]} has no word checkpoints (train with --word-checkpoints)")
    return [(p.name, [p]) for p in found]


def command(tasks: tuple[str, ...] | None, doc: str):
    """A zero-shot command over `tasks` (None: the --tasks option chooses)."""

    @user_errors
    def cmd(
        models: ModelsArg,
        data_dir: Annotated[Path, typer.Option(
            "--data-dir", envvar="BL2_EVAL_DATA",
            help="The official evaluation_data folder (holding fast_eval/ and full_eval/), or one set folder.")],
        which: Annotated[Literal["fast", "full"], typer.Option(
            "--set", help="fast: eval_zero_shot_fast.sh's data; full: eval_zero_shot.sh's.")] = "fast",
        task_list: Annotated[str, typer.Option(
            "--tasks", help=f"Comma-separated subset of {TASK_NAMES}; a task without data is skipped with a "
            "line.", hidden=tasks is not None)] = TASK_NAMES,
        out: Annotated[Path | None, typer.Option(help="Write the results JSON (per task: score, per-UID "
                                                 "scores, items, ties, seconds, temperature).")] = None,
        babylm_results: Annotated[Path | None, typer.Option(
            help="Also write the official results layout (DIR/<model>/<revision>/zero_shot/causal/...) that the "
            "official collate_preds.py reads.")] = None,
        revision: Annotated[str, typer.Option(help="Revision name in the official layout.")] = "main",
        all_revisions: Annotated[bool, typer.Option(
            "--all-revisions", help="Evaluate every word checkpoint (chck_*) of the run dir, as the official "
            "eval_zero_shot_fast_all_revisions.sh.", metavar="")] = False,
        zip_password: Annotated[str | None, typer.Option(
            envvar="BL2_EVAL_ZIP_PASSWORD", help="Password of ewok_fast.zip (published in the official "
            "pipeline's README); the zip is read in memory only.")] = None,
        full_sentence_scores: Annotated[bool, typer.Option(
            "--full-sentence-scores", help="EWoK: score context + target, not just the target.", metavar="")] = False,
        min_temperature: Annotated[float, typer.Option(help="Logits are divided by the temperature.")] = 1.0,
        max_temperature: Annotated[float | None, typer.Option(
            help="Sweep temperatures up to this one and report the best (the official option).")] = None,
        temperature_interval: Annotated[float, typer.Option(help="Step of the temperature sweep.")] = 0.05,
        batch_size: Annotated[int, typer.Option(help="Sequences per forward pass.")] = 64,
        limit: Annotated[int | None, typer.Option(help="Only the first N items of each file (a quick look; not "
                                                  "comparable with official scores).")] = None,
        device: DeviceOpt = "auto",
        members: Annotated[bool, typer.Option(help="With several dirs, also score each member.", metavar="")] = True,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.", metavar="")] = False,
        report_to: ReportToOpt = None,
    ):
        chosen = list(tasks) if tasks is not None else split_list(task_list)
        run(models, data_dir, which, chosen, out, babylm_results, revision, all_revisions, zip_password,
            full_sentence_scores, min_temperature, max_temperature, temperature_interval, batch_size, limit, device,
            members, overwrite, report_to)

    cmd.__doc__ = doc
    return cmd


COMMANDS = {
    "zero-shot": (None, "The BabyLM 2025 zero-shot suite, scored as the official pipeline scores a causal model "
                        "(same tokenization, completion-only log-probs, first-of-tied choice, per-UID macro means), "
                        "in one process."),
    "ewok": (("ewok",), "EWoK: P(target | context) of the two targets; accuracy per domain, macro mean."),
    "entity-tracking": (("entity_tracking",), "Entity tracking: the options' log-probs after the prefix; "
                        "accuracy per split and number of operations."),
    "wug": (("wug_adj", "wug_past"), "WUG adjective nominalization and past tense: Spearman's rho of P(first) "
            "against the human ratio."),
    "comps": (("comps",), "COMPS (full set only): property phrase after the acceptable vs unacceptable prefix."),
    "reading": (("reading",), "Reading: surprisal as a predictor of eye-tracking and self-paced reading times "
                "(gain in R^2 over the baseline regression, %)."),
}


def register(app: typer.Typer) -> None:
    for name, (tasks, doc) in COMMANDS.items():
        app.command(name)(command(tasks, doc))
