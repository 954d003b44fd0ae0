"""`cache verify --teachers`: forward the teachers again on a few random windows and compare with the cache.

The reference is computed independently of the writer's slicing: the full fp32 ensemble log-probs of the
windows (`bl2.model.ensemble.combine`), then the stored values are checked against them within fp16
tolerance. Samples are redrawn with the writer's per-window seeds and must reproduce (almost) exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bl2.cache.checks import ABS_TOL, REL_TOL, SAMPLE_MATCH, Checks, logsumexp


def _close(stored: np.ndarray, ref: np.ndarray) -> tuple[bool, float]:
    err = np.abs(stored.astype(np.float64) - ref.astype(np.float64))
    return bool((err <= ABS_TOL + REL_TOL * np.abs(ref)).all()), float(err.max(initial=0.0))


def compare_topk(block: dict, lp: np.ndarray, temps: list[float], c: Checks) -> None:
    ids = block["topk_ids"].astype(np.int64)
    at_ids = np.take_along_axis(lp, ids, axis=-1)
    ok, err = _close(block["topk_logp"], at_ids)
    c.check("recompute", ok, f"stored top-k log-probs differ from the teachers' by up to {err:.4f}")
    outside = lp.copy()
    np.put_along_axis(outside, ids, -np.inf, axis=-1)
    gap = outside.max(-1) - at_ids.min(-1)  # > 0 when a token outside the head beats one inside it
    c.check("recompute", bool((gap <= ABS_TOL).all()), f"stored ids are not the top-k (gap {gap.max():.4f})")
    if "logz" in block:
        ref = np.stack([logsumexp(lp / t) for t in temps], -1)
        ok, err = _close(block["logz"], ref)
        c.check("recompute", ok, f"logz differs from the full-vocabulary value by up to {err:.5f}")


def recompute_check(r, teachers: list[Path], n_windows: int, device: str, c: Checks) -> None:
    """Teachers must be the cache's (weights sha256), then N random committed windows are recomputed."""
    import torch

    from bl2.cache.targets import TargetSpec, sample_targets
    from bl2.cache.teachers import weights_sha256
    from bl2.model.ensemble import Ensemble, combine
    from bl2.runtime import pick_device

    recorded = [t["sha256"] for t in r.attrs["teachers"]]
    given = [weights_sha256(t) for t in teachers]
    c.check("teachers", given == recorded, "the given teachers' weights differ from the ones the cache records")
    if given != recorded or r.windows_done == 0:
        c.skip("recompute", "teachers differ" if given != recorded else "no windows written")
        return
    written = np.concatenate([np.arange(s, e) for s, e in r.committed_ranges()])
    rows = np.sort(np.random.default_rng(0).choice(written, min(n_windows, len(written)), replace=False))
    block = {n: np.concatenate([r.read(int(i), int(i) + 1, [n])[n] for i in rows]) for n in r.arrays}
    dev = pick_device(device)
    ens = Ensemble(teachers, dev, r.attrs["ensemble"])
    x = torch.from_numpy(block["input_ids"][:, :-1].astype(np.int64)).to(dev)
    logits = ens.member_logits(x)
    lp = combine(logits, r.attrs["ensemble"]).cpu().numpy() if r.mode != "sample" else None
    if r.mode == "topk":
        compare_topk(block, lp, r.temperatures, c)
    elif r.mode == "full":
        ok, err = _close(block["logp"], lp)
        c.check("recompute", ok, f"stored log-probs differ from the teachers' by up to {err:.4f}")
    else:
        spec = TargetSpec(mode="sample", ensemble=r.attrs["ensemble"], n_draws=int(r.n_draws),
                          sample_temperature=float(r.sample_temperature), seed=int(r.attrs.get("sample_seed") or 0))
        redrawn = sample_targets(logits, spec, rows)
        same = (redrawn["sample_ids"] == block["sample_ids"]).all(-1) & (
            redrawn["sample_counts"] == block["sample_counts"]).all(-1)
        c.check("recompute", same.mean() >= SAMPLE_MATCH, f"only {same.mean():.1%} of positions redraw identically")
        c.details["recompute"] = f"{same.mean():.1%} of positions redraw identically"
    c.details.setdefault("recompute", f"{len(rows)} windows of rows {rows.tolist()} within fp16 tolerance")
