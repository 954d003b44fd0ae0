"""`bl2 cache compare SPARSE FULL`: how far a topk, sample or hybrid cache's targets are from the full
distribution, measured against a full-mode cache of the same windows (same data, teachers and ensemble rule).

Per position, with p = softmax(logp_full / T) (T: each temperature of a topk grid; the sampling T of a sample
cache), and reported as means over positions:
- mass: p's mass on the stored ids (topk head mass; sample: mass of the ids that were drawn), mean and p10.
- kl_bucket: topk: the (k+1)-outcome KL(p || t) of the head plus ONE tail bucket, t_i = exp(logp_i/T - logZ_T),
  t_R = 1 - sum t_i, p_R = p's mass outside the head. It is 0 up to fp16 rounding by construction (the head is
  stored exactly, logZ exactly): it checks the storage, not the truncation.
  sample: the forward (S+1)-outcome KL(p || count/N) is infinite whenever an id with p > 0 was not drawn, so
  we report the reverse KL(count/N || p) over the drawn ids + one "not drawn" bucket (finite, 0 iff exact).
- kl_flat_tail (topk): KL(p || r) with r = head t_i plus the tail mass t_R spread evenly over the V - k tail
  ids. This is what truncation loses: the tail's shape. The k+1 loss only constrains the tail's total, so a
  student that learned nothing about the tail would sit here. 0 when k = V.
- grad_err: E ||p - r||_2, the L2 error of the KD gradient target w.r.t. the student logits (the gradient of
  KL(target || q) is q - target): sample: r = count/N (unbiased; this is its noise, E||.||^2 = (1 - sum p^2)/N);
  topk: r = head + flat tail as above (the k+1 loss's tail gradient for a student whose tail is flat);
  hybrid: r = the exact head + t_R * count/N on the tail draws (unbiased; noise only on the tail mass).
- hybrid reports the topk metrics of its head (mass, kl_bucket, kl_flat_tail: what the head alone would lose),
  plus mass_stored (the head and the drawn tail ids), kl_rev (the reverse KL over the stored ids + one "not
  stored" bucket, as for sample caches) and grad_err of its own target.
- A lossy compact encoding (bl2.cache.encodings: uint8 head log-probs) shows in kl_bucket: the head is compared
  with p itself, so kl_bucket is exactly the KL the encoding adds to the (k+1)-outcome target (~1e-8 nats for
  float16 heads: fp16 rounding). The result names the encoding and reports it as encoding_kl.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bl2.cache.reader import CacheReader
from bl2.errors import require

BLOCK = 8  # windows per step: a [8, L, V] float64 block of a 16k vocab is ~130 MB at L=128
SAME_KEYS = ("tokens_sha256", "split", "seq_len", "vocab_size", "window_offsets", "ensemble", "tokenizer_sha256")


def _xlogy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x * log(x / y) with 0 log 0 = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > 0, x * (np.log(np.maximum(x, 1e-300)) - np.log(np.maximum(y, 1e-300))), 0.0)


def _probs(logp_full: np.ndarray, t: float) -> np.ndarray:
    z = logp_full.astype(np.float64) / t
    z -= z.max(-1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(-1, keepdims=True)


def topk_metrics(p: np.ndarray, ids: np.ndarray, logp: np.ndarray, logz: np.ndarray | float, t: float) -> dict:
    """Per-position metrics of a top-k head + tail bucket against the full p (see module doc)."""
    v, k = p.shape[-1], ids.shape[-1]
    ph = np.take_along_axis(p, ids, -1)
    tail = p.copy()
    np.put_along_axis(tail, ids, 0.0, -1)
    p_r = tail.sum(-1)  # directly, not 1 - sum (no cancellation)
    th = np.exp(logp.astype(np.float64) / t - logz)
    t_r = np.clip(1.0 - th.sum(-1), 0.0, None)
    head_kl = _xlogy(ph, th).sum(-1)
    out = {"mass": ph.sum(-1), "kl_bucket": head_kl + _xlogy(p_r, t_r)}
    if v > k:
        flat = t_r / (v - k)
        out["kl_flat_tail"] = head_kl + _xlogy(tail, flat[..., None]).sum(-1)
        sq = ((ph - th) ** 2).sum(-1) + (tail**2).sum(-1) - 2 * flat * p_r + (v - k) * flat**2
    else:
        out["kl_flat_tail"] = head_kl
        sq = ((ph - th) ** 2).sum(-1)
    out["grad_err"] = np.sqrt(np.clip(sq, 0.0, None))
    return out


def sample_metrics(p: np.ndarray, ids: np.ndarray, counts: np.ndarray, n_draws: int) -> dict:
    """Per-position metrics of RS-KD counts against the full p (see module doc)."""
    drawn = counts > 0
    ps = np.where(drawn, np.take_along_axis(p, ids.astype(np.int64), -1), 0.0)
    that = counts / n_draws
    sq = (p**2).sum(-1) - (ps**2).sum(-1) + ((ps - that) ** 2).sum(-1)
    return {"mass": ps.sum(-1), "kl_bucket": _xlogy(that, ps).sum(-1), "grad_err": np.sqrt(np.clip(sq, 0.0, None))}


def hybrid_metrics(p: np.ndarray, ids: np.ndarray, logp: np.ndarray, logz: np.ndarray | float, t: float,
                   tail_ids: np.ndarray, tail_counts: np.ndarray, n_draws: int) -> dict:
    """Per-position metrics of a hybrid target (exact head + t_R * count/N on the tail draws) against p."""
    out = topk_metrics(p, ids, logp, logz, t)
    ph = np.take_along_axis(p, ids, -1)
    th = np.exp(logp.astype(np.float64) / t - logz)
    t_r = np.clip(1.0 - th.sum(-1), 0.0, None)
    drawn = tail_counts > 0
    pt = np.where(drawn, np.take_along_axis(p, tail_ids.astype(np.int64), -1), 0.0)
    rt = t_r[..., None] * tail_counts / n_draws
    tail_sq = (p**2).sum(-1) - (ph**2).sum(-1)  # sum of p^2 over the tail
    sq = ((ph - th) ** 2).sum(-1) + tail_sq - (pt**2).sum(-1) + ((pt - rt) ** 2).sum(-1)
    out.update(mass_stored=out["mass"] + pt.sum(-1), kl_rev=_xlogy(th, ph).sum(-1) + _xlogy(rt, pt).sum(-1),
               grad_err=np.sqrt(np.clip(sq, 0.0, None)))
    return out


def _metrics(rs: CacheReader, bs: dict, p: np.ndarray, t: float) -> dict:
    if rs.mode == "sample":
        m = sample_metrics(p, bs["sample_ids"], bs["sample_counts"], int(rs.n_draws))
        return m | {"kl_rev": m["kl_bucket"]}
    ti = rs.temperature_index(t)
    lz = 0.0 if ti is None else bs["logz"][..., ti : ti + 1].astype(np.float64)
    ids = bs["topk_ids"].astype(np.int64)
    if rs.mode == "topk":
        return topk_metrics(p, ids, bs["topk_logp"], lz, t)
    return hybrid_metrics(p, ids, bs["topk_logp"], lz, t, bs["tail_ids"], bs["tail_counts"], int(rs.n_draws))


def _check_pair(rs: CacheReader, rf: CacheReader) -> None:
    rs.require_complete()
    rf.require_complete()
    require(rf.mode == "full", f"{rf.path} is a {rf.mode} cache; the second cache must be mode full")
    require(rs.mode in ("topk", "sample", "hybrid"),
            f"{rs.path} is a {rs.mode} cache; the first must be topk, sample or hybrid")
    diff = [key for key in SAME_KEYS if rs.attrs.get(key) != rf.attrs.get(key)]
    same_teachers = [t["sha256"] for t in rs.attrs["teachers"]] == [t["sha256"] for t in rf.attrs["teachers"]]
    require(not diff and same_teachers, f"the caches do not describe the same windows and teachers "
            f"({', '.join(diff + ([] if same_teachers else ['teachers']))} differ)")


def _blocks(rs: CacheReader, rf: CacheReader, windows: int):
    """Aligned (sparse rows, full rows) blocks over the first `windows` windows of every alignment."""
    for a in range(len(rs.window_offsets)):
        s0, f0 = rs.offset_rows(a)[0], rf.offset_rows(a)[0]
        for w in range(0, windows, BLOCK):
            n = min(BLOCK, windows - w)
            yield rs.read(s0 + w, s0 + w + n), rf.read(f0 + w, f0 + w + n)


def compare_caches(sparse: str, full: str, max_windows: int | None = None) -> dict:
    """Metrics per temperature (means over positions, p10 of the mass) plus the caches' bytes per token."""
    rs, rf = CacheReader(sparse), CacheReader(full)
    _check_pair(rs, rf)
    windows = min(rs.windows_per_offset, rf.windows_per_offset, max_windows or rs.windows_per_offset)
    temps = rs.temperatures if rs.mode == "topk" else [float(rs.sample_temperature)]
    acc: dict[float, dict[str, list]] = {t: {} for t in temps}
    for bs, bf in _blocks(rs, rf, windows):
        require(np.array_equal(bs["input_ids"], bf["input_ids"]), "the caches' input_ids differ: not the same windows")
        for t in temps:
            for key, value in _metrics(rs, bs, _probs(bf["logp"], t), t).items():
                acc[t].setdefault(key, []).append(np.ravel(value))
    tokens = windows * rs.seq_len * len(rs.window_offsets)
    rows = []
    for t, metrics in acc.items():
        cat = {key: np.concatenate(v) for key, v in metrics.items()}
        row = {"T": t, **{key: float(v.mean()) for key, v in cat.items()}}
        row["mass_p10"] = float(np.percentile(cat["mass"], 10))
        rows.append(row)
    enc = rs.encoding
    return {"sparse": sparse, "full": full, "mode": rs.mode, "k": rs.k, "n_draws": rs.n_draws,
            "positions": tokens, "bytes_per_token": rs.nbytes_stored() / max(1, rs.n_windows * rs.seq_len),
            "encoding": enc.describe(), "lossy": enc.lossy,
            "encoding_kl": {f"{r['T']:g}": r["kl_bucket"] for r in rows} if enc.lossy else None, "rows": rows}


