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
sweep_app = typer.Typer(help="Hyperparameter sweeps (Optuna TPE + Hyperband) of teachers, or of students from "
                        "one cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")
app.add_typer(eval_app, name="eval")
app.add_typer(sweep_app, name="sweep")


@app.callback()
def _setup() -> None:
    """Process-wide settings for every command (cheap: no heavy import)."""
    from bl2.runtime import tune_allocator

    tune_allocator()


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


StorageOpt = Annotated[str | None, typer.Option(
    "--storage-options", envvar="BL2_STORAGE_OPTIONS",
    help="JSON of fsspec options for s3:// (gs://, ...) locations, e.g. '{\"anon\": false}'; credentials and "
    "endpoint otherwise come from the usual environment (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ...).")]


def use_storage_options(value: str | None) -> None:
    """Apply --storage-options for every remote location of this process."""
    import json

    from bl2 import storage

    if value is None:
        return
    try:
        options = json.loads(value)
    except ValueError:
        raise UserError(f"--storage-options must be a JSON object, got {value!r}") from None
    if not isinstance(options, dict):
        raise UserError(f"--storage-options must be a JSON object, got {value!r}")
    storage.configure(options)


def split_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


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


# ----------------------------------------------------------------------------------------------- pretrain
ENSEMBLE_RULES = {"logit-mean": "logit_mean", "prob-mean": "prob_mean", "logit_mean": "logit_mean",
                  "prob_mean": "prob_mean"}

# Options shared by pretrain and distill. None means "not given": the YAML file, then the preset, decide.
DeviceOpt = Annotated[str, typer.Option(help="auto (cuda, then mps, then cpu) | cpu | cuda | mps.")]
PresetOpt = Annotated[str, typer.Option(help="Model preset: debug | tiny | 16m | 345m.")]
OutOpt = Annotated[str, typer.Option(help="Run dir; becomes the final Hugging Face model dir.")]
SeedOpt = Annotated[int | None, typer.Option(help="Seed of init, data order and window offsets (default 0).")]
EpochsOpt = Annotated[int | None, typer.Option(help="Passes over the training windows (preset default).")]
LrOpt = Annotated[float | None, typer.Option(help="Peak learning rate (preset default).")]
BatchOpt = Annotated[int | None, typer.Option(help="Sequences per optimizer step (preset default).")]
AccumOpt = Annotated[int | None, typer.Option(help="Micro-batches per step (preset default).")]
WarmupOpt = Annotated[int | None, typer.Option(help="Linear warm-up steps before cosine decay (preset default).")]
WdOpt = Annotated[float | None, typer.Option(help="AdamW decay on matrices (preset default).")]
MaxStepsOpt = Annotated[int | None, typer.Option(help="Optimizer steps in total (overrides epochs).")]
LogEveryOpt = Annotated[int | None, typer.Option(help="Steps between log lines (default 10).")]
ValEveryOpt = Annotated[int | None, typer.Option(help="Steps between validations (default: each epoch's end).")]
CkptOpt = Annotated[int | None, typer.Option(help="Steps between checkpoints (default 200).")]
CompileOpt = Annotated[bool | None, typer.Option("--compile", help="torch.compile the model.")]
WordCkptOpt = Annotated[str | None, typer.Option(
    help="Save a Hugging Face model dir RUN/word-checkpoints/chck_1M/ .. as the run passes each count of words "
    "seen: `babylm` (1M..10M, 20M..100M, 200M..1000M: the BabyLM 2025 revisions) or a list like 1M,5M,500K.")]
ConfigOpt = Annotated[Path | None, typer.Option(help="YAML file of config keys (command-line values win).")]
ResumeOpt = Annotated[bool, typer.Option(help="Continue from the newest checkpoint in --out.")]
OverwriteOpt = Annotated[bool, typer.Option(help="Replace an existing run dir.")]


# the training options that pretrain and distill share (their parameters of the same names)
TRAIN_OPTIONS = ("seed", "epochs", "lr", "batch_size", "grad_accum", "warmup", "weight_decay", "max_steps",
                 "val_every", "log_every", "ckpt_every", "compile", "word_checkpoints")


def train_config(preset: str, config: Path | None, options: dict, **extra):
    """Preset defaults < YAML file < command line (`options`: the command's locals(); unset ones are None)."""
    from bl2.distill.config import TrainConfig

    values = {k: options.get(k) for k in TRAIN_OPTIONS} | extra
    return TrainConfig.from_sources(preset, config, {k: v for k, v in values.items() if v is not None})


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
    from bl2.distill.words import parse_count

    cfg = train_config(preset, config, locals(), alpha=alpha, temperature=temperature,
                       kl_reduction=kl_reduction, shuffle_buffer=shuffle_buffer)
    rule = ENSEMBLE_RULES.get(ensemble)
    if rule is None:
        raise UserError(f"unknown --ensemble {ensemble!r}; choose logit-mean or prob-mean")
    run(cfg, out, cache=cache, teachers=split_list(teachers) if teachers else None,
        data_dir=data, ensemble=rule, cache_in_memory=cache_in_memory, resume=resume, overwrite=overwrite,
        device=device, teacher_words=[parse_count(w, "--teacher-words") for w in split_list(teacher_words or "")])


