"""Cache diagnostics (stored in the attrs by cache-logits, printed by info): how much probability the stored
head keeps at each temperature, how many unique ids the samples (or hybrid's tail draws) hold, bytes per token,
write throughput.

They are computed from the *stored* arrays after the last shard is written, so they are the same whether or
not the run was interrupted and resumed, and reading everything back once also proves it decodes.
"""

from __future__ import annotations

import numpy as np

from bl2.cache.schema import SHARD_WINDOWS


def head_mass(topk_logp: np.ndarray, logz: np.ndarray | None, temperature: float, t_index: int | None) -> np.ndarray:
    """Sum over the head of p_T = exp(logp / T - logZ_T), per position (fp32)."""
    lp = topk_logp.astype(np.float32) / np.float32(temperature)
    lz = 0.0 if t_index is None else logz[..., t_index : t_index + 1].astype(np.float32)
    return np.exp(lp - lz).sum(-1)


def _summary(values: np.ndarray) -> dict:
    return {"mean": float(values.mean()), "p10": float(np.percentile(values, 10))}


def topk_diagnostics(reader) -> dict:
    """Head mass per temperature of the grid: mean and 10th percentile over all positions."""
    names = ["topk_logp"] + (["logz"] if "logz" in reader.specs else [])
    masses: dict[float, list[np.ndarray]] = {t: [] for t in reader.temperatures}
    for start in range(0, reader.n_windows, SHARD_WINDOWS):
        block = reader.read(start, min(reader.n_windows, start + SHARD_WINDOWS), names)
        for t in reader.temperatures:
            masses[t].append(head_mass(block["topk_logp"], block.get("logz"), t, reader.temperature_index(t)))
    return {"head_mass": {f"{t:g}": _summary(np.concatenate(m).ravel()) for t, m in masses.items()}}


def sample_diagnostics(reader, name: str = "sample_counts") -> dict:
    """Unique ids per position (non-empty slots of `name`: sample_counts, or hybrid's tail_counts): mean, 90th
    percentile, max."""
    uniques = []
    for start in range(0, reader.n_windows, SHARD_WINDOWS):
        counts = reader.read(start, min(reader.n_windows, start + SHARD_WINDOWS), [name])[name]
        uniques.append((counts > 0).sum(-1).ravel())
    u = np.concatenate(uniques)
    return {"unique_ids": {"mean": float(u.mean()), "p90": float(np.percentile(u, 90)), "max": int(u.max())}}


def storage_diagnostics(reader) -> dict:
    tokens = reader.n_windows * reader.seq_len
    stored = reader.nbytes_stored()
    return {"bytes_on_disk": stored, "bytes_per_token": stored / max(1, tokens),
            "bytes_decoded_per_token": reader.nbytes_decoded() / max(1, tokens)}


def compute_diagnostics(reader, throughput: dict | None = None) -> dict:
    """All diagnostics of a (complete) cache; `throughput` is the writer's measurement, kept as given."""
    out: dict = {"mode": reader.mode}
    if reader.mode in ("topk", "hybrid"):
        out.update(topk_diagnostics(reader))
    if reader.mode in ("sample", "hybrid"):
        out.update(sample_diagnostics(reader, "sample_counts" if reader.mode == "sample" else "tail_counts"))
    out.update(storage_diagnostics(reader))
    if throughput:
        out["throughput"] = throughput
    return out


def format_diagnostics(diag: dict) -> list[str]:
    """Human-readable lines (cache-logits summary, cache info)."""
    lines = []
    for t, s in diag.get("head_mass", {}).items():
        lines.append(f"head mass at T={t}: mean {s['mean']:.4f}, p10 {s['p10']:.4f}")
    if "unique_ids" in diag:
        u = diag["unique_ids"]
        what = "tail ids drawn" if diag.get("mode") == "hybrid" else "sampled ids"
        lines.append(f"unique {what} per position: mean {u['mean']:.2f}, p90 {u['p90']:.0f}, max {u['max']}")
    if "bytes_per_token" in diag:
        lines.append(f"on disk: {diag['bytes_on_disk'] / 1e6:,.1f} MB = {diag['bytes_per_token']:.1f} B/token "
                     f"(decoded {diag['bytes_decoded_per_token']:.0f} B/token)")
    if "throughput" in diag:
        th = diag["throughput"]
        lines.append(f"write throughput: {th['windows_per_s']:,.2f} windows/s = {th['tokens_per_s']:,.0f} tokens/s "
                     f"({th['windows']} windows in {th['seconds']:.1f} s, this run)")
    return lines
