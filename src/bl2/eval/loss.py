"""Held-out loss: mean token cross-entropy (and perplexity) over the non-overlapping windows of a split,
for each model and for their direct ensemble (raw logits averaged, the paper's rule)."""

from __future__ import annotations

import json
import math
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from bl2.errors import require


def nll_sum(logits_BLV: torch.Tensor, labels_BL: torch.Tensor) -> torch.Tensor:
    """Summed negative log-likelihood (works on raw logits and on log-probs alike)."""
    return torch.nn.functional.cross_entropy(logits_BLV.float().flatten(0, 1), labels_BL.flatten(), reduction="sum")


def windows_nll(forward, windows: np.ndarray, batch_size: int, device: str, autocast=None, progress=None,
                nll=nll_sum) -> tuple[float, int]:
    """(summed NLL, label count) of `forward(input_ids) -> logits` over windows [N, L+1] (inputs [:, :-1],
    labels [:, 1:]); sums, so that shares of the windows (one per rank) add up to the whole. `nll(output,
    labels)` sums the NLL of what `forward` returns (training passes hidden states and a chunked output layer,
    so that no [B, L, V] logits exist)."""
    from bl2.runtime import device_type

    total, count = 0.0, 0
    with torch.inference_mode():
        for s in range(0, len(windows), batch_size):
            ids = torch.from_numpy(windows[s : s + batch_size].astype(np.int64)).to(device)
            with torch.autocast(device_type(device), dtype=autocast) if autocast else nullcontext():
                logits = forward(ids[:, :-1])
            total += float(nll(logits, ids[:, 1:]))
            count += ids[:, 1:].numel()
            if progress is not None:
                progress(len(ids))
    return total, count


def windows_ce(forward, windows: np.ndarray, batch_size: int, device: str, autocast=None, progress=None) -> float:
    """Mean token CE of `forward(input_ids) -> logits` over windows [N, L+1] (inputs [:, :-1], labels [:, 1:])."""
    total, count = windows_nll(forward, windows, batch_size, device, autocast, progress)
    return total / max(count, 1)


def evaluate_loss(model_dirs: list[Path], data_dir: Path, split: str = "test", batch_size: int = 32,
                  device: str = "auto", seq_len: int | None = None, out: Path | None = None,
                  overwrite: bool = False) -> dict:
    """CE/perplexity of each model dir and, with several, of their direct ensemble; prints a table. `out`
    (JSON) is checked before any scoring: an existing file needs `overwrite`, and it must be writable."""
    from bl2.data.store import TokenStore
    from bl2.data.windows import eval_windows
    from bl2.eval.blimp import check_output
    from bl2.model.ensemble import Ensemble, combine
    from bl2.progress import console, make_progress
    from bl2.runtime import pick_device
    from bl2.storage import write_text_atomic

    require(batch_size >= 1, f"--batch-size must be >= 1, got {batch_size}")
    check_output(out, overwrite)
    store = TokenStore(data_dir)
    device = pick_device(device)
    ens = Ensemble(model_dirs, device)
    require(ens.vocab_size == store.vocab_size and ens.tokenizer_sha256 in (None, store.tokenizer_sha256),
            f"the models' tokenizer does not match {data_dir}'s (vocab {ens.vocab_size} vs {store.vocab_size})")
    seq_len = seq_len or ens.max_positions // 2
    require(seq_len <= ens.max_positions, f"seq_len {seq_len} exceeds the models' limit of {ens.max_positions}")
    windows = eval_windows(store.split(split), seq_len)
    require(len(windows) > 0, f"split {split!r} of {data_dir} has no full window of {seq_len + 1} tokens")

    names = [str(d) for d in ens.dirs]
    sums = {n: 0.0 for n in names + (["ensemble"] if len(names) > 1 else [])}
    count = 0
    with make_progress("windows") as bar, torch.inference_mode():
        task = bar.add_task(f"eval loss ({split})", total=len(windows))
        for s in range(0, len(windows), batch_size):
            ids = torch.from_numpy(windows[s : s + batch_size].astype(np.int64)).to(device)
            labels = ids[:, 1:]
            member_logits = ens.member_logits(ids[:, :-1])
            for name, logits in zip(names, member_logits):
                sums[name] += float(nll_sum(logits, labels))
            if len(names) > 1:
                sums["ensemble"] += float(nll_sum(combine(member_logits, "logit_mean"), labels))
            count += labels.numel()
            bar.advance(task, len(ids))
    results = {n: {"ce": v / count, "ppl": math.exp(v / count)} for n, v in sums.items()}
    report = {"split": split, "data_dir": str(data_dir), "seq_len": seq_len, "n_windows": len(windows),
              "n_tokens": count, "models": names, "results": results}
    _print(report, console)
    if out:
        write_text_atomic(out, json.dumps(report, indent=2))
    return report


def _print(report: dict, console) -> None:
    from rich.table import Table

    table = Table(title=f"{report['split']} loss: {report['n_tokens']:,} tokens, {report['n_windows']} windows")
    table.add_column("model")
    table.add_column("CE (nats/token)", justify="right")
    table.add_column("perplexity", justify="right")
    for name, r in report["results"].items():
        table.add_row(name, f"{r['ce']:.4f}", f"{r['ppl']:.2f}")
    console.print(table)