# ----------------------------------------------------------------------------------------------- cache-logits

def parse_floats(value: str | None, option: str) -> list[float] | None:
    if value is None:
        return None
    try:
        return [float(v) for v in split_list(value)]
    except ValueError:
        raise UserError(f"{option} takes comma-separated numbers, got {value!r}") from None


@app.command("cache-logits")
@user_errors
def cache_logits(
    data: Annotated[str, typer.Option(help="Prepared DATA_DIR: tokens and tokenizer (the teachers' tokenizer).")],
    teachers: Annotated[str, typer.Option(help="Comma-separated teacher model dirs (same vocab and tokenizer).")],
    out: Annotated[str, typer.Option(help="Cache to write (a Zarr v3 group, e.g. cache.zarr).")],
    split: Annotated[str, typer.Option(help="Token split the windows come from: train | val | test.")] = "train",
    mode: Annotated[str, typer.Option(help="topk (ids + log-probs + logZ) | full (all log-probs) | sample.")] = "topk",
    k: Annotated[int, typer.Option(help="topk: ids kept per position.")] = 64,
    temperatures: Annotated[str | None, typer.Option(
        help="topk: temperatures whose exact logZ is stored, e.g. 1,2 (default 1).")] = None,
    ensemble: Annotated[str, typer.Option(help="logit-mean (average raw logits: the paper) | prob-mean.")] = (
        "logit-mean"),
    n_draws: Annotated[int, typer.Option(help="sample: draws with replacement per position (1..255).")] = 50,
    sample_temperature: Annotated[float, typer.Option(help="sample: draw from p_T at this T.")] = 1.0,
    logp_dtype: Annotated[str, typer.Option(help="full: float16 (half the bytes) | float32 (offline KD equals "
                                            "online KD to float32 rounding).")] = "float16",
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

    if ensemble not in ENSEMBLE_RULES:
        raise UserError(f"unknown --ensemble {ensemble!r}; choose logit-mean or prob-mean")
    run(CacheLogitsConfig(
        data=data, teachers=split_list(teachers), out=out, split=split, mode=mode, k=k,
        temperatures=parse_floats(temperatures, "--temperatures"), ensemble=ENSEMBLE_RULES[ensemble],
        n_draws=n_draws, sample_temperature=sample_temperature, logp_dtype=logp_dtype, offsets=offsets, seq_len=seq_len,
        batch_size=batch_size, device=device, overwrite=overwrite, max_windows=max_windows, seed=seed))


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
    sparse: Annotated[str, typer.Argument(help="A topk or sample cache.")],
    full: Annotated[str, typer.Argument(help="A full-mode cache of the same windows (same teachers and data).")],
    windows: Annotated[int | None, typer.Option(help="Compare only the first N windows per alignment.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write the table as JSON.")] = None,
    storage_options: StorageOpt = None,
):
    """How far a sparse cache's targets are from the full distribution: KL, head mass, gradient error."""
    use_storage_options(storage_options)
    from bl2.cache.compare import compare

    compare(sparse, full, max_windows=windows, out=out)


# ----------------------------------------------------------------------------------------------- distill
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
        from bl2.distill.card import record_loss

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
        from bl2.distill.card import record_blimp

        record_blimp(results, out, limit)


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
    from bl2.budget import budget as run
    from bl2.distill.words import parse_count

    if not run(run_dir, cap, parse_count(corpus_words, "--corpus-words") if corpus_words else None):
        raise typer.Exit(1)


# ----------------------------------------------------------------------------------------------- sweep
SpaceOpt = Annotated[Path, typer.Option(help="Search space YAML (e.g. sweeps/teacher.yaml).")]
TrialsOpt = Annotated[int, typer.Option(help="Finished (complete + pruned) trials the study should reach.")]
StudyOpt = Annotated[Path, typer.Option(help="Study folder: study.json, study.db, trials/trial-NNNN/.")]
StorageOpt = Annotated[str | None, typer.Option(
    help="Optuna storage URL (default sqlite:///STUDY/study.db), e.g. postgresql://..., or journal:PATH.")]
StudyNameOpt = Annotated[str | None, typer.Option(help="Study name in the storage (default: the folder's name).")]
SamplerSeedOpt = Annotated[int, typer.Option(help="TPE sampler seed (worker w uses seed + w).")]
StartupOpt = Annotated[int, typer.Option(help="Random trials before TPE models the results.")]
EtaOpt = Annotated[int, typer.Option(help="Hyperband reduction factor.")]
MinResourceOpt = Annotated[int | None, typer.Option(help="Hyperband's first rung in steps (default --val-every).")]
HeartbeatOpt = Annotated[float, typer.Option(help="Seconds between a running trial's heartbeats; a trial silent "
                                             "for 3 of them is failed and retried by another worker.")]


