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
DeviceOpt = Annotated[str, typer.Option(help="auto (cuda, then mps, then cpu) | cpu | cuda | mps.")]


def train_overrides(**values) -> dict:
    """Command-line training options; None means "not given" (the YAML file or the preset decides)."""
    return {k: v for k, v in values.items() if v is not None}


@app.command()
@user_errors
def pretrain(
    data: Annotated[Path, typer.Option(help="Prepared DATA_DIR (from `bl2 prepare`).")],
    preset: Annotated[str, typer.Option(help="Model preset: debug | tiny | 16m | 345m.")],
    out: Annotated[Path, typer.Option(help="Run dir; becomes the final Hugging Face model dir.")],
    seed: Annotated[int | None, typer.Option(help="Seed of init, data order and window offsets (default 0).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Passes over the training windows (preset default).")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate (preset default).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Sequences per optimizer step (preset default).")] = None,
    grad_accum: Annotated[int | None, typer.Option(help="Micro-batches per step (preset default).")] = None,
    warmup: Annotated[int | None, typer.Option(help="Linear warm-up steps before cosine decay (preset default).")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="AdamW decay on matrices (preset default).")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Optimizer steps in total (overrides epochs).")] = None,
    log_every: Annotated[int | None, typer.Option(help="Steps between log lines (default 10).")] = None,
    ckpt_every: Annotated[int | None, typer.Option(help="Steps between checkpoints (default 200).")] = None,
    compile: Annotated[bool | None, typer.Option("--compile", help="torch.compile the model.")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML file of config keys (command-line values win).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the newest checkpoint in --out.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run dir.")] = False,
    device: DeviceOpt = "auto",
):
    """Pretrain a Llama preset from scratch with cross-entropy (a teacher, or a no-distillation baseline)."""
    from bl2.distill.config import TrainConfig
    from bl2.distill.run import pretrain as run

    cfg = TrainConfig.from_sources(preset, config, train_overrides(
        seed=seed, epochs=epochs, lr=lr, batch_size=batch_size, grad_accum=grad_accum, warmup=warmup,
        weight_decay=weight_decay, max_steps=max_steps, log_every=log_every, ckpt_every=ckpt_every, compile=compile))
    run(cfg, data, out, resume=resume, overwrite=overwrite, device=device)

# ----------------------------------------------------------------------------------------------- cache-logits
# ----------------------------------------------------------------------------------------------- distill
# ----------------------------------------------------------------------------------------------- eval
@eval_app.command("loss")
@user_errors
def eval_loss(
    models: Annotated[str, typer.Argument(help="Model dir, or comma-separated dirs (each + their direct ensemble).")],
    data: Annotated[Path, typer.Option(help="Prepared DATA_DIR whose split is scored.")],
    split: Annotated[str, typer.Option(help="test | val | train.")] = "test",
    seq_len: Annotated[int | None, typer.Option(help="Window length (default: max_position_embeddings / 2).")] = None,
    batch_size: Annotated[int, typer.Option(help="Windows per forward.")] = 32,
    out: Annotated[Path | None, typer.Option(help="Write the results as JSON.")] = None,
    device: DeviceOpt = "auto",
):
    """Mean token cross-entropy and perplexity over the non-overlapping windows of a split."""
    from bl2.eval.loss import evaluate_loss

    evaluate_loss([Path(m) for m in split_list(models)], data, split=split, batch_size=batch_size, device=device,
                  seq_len=seq_len, out=out)

@eval_app.command("blimp")
@user_errors
def eval_blimp(
    models: Annotated[str, typer.Argument(
        metavar="MODEL_DIR[,MODEL_DIR..]", help="MODEL_DIR[,MODEL_DIR..]: any Hugging Face causal-LM dir(s) with a tokenizer. Several = the direct "
        "ensemble (raw logits averaged, then log-softmax), reported after each member.")],
    suite: Annotated[str, typer.Option(help="filtered | supplement | all (all also reports their mean).")] = "all",
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", envvar="BL2_EVAL_DATA",
        help="BabyLM evaluation_data layout: DIR/blimp_filtered/*.jsonl, DIR/supplement_filtered/*.jsonl. "
        "A DIR holding *.jsonl files itself (e.g. the original BLiMP) is one filtered-style suite named "
        "after the folder (--suite filtered or all).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write results JSON (per subtask acc + n, suite "
                                             "scores, model dirs, settings).")] = None,
    log_samples: Annotated[Path | None, typer.Option("--log-samples", help="Write one JSON line per pair "
                                                     "(sentences, logp_good, logp_bad, correct).")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N pairs of each subtask.")] = None,
    batch_size: Annotated[int, typer.Option(help="Sentences per forward pass.")] = 64,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | mps.")] = "auto",
    members: Annotated[bool, typer.Option(help="With several dirs, also report each member.")] = True,
    overwrite: Annotated[bool, typer.Option(help="Replace existing --out / --log-samples files.")] = False,
):
    """BLiMP minimal-pair accuracy, scored as the BabyLM 2024 pipeline (lm-eval) does: one BOS token as the
    prefix, sum of log p over the tokens of " " + sentence, correct when good >= bad (ties count as correct);
    suite score = unweighted mean over subtasks (file stems)."""
    from bl2.eval.blimp import evaluate_blimp
    from bl2.runtime import pick_device

    if data_dir is None:
        raise UserError("no BLiMP data dir: pass --data-dir DIR or set BL2_EVAL_DATA")
    dirs = [Path(m) for m in split_list(models)]
    evaluate_blimp(dirs, data_dir, suite=suite, limit=limit, batch_size=batch_size, device=pick_device(device),
                   out=out, log_samples=log_samples, overwrite=overwrite, members=members)


# ----------------------------------------------------------------------------------------------- quickstart
