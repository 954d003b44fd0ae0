"""The `bl2` command line: a thin Typer app. Each command parses and validates its options, then calls one
function of the package. Heavy imports (torch, transformers, zarr) happen inside the commands so that
`bl2 --help` stays instant. User mistakes end as one line on stderr with exit code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bl2.cli.inspect import cache_app, eval_app
from bl2.cli.options import (
    AccumOpt,
    BatchOpt,
    CkptOpt,
    CompileOpt,
    ConfigOpt,
    DeviceOpt,
    EpochsOpt,
    LogEveryOpt,
    LrOpt,
    MaxStepsOpt,
    OutOpt,
    OverwriteOpt,
    PresetOpt,
    ResumeOpt,
    SeedOpt,
    StorageOpt,
    ValEveryOpt,
    WarmupOpt,
    WdOpt,
    WordCkptOpt,
    ensemble_rule,
    parse_floats,
    split_list,
    train_config,
    use_storage_options,
    user_errors,
)
from bl2.cli.sweep import sweep_app

app = typer.Typer(
    help="bl2: BabyLlama-2 style ensemble distillation with teacher soft targets cached once in Zarr.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(cache_app, name="cache")
app.add_typer(eval_app, name="eval")
app.add_typer(sweep_app, name="sweep")


@app.callback()
def _setup() -> None:
    """Process-wide settings for every command (cheap: no heavy import)."""
    from bl2.runtime import tune_allocator

    tune_allocator()



# ----------------------------------------------------------------------------------------------- prepare
@app.command()
@user_errors
def prepare(
    corpus_dir: Annotated[Path, typer.Argument(help="Folder of *.train (or *.txt) files, e.g. BabyLM train_10M.")],
    dev: Annotated[Path, typer.Option("--dev", help="Folder of *.dev (or *.txt) files: the test split.")],
    out: Annotated[str, typer.Option("--out", help="DATA_DIR to create (tokenizer files + tokens.zarr).")],
    vocab_size: Annotated[int, typer.Option(help="BPE vocabulary size (260..65536).")] = 16000,
    val_fraction: Annotated[float, typer.Option(help="Last fraction of every train file's lines -> val.")] = 0.05,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing DATA_DIR.")] = False,
    storage_options: StorageOpt = None,
):
    """Clean, split and tokenize a corpus into DATA_DIR. Empty files are skipped with a warning."""
    use_storage_options(storage_options)
    from bl2.data.prepare import PrepareConfig
    from bl2.data.prepare import prepare as run

    run(PrepareConfig(corpus_dir, dev, out, vocab_size=vocab_size, val_fraction=val_fraction, overwrite=overwrite))


@app.command()
@user_errors
def pretrain(
    data: Annotated[str, typer.Option(help="Prepared DATA_DIR (from `bl2 prepare`).")],
    preset: PresetOpt,
    out: OutOpt,
    seed: SeedOpt = None,
    epochs: EpochsOpt = None,
    lr: LrOpt = None,
    batch_size: BatchOpt = None,
    grad_accum: AccumOpt = None,
    warmup: WarmupOpt = None,
    weight_decay: WdOpt = None,
    max_steps: MaxStepsOpt = None,
    val_every: ValEveryOpt = None,
    log_every: LogEveryOpt = None,
    ckpt_every: CkptOpt = None,
    compile: CompileOpt = None,
    word_checkpoints: WordCkptOpt = None,
    config: ConfigOpt = None,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = "auto",
    storage_options: StorageOpt = None,
):
    """Pretrain a Llama preset from scratch with cross-entropy (a teacher, or a no-distillation baseline)."""
    use_storage_options(storage_options)
    from bl2.distill.run import pretrain as run

    cfg = train_config(preset, config, locals())
    run(cfg, data, out, resume=resume, overwrite=overwrite, device=device)


# ----------------------------------------------------------------------------------------------- distill
@app.command()
@user_errors
def distill(
    preset: PresetOpt,
    out: OutOpt,
    cache: Annotated[str | None, typer.Option(help="Logit cache from `bl2 cache-logits`.")] = None,
    teachers: Annotated[str | None, typer.Option(help="Online baseline: teacher dirs T1,T2 run live.")] = None,
    data: Annotated[str | None, typer.Option(help="DATA_DIR (default: the one recorded in the cache).")] = None,
    alpha: Annotated[float, typer.Option(help="Weight of CE; (1 - alpha) * T^2 weighs the KL.")] = 0.5,
    temperature: Annotated[float, typer.Option(help="Distillation temperature (topk: from the cache's grid).")] = 1.0,
    kl_reduction: Annotated[str, typer.Option(help="sequence (summed over positions, as the reference) | token.")] = (
        "sequence"
    ),
    ensemble: Annotated[str, typer.Option(help="Online teachers: logit-mean (the paper) | prob-mean.")] = "logit-mean",
    cache_in_memory: Annotated[str, typer.Option(help="auto (if it fits half the free RAM) | yes | no.")] = "auto",
    shuffle_buffer: Annotated[int | None, typer.Option(help="Windows shuffled together (default 8192).")] = None,
    teacher_words: Annotated[str | None, typer.Option(
        help="Words the teachers were trained on, for the budget ledger when their run.json cannot tell: one "
        "count for each (e.g. 80M) or one per teacher (80M,80M).")] = None,
    seed: SeedOpt = None,
    epochs: EpochsOpt = None,
    lr: LrOpt = None,
    batch_size: BatchOpt = None,
    grad_accum: AccumOpt = None,
    warmup: WarmupOpt = None,
    weight_decay: WdOpt = None,
    max_steps: MaxStepsOpt = None,
    val_every: ValEveryOpt = None,
    log_every: LogEveryOpt = None,
    ckpt_every: CkptOpt = None,
    compile: CompileOpt = None,
    word_checkpoints: WordCkptOpt = None,
    config: ConfigOpt = None,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = "auto",
    storage_options: StorageOpt = None,
):
    """Train a student on alpha * CE + (1 - alpha) * T^2 * KL(teachers || student), from a cache or live."""
    use_storage_options(storage_options)
    from bl2.distill.run import distill as run
    from bl2.runs.marks import parse_count

    cfg = train_config(preset, config, locals(), alpha=alpha, temperature=temperature,
                       kl_reduction=kl_reduction, shuffle_buffer=shuffle_buffer)
    rule = ensemble_rule(ensemble)
    run(cfg, out, cache=cache, teachers=split_list(teachers) if teachers else None,
        data_dir=data, ensemble=rule, cache_in_memory=cache_in_memory, resume=resume, overwrite=overwrite,
        device=device, teacher_words=[parse_count(w, "--teacher-words") for w in split_list(teacher_words or "")])


# ----------------------------------------------------------------------------------------------- cache-logits

@app.command("cache-logits")
@user_errors
def cache_logits(
    data: Annotated[str, typer.Option(help="Prepared DATA_DIR: tokens and tokenizer (the teachers' tokenizer).")],
    teachers: Annotated[str, typer.Option(help="Comma-separated teacher model dirs (same vocab and tokenizer).")],
    out: Annotated[str, typer.Option(help="Cache to write (a Zarr v3 group, e.g. cache.zarr).")],
    split: Annotated[str, typer.Option(help="Token split the windows come from: train | val | test.")] = "train",
    mode: Annotated[str, typer.Option(help="topk (ids + log-probs + logZ) | full (all log-probs) | sample | "
                                      "hybrid (exact top-k head + draws from the tail).")] = "topk",
    k: Annotated[int, typer.Option(help="topk, hybrid: ids kept per position.")] = 64,
    temperatures: Annotated[str | None, typer.Option(
        help="topk: temperatures whose exact logZ is stored, e.g. 1,2 (default 1).")] = None,
    ensemble: Annotated[str, typer.Option(help="logit-mean (average raw logits: the paper) | prob-mean.")] = (
        "logit-mean"),
    n_draws: Annotated[int, typer.Option(help="sample: draws with replacement per position; hybrid: draws from "
                                         "the tail (1..255).")] = 50,
    sample_temperature: Annotated[float, typer.Option(help="sample, hybrid: draw from p_T at this T.")] = 1.0,
    logp_dtype: Annotated[str, typer.Option(help="full: float16 (half the bytes) | float32 (offline KD equals "
                                            "online KD to float32 rounding).")] = "float16",
    head_logp: Annotated[str, typer.Option(help="topk, hybrid: float16 | uint8 (lossy: steps of --logp-step "
                                           "nats; `bl2 cache compare` reports the KL it adds).")] = "float16",
    logp_step: Annotated[float | None, typer.Option(help="--head-logp uint8: step in nats below each position's "
                                                    "top log-prob: 0.25, 0.125 or 0.0625 (default).")] = None,
    head_order: Annotated[str, typer.Option(help="topk, hybrid: value | id (the head stored sorted by id, ids "
                                            "delta-coded: smaller; lossless).")] = "value",
    sparse_ids: Annotated[str, typer.Option(help="sample, hybrid: plain | delta (ids stored as differences "
                                            "along the slots; lossless, smaller).")] = "plain",
    offsets: Annotated[int, typer.Option(help="Window alignments N: epoch e of the student uses e mod N.")] = 1,
    seq_len: Annotated[int | None, typer.Option(help="Window length (default: the teachers' seq_len).")] = None,
    batch_size: Annotated[int, typer.Option(help="Windows per teacher forward.")] = 32,
    max_windows: Annotated[int | None, typer.Option(help="Only the first N windows per alignment.")] = None,
    seed: Annotated[int, typer.Option(help="sample: seed mixed with each window's index.")] = 0,
    device: Annotated[str, typer.Option(help="auto (cuda, then mps, then cpu) | cpu | cuda | mps.")] = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing cache made with other settings.")] = False,
    storage_options: StorageOpt = None,
):
    """Run the teacher ensemble once over a split's windows and store its soft targets in a Zarr cache.
    Rerun the same command after an interruption to resume; a finished cache is left as it is."""
    use_storage_options(storage_options)
    from bl2.cache.writer import CacheLogitsConfig
    from bl2.cache.writer import cache_logits as run

    rule = ensemble_rule(ensemble)
    run(CacheLogitsConfig(
        data=data, teachers=split_list(teachers), out=out, split=split, mode=mode, k=k,
        temperatures=parse_floats(temperatures, "--temperatures"), ensemble=rule,
        n_draws=n_draws, sample_temperature=sample_temperature, logp_dtype=logp_dtype, head_logp=head_logp,
        logp_step=logp_step, sparse_ids=sparse_ids, head_order=head_order, offsets=offsets, seq_len=seq_len,
        batch_size=batch_size, device=device, overwrite=overwrite, max_windows=max_windows, seed=seed))


# ----------------------------------------------------------------------------------------------- budget
@app.command()
@user_errors
def budget(
    run_dir: Annotated[str, typer.Argument(metavar="RUN", help="A bl2 run dir (pretrain or distill).")],
    cap: Annotated[float | None, typer.Option(help="Exit 1 when the total exceeds this many epoch-equivalents "
                                              "(BabyLM: 10).")] = None,
    corpus_words: Annotated[str | None, typer.Option(help="Words in one epoch (default: train + val words of the "
                                                     "run's DATA dir), e.g. 10M for BabyLM strict-small.")] = None,
):
    """The BabyLM budget ledger: words each teacher was trained on, the run's own words seen, and the total in
    epoch-equivalents of the corpus (BabyLM caps training at 10 and counts the teachers' training text)."""
    from bl2.runs.budget import budget as run
    from bl2.runs.marks import parse_count

    if not run(run_dir, cap, parse_count(corpus_words, "--corpus-words") if corpus_words else None):
        raise typer.Exit(1)


# ----------------------------------------------------------------------------------------------- quickstart
@app.command()
@user_errors
def quickstart(
    out: Annotated[Path, typer.Option(help="Folder for everything the pipeline writes.")] = Path("bl2-quickstart"),
    corpus: Annotated[Path | None, typer.Option(help="Real data: *.train files (e.g. BabyLM train_10M).")] = None,
    dev: Annotated[Path | None, typer.Option(help="Real data: folder of *.dev files.")] = None,
    blimp_dir: Annotated[Path | None, typer.Option(help="Real data: BabyLM evaluation_data dir.")] = None,
    preset: Annotated[str, typer.Option(help="Preset of teachers and student.")] = "tiny",
    vocab_size: Annotated[int | None, typer.Option(help="BPE vocabulary (default 2000 built-in, 16000 real).")] = None,
    sample_lines: Annotated[int | None, typer.Option(help="Built-in corpus: lines of training text.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs of each teacher and of the student.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Sequences per step (default 32).")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Cap on the steps of each model.")] = None,
    k: Annotated[int | None, typer.Option(help="Cached top-k (default 64).")] = None,
    eval_limit: Annotated[int | None, typer.Option(help="Pairs per BLiMP subtask (default: all).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing quickstart folder.")] = False,
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


# ----------------------------------------------------------------------------------------------- report
@app.command()
@user_errors
def report(
    runs: Annotated[list[str], typer.Argument(
        metavar="RUN_DIR..", help="Run dirs, or folders searched for run dirs (a sweep study, a runs/ folder).")],
    out: Annotated[Path, typer.Option(help="Folder for report.md, results.json and the figures (PNG + SVG).")],
    evals: Annotated[list[str] | None, typer.Option(
        "--evals", metavar="FILE|DIR",
        help="A JSON written by `bl2 eval loss|blimp --out`, or a folder searched for them; repeatable.")
    ] = None,
    cache: Annotated[list[str] | None, typer.Option(
        "--cache", metavar="CACHE", help="A cache whose diagnostics the report shows; repeatable.")] = None,
    label: Annotated[list[str] | None, typer.Option(
        "--label", metavar="DIR=NAME", help="Show run dir DIR as NAME; repeatable.")] = None,
    group: Annotated[list[str] | None, typer.Option(
        "--group", metavar="DIR=NAME", help="Put run dir DIR in group NAME instead of its role's; repeatable.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing report folder.")] = False,
):
    """The paper's figures and tables from run dirs, evaluations, caches and sweeps: OUT/report.md with training
    curves, every metric by group (Figure 1), BLiMP against validation CE (Figure 2), cache diagnostics and a
    results table. Needs matplotlib (the `report` extra of bl2)."""
    from bl2.workflows.report.build import ReportConfig, parse_pairs
    from bl2.workflows.report.build import report as run

    run(ReportConfig(runs=runs, out=out, evals=evals or [], caches=cache or [],
                     labels=parse_pairs(label or [], "--label"), groups=parse_pairs(group or [], "--group"),
                     overwrite=overwrite))