def _sweep(kind: str, cfg, options: dict, **paths) -> None:
    from bl2.sweep import SweepConfig, run_sweep

    run_sweep(SweepConfig(kind=kind, study=options["study"], space=options["space"], trials=options["trials"],
                          base=cfg, storage=options["storage"], study_name=options["study_name"],
                          sampler_seed=options["sampler_seed"], startup_trials=options["startup_trials"],
                          eta=options["eta"], min_resource=options["min_resource"], heartbeat=options["heartbeat"],
                          device=options["device"], **paths))


@sweep_app.command("teachers")
@user_errors
def sweep_teachers(
    data: Annotated[str, typer.Option(help="Prepared DATA_DIR (from `bl2 prepare`).")],
    space: SpaceOpt,
    trials: TrialsOpt,
    study: StudyOpt,
    preset: PresetOpt,
    storage: StorageOpt = None,
    study_name: StudyNameOpt = None,
    sampler_seed: SamplerSeedOpt = 0,
    startup_trials: StartupOpt = 10,
    eta: EtaOpt = 3,
    min_resource: MinResourceOpt = None,
    heartbeat: HeartbeatOpt = 30.0,
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
    config: ConfigOpt = None,
    device: DeviceOpt = "auto",
):
    """Sweep pretraining hyperparameters (the paper's teacher sweep): every trial is a `bl2 pretrain` run under
    STUDY/trials/. The options fix every trial's config; the space overrides what it names. Rerun (or start
    more workers on the same --study) to continue until --trials trials are finished."""
    _sweep("teachers", train_config(preset, config, locals()), locals(), data=data)


@sweep_app.command("students")
@user_errors
def sweep_students(
    cache: Annotated[str, typer.Option(help="Logit cache from `bl2 cache-logits` (decoded once per worker).")],
    space: SpaceOpt,
    trials: TrialsOpt,
    study: StudyOpt,
    preset: PresetOpt,
    data: Annotated[str | None, typer.Option(help="DATA_DIR (default: the one recorded in the cache).")] = None,
    alpha: Annotated[float, typer.Option(help="Weight of CE (unless the space searches alpha).")] = 0.5,
    temperature: Annotated[float, typer.Option(help="Distillation temperature (unless searched).")] = 1.0,
    kl_reduction: Annotated[str, typer.Option(help="sequence (as the reference) | token.")] = "sequence",
    cache_in_memory: Annotated[str, typer.Option(help="yes (decode once, reuse in every trial) | auto | no.")] = "yes",
    shuffle_buffer: Annotated[int | None, typer.Option(help="Windows shuffled together (default 8192).")] = None,
    storage: StorageOpt = None,
    study_name: StudyNameOpt = None,
    sampler_seed: SamplerSeedOpt = 0,
    startup_trials: StartupOpt = 10,
    eta: EtaOpt = 3,
    min_resource: MinResourceOpt = None,
    heartbeat: HeartbeatOpt = 30.0,
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
    config: ConfigOpt = None,
    device: DeviceOpt = "auto",
):
    """Sweep distillation hyperparameters (alpha, T, lr, ...) of students trained from one cache: no teacher is
    ever loaded. Same study mechanics as `bl2 sweep teachers`."""
    cfg = train_config(preset, config, locals(), alpha=alpha, temperature=temperature, kl_reduction=kl_reduction,
                       shuffle_buffer=shuffle_buffer)
    _sweep("students", cfg, locals(), cache=cache, data=data, cache_in_memory=cache_in_memory)


@sweep_app.command("status")
@user_errors
def sweep_status(
    study: Annotated[Path, typer.Argument(help="Study folder.")],
    storage: StorageOpt = None,
    out: Annotated[Path | None, typer.Option(help="Also write the trials as JSON.")] = None,
):
    """Table of a study's trials: parameters, val CE, state (complete / pruned / failed / running), the best."""
    import json

    from bl2.sweep_results import sweep_status as run

    result = run(study, storage)
    if out is not None:
        out.write_text(json.dumps(result, indent=2, default=str))


@sweep_app.command("confirm")
@user_errors
def sweep_confirm(
    study: Annotated[Path, typer.Argument(help="Study folder.")],
    seeds: Annotated[int, typer.Option(help="New seeds to re-train the best configuration with.")] = 3,
    storage: StorageOpt = None,
    device: DeviceOpt = "auto",
):
    """Re-train the best complete trial's configuration from new seeds; prints their val CE (mean ± sd) against
    the sweep's value and writes STUDY/confirm.json. Rerun to resume."""
    from bl2.sweep_results import confirm

    confirm(study, seeds=seeds, device=device, storage=storage)


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
    from bl2.quickstart import QuickstartConfig
    from bl2.quickstart import quickstart as run

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
    from bl2.report import ReportConfig, parse_pairs
    from bl2.report import report as run

    run(ReportConfig(runs=runs, out=out, evals=evals or [], caches=cache or [],
                     labels=parse_pairs(label or [], "--label"), groups=parse_pairs(group or [], "--group"),
                     overwrite=overwrite))