def compare(sparse: str, full: str, max_windows: int | None = None, out: Path | None = None) -> dict:
    """Print the comparison table (and write it as JSON with --out)."""
    from rich.table import Table

    from bl2.progress import console

    result = compare_caches(sparse, full, max_windows)
    label = {"topk": f"top-{result['k']}", "sample": f"sample N={result['n_draws']}",
             "hybrid": f"hybrid k={result['k']} + {result['n_draws']} tail draws"}[result["mode"]]
    table = Table("T", "mass mean", "mass p10", "mass stored", "kl_bucket", "kl_flat_tail", "kl_rev", "grad_err",
                  title=f"{label} vs full ({result['positions']:,} positions, {result['bytes_per_token']:.1f} B/token)")

    def cell(row: dict, key: str, fmt: str) -> str:
        return format(row[key], fmt) if key in row else "-"

    for row in result["rows"]:
        table.add_row(f"{row['T']:g}", f"{row['mass']:.4f}", f"{row['mass_p10']:.4f}", cell(row, "mass_stored", ".4f"),
                      f"{row['kl_bucket']:.3g}", cell(row, "kl_flat_tail", ".4g"), cell(row, "kl_rev", ".3g"),
                      f"{row['grad_err']:.4g}")
    console.print(table)
    if result["mode"] == "sample":
        console.print("kl_bucket for sample caches is the reverse KL(count/N || p): the forward one is infinite")
    if result["mode"] == "hybrid":
        console.print("mass, kl_bucket, kl_flat_tail: of the exact head; mass stored, kl_rev, grad_err: of the "
                      "hybrid target (head + t_R x count/N on the tail draws)")
    console.print(f"encoding: {result['encoding']}" + (
        "; the KL it adds (kl_bucket vs the full cache): " + ", ".join(
            f"{v:.3g} nats at T={t}" for t, v in result["encoding_kl"].items()) if result["lossy"] else ""))
    if out is not None:
        Path(out).write_text(json.dumps(result, indent=2) + "\n")
    return result
