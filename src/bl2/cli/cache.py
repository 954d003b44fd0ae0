"""`bl2 cache-logits` (run the teachers once, store their soft targets) and `bl2 cache info|verify|compare`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from bl2.cache.encodings import HEAD_LOGP, HEAD_ORDERS, SPARSE_IDS
from bl2.cache.schema import LOGP_DTYPES, MODES
from bl2.cli.common import (
    DATA,
    DISTILL,
    DISTRIBUTED,
    ENSEMBLE_RULES,
    MODEL,
    OUTPUT,
    DeviceOpt,
    Ensemble,
    OverwriteOpt,
    StorageOpt,
    parse_floats,
    split_list,
    use_storage_options,
    user_errors,
)
from bl2.errors import require

Split = Literal["train", "val", "test"]
CacheArg = Annotated[str, typer.Argument(help="Cache path or URL.")]
cache_app = typer.Typer(help="Inspect, verify and compare teacher-logit caches.", no_args_is_help=True)


def cache_logits(
    data: Annotated[str, typer.Option(help="Prepared DATA_DIR: tokens and tokenizer (the teachers' tokenizer).",
                                      rich_help_panel=DATA)],
    teachers: Annotated[str, typer.Option(help="Comma-separated teacher model dirs (same vocab and tokenizer).",
                                          rich_help_panel=DATA)],
    out: Annotated[str, typer.Option(help="Cache to write (a Zarr v3 group, e.g. cache.zarr).",
                                     rich_help_panel=OUTPUT)],
    split: Annotated[Split, typer.Option(help="Token split the windows come from.", rich_help_panel=DATA)] = "train",
    mode: Annotated[Literal[MODES], typer.Option(
        help="topk: ids + log-probs + logZ; full: all log-probs; sample: draws from p_T; hybrid: exact top-k head "
        "+ draws from the tail.", rich_help_panel=DISTILL)] = "topk",
    k: Annotated[int, typer.Option(help="topk, hybrid: ids kept per position.", rich_help_panel=DISTILL)] = 64,
    temperatures: Annotated[str | None, typer.Option(
        help="topk: temperatures whose exact logZ is stored, e.g. 1,2 (default 1).", rich_help_panel=DISTILL)] = None,
    ensemble: Annotated[Ensemble, typer.Option(help="logit-mean (average raw logits: the paper) | prob-mean.",
                                               rich_help_panel=DISTILL)] = "logit-mean",
    n_draws: Annotated[int, typer.Option(help="sample: draws with replacement per position; hybrid: draws from "
                                         "the tail (1..255).", rich_help_panel=DISTILL)] = 50,
    sample_temperature: Annotated[float, typer.Option(help="sample, hybrid: draw from p_T at this T.",
                                                      rich_help_panel=DISTILL)] = 1.0,
    logp_dtype: Annotated[Literal[LOGP_DTYPES], typer.Option(
        help="full: float16 (half the bytes) | float32 (offline KD equals online KD to float32 rounding).",
        rich_help_panel=OUTPUT)] = "float16",
    head_logp: Annotated[Literal[HEAD_LOGP], typer.Option(
        help="topk, hybrid: float16 | uint8 (lossy: steps of --logp-step nats; `bl2 cache compare` reports the KL "
        "it adds).", rich_help_panel=OUTPUT)] = "float16",
    logp_step: Annotated[float | None, typer.Option(help="--head-logp uint8: step in nats below each position's "
                                                    "top log-prob: 0.25, 0.125 or 0.0625 (default).",
                                                    rich_help_panel=OUTPUT)] = None,
    head_order: Annotated[Literal[HEAD_ORDERS], typer.Option(
        help="topk, hybrid: value | id (the head stored sorted by id, ids delta-coded: smaller; lossless).",
        rich_help_panel=OUTPUT)] = "value",
    sparse_ids: Annotated[Literal[SPARSE_IDS], typer.Option(
        help="sample, hybrid: plain | delta (ids stored as differences along the slots; lossless, smaller).",
        rich_help_panel=OUTPUT)] = "plain",
    offsets: Annotated[int, typer.Option(help="Window alignments N: epoch e of the student uses e mod N.",
                                         rich_help_panel=DATA)] = 1,
    seq_len: Annotated[int | None, typer.Option(help="Window length in tokens (default: the teachers' seq_len).",
                                                rich_help_panel=MODEL)] = None,
    batch_size: Annotated[int, typer.Option(help="Windows per teacher forward.", rich_help_panel=DISTRIBUTED)] = 32,
    max_windows: Annotated[int | None, typer.Option(help="Only the first N windows per alignment.",
                                                    rich_help_panel=DATA)] = None,
    seed: Annotated[int, typer.Option(help="sample: seed mixed with each window's index.",
                                      rich_help_panel=DISTILL)] = 0,
    device: DeviceOpt = "auto",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing cache made with other settings.",
                                            rich_help_panel=OUTPUT, metavar="")] = False,
    storage_options: StorageOpt = None,
):
    """Run the teacher ensemble once over a split's windows and store its soft targets in a Zarr cache.
    Rerun the same command after an interruption to resume; a finished cache is checked and left as it is."""
    use_storage_options(storage_options)
    from bl2.cache.writer import CacheLogitsConfig
    from bl2.cache.writer import cache_logits as run

    run(CacheLogitsConfig(
        data=data, teachers=split_list(teachers), out=out, split=split, mode=mode, k=k,
        temperatures=parse_floats(temperatures, "--temperatures"), ensemble=ENSEMBLE_RULES[ensemble],
        n_draws=n_draws, sample_temperature=sample_temperature, logp_dtype=logp_dtype, head_logp=head_logp,
        logp_step=logp_step, sparse_ids=sparse_ids, head_order=head_order, offsets=offsets, seq_len=seq_len,
        batch_size=batch_size, device=device, overwrite=overwrite, max_windows=max_windows, seed=seed))


@cache_app.command("info")
@user_errors
def cache_info(cache: CacheArg, storage_options: StorageOpt = None):
    """Attrs, arrays (shape, dtype, chunks), size on disk, bytes per token and diagnostics of a cache."""
    use_storage_options(storage_options)
    from bl2.cache.info import cache_info as run

    run(cache)


@cache_app.command("verify")
@user_errors
def cache_verify(
    cache: CacheArg,
    data: Annotated[str | None, typer.Option(help="DATA_DIR to check input_ids against (default: recorded).")] = None,
    teachers: Annotated[str | None, typer.Option(help="Teacher dirs: recompute random windows and compare.")] = None,
    windows: Annotated[int, typer.Option(help="Windows to recompute with --teachers (>= 1).")] = 4,
    device: DeviceOpt = "auto",
    storage_options: StorageOpt = None,
):
    """Read everything (checksums), check attrs, counts, tokens and ordering; exit 1 if any check fails. Checks
    that cannot run (their data is missing) say `skipped`, never `PASS`."""
    use_storage_options(storage_options)
    from bl2.cache.verify import verify

    require(windows >= 1, f"--windows must be >= 1, got {windows}")
    if not verify(cache, data=data, teachers=split_list(teachers) or None, n_windows=windows, device=device):
        raise typer.Exit(1)


@cache_app.command("compare")
@user_errors
def cache_compare(
    sparse: Annotated[str, typer.Argument(help="A topk, sample or hybrid cache.")],
    full: Annotated[str, typer.Argument(help="A full-mode cache of the same windows (same teachers and data).")],
    windows: Annotated[int | None, typer.Option(help="Compare only the first N windows per alignment (>= 1; "
                                                "default: all).")] = None,
    out: Annotated[Path | None, typer.Option(help="Write the table as JSON (a file).")] = None,
    overwrite: OverwriteOpt = False,
    storage_options: StorageOpt = None,
):
    """How far a sparse cache's targets are from the full distribution p (means over positions). Columns: T;
    mass mean / p10: p's mass on the stored ids; mass stored (hybrid): on the head and the drawn tail ids;
    kl_bucket: KL(p || target) over the stored ids + one tail bucket (topk: ~0, it checks the storage; sample:
    the reverse KL, the forward one is infinite); kl_flat_tail (topk): KL to the head + a flat tail, what
    truncation loses; kl_rev (hybrid): reverse KL over the stored ids; grad_err: E||p - target||_2, the error of
    the distillation gradient. A lossy encoding's added KL is printed below the table."""
    use_storage_options(storage_options)
    from bl2.cache.compare import compare
    from bl2.storage import require_writable_file

    require(windows is None or windows >= 1, f"--windows must be >= 1, got {windows}")
    if out is not None:
        require_writable_file(out, "--out")
        require(overwrite or not out.exists(), f"{out} exists; pass --overwrite to replace it")
    compare(sparse, full, max_windows=windows, out=out)


def register(app: typer.Typer) -> None:
    app.command("cache-logits")(user_errors(cache_logits))
    app.add_typer(cache_app, name="cache")
