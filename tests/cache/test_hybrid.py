"""Hybrid targets (exact top-k head + draws from the tail) and the compact encodings, at the level of the maths:
the fused sparse path equals the readable reference (values and gradients); the hybrid target is unbiased for
p_T (Monte Carlo) and less noisy than pure sampling with the same draws; the uint8 head's error bound; the id
delta round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bl2.cache.encodings import Encoding, decode, delta_ids, dequantise_head, encode, quantise_head, undelta_ids
from bl2.data.batch import Batch
from bl2.distill import fused
from bl2.distill.objective import LossSpec, Objective, cached_targets, fused_targets

B, L, V, K, S = 3, 5, 50, 6, 12


def hybrid_batch(seed: int = 0) -> tuple[torch.Tensor, Batch]:
    """Random student logits and a hybrid target: the top-K head of a random p (logz at T = 1, 2) and S draws
    from p restricted to the tail, as unique ids + counts (empty slots: id 0, count 0)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, L, V, generator=g, dtype=torch.float64) * 2
    ids = torch.randint(0, V, (B, L + 1), generator=g)
    lp = torch.log_softmax(torch.randn(B, L, V, generator=g, dtype=torch.float64) * 3, -1)
    topv, topi = lp.topk(K, dim=-1)
    logz = torch.stack([torch.logsumexp(lp / T, -1) for T in (1.0, 2.0)], -1)
    tail_p = torch.exp(lp).scatter(-1, topi, 0.0).view(-1, V)
    draws = torch.multinomial(tail_p, S, replacement=True, generator=g)
    t_ids = torch.zeros(B * L, S, dtype=torch.long)
    t_cnt = torch.zeros(B * L, S, dtype=torch.long)
    for r in range(B * L):
        u, c = draws[r].unique(return_counts=True)
        t_ids[r, : len(u)], t_cnt[r, : len(u)] = u, c
    targets = {"topk_ids": topi, "topk_logp": topv, "logz": logz, "tail_ids": t_ids.view(B, L, S),
               "tail_counts": t_cnt.view(B, L, S), "logp": lp}
    return logits, Batch(ids, targets)


def run(objective, logits, batch, reference=False):
    z = logits.clone().requires_grad_(True)
    eye = torch.eye(z.shape[-1], dtype=z.dtype)  # an identity output layer: the hidden states are the logits
    parts = objective.reference(z, batch) if reference else objective(z, eye, batch)
    parts.total.backward()
    return parts, z.grad


@pytest.mark.parametrize("T, t_index", [(1.0, None), (1.0, 0), (2.0, 1)])
@pytest.mark.parametrize("reduction", ["sequence", "token"])
def test_fused_hybrid_equals_reference(T, t_index, reduction, monkeypatch):
    monkeypatch.setattr(fused, "CHUNK_ELEMENTS", 4 * V)  # several chunks per batch
    logits, batch = hybrid_batch()
    obj = Objective(LossSpec("hybrid", 0.5, T, reduction, t_index=t_index, n_draws=S))
    a, ga = run(obj, logits, batch)
    b, gb = run(obj, logits, batch, reference=True)
    for x, y in [(a.total, b.total), (a.ce, b.ce), (a.kl, b.kl)]:
        assert torch.allclose(x.double(), y.double(), rtol=1e-5, atol=1e-7), (x, y)
    assert torch.allclose(ga, gb, rtol=1e-4, atol=1e-8)


def test_hybrid_gradient_is_full_kd_gradient_on_the_head():
    """Head logits get exactly the full-KD gradient q - p (the head is stored exactly); the tail gets q - r."""
    logits, batch = hybrid_batch(1)
    topi = batch.targets["topk_ids"]
    spec = dict(alpha=0.0, temperature=1.0, kl_reduction="token")
    _, g_h = run(Objective(LossSpec("hybrid", n_draws=S, **spec)), logits, batch)
    _, g_f = run(Objective(LossSpec("full", **spec)), logits, batch)
    assert torch.allclose(g_h.gather(-1, topi), g_f.gather(-1, topi), rtol=1e-4, atol=1e-9)


def dense(spec: LossSpec, targets: dict) -> np.ndarray:
    """The loss's target distribution [B, L, V] of cache rows: the sparse weights fused_targets builds, scattered."""
    rows = {k: torch.as_tensor(v.astype(np.int64) if v.dtype == np.uint16 else v) for k, v in targets.items()}
    t = fused_targets(spec, cached_targets(spec, Batch(None, rows)))
    ids, w = t["sparse_ids"].long(), t["sparse_w"].double()
    return torch.zeros(*ids.shape[:-1], 10, dtype=torch.float64).scatter_add_(-1, ids, w).numpy()


def test_hybrid_target_expectation_is_p_T():
    """Monte Carlo over 3000 windows (T = 2): the hybrid target the loss uses averages to p_T (unbiased), and its
    squared error is well below pure sampling's with the same number of draws."""
    from bl2.cache.targets import TargetSpec, hybrid_targets, sample_targets

    g = torch.Generator().manual_seed(0)
    logits = [torch.randn(1, 2, 10, generator=g) * 2, torch.randn(1, 2, 10, generator=g) * 2]
    common = dict(ensemble="logit_mean", n_draws=4, sample_temperature=2.0, seed=7)
    hyb = TargetSpec(mode="hybrid", k=3, temperatures=(2.0,), with_logz=True, **common)
    smp = TargetSpec(mode="sample", **common)
    p_T = torch.softmax(torch.log_softmax((logits[0] + logits[1]) / 2, -1) / 2.0, -1)[0].numpy()
    rows = np.arange(3000)
    many = [z.expand(len(rows), -1, -1) for z in logits]  # the same two positions in 3000 windows (seeds)
    out = hybrid_targets(many, hyb, rows)
    assert (out["tail_counts"].sum(-1) == 4).all()
    clash = (out["tail_ids"][..., :, None] == out["topk_ids"][..., None, :]).any(-1) & (out["tail_counts"] > 0)
    assert not clash.any()
    r_h = dense(LossSpec("hybrid", 0.5, 2.0, t_index=0, n_draws=4), out)
    r_s = dense(LossSpec("sample", 0.5, 2.0, n_draws=4), sample_targets(many, smp, rows))
    assert np.abs(r_h.mean(0) - p_T).max() < 0.01  # ~4 standard errors of the tail entries at 12k tail draws
    assert np.allclose(r_h.sum(-1), 1.0, atol=1e-3)
    err_h, err_s = ((r_h - p_T) ** 2).sum(-1).mean(), ((r_s - p_T) ** 2).sum(-1).mean()
    assert err_h < 0.5 * err_s, (err_h, err_s)


def test_uint8_head_error_bound():
    """Steps below each position's maximum: the top exact, the rest within step / 2 down to 255 steps below it,
    sorted, and never more than all the mass (rounded down where nearest would overfill the head)."""
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.full(400, 0.05), size=300)  # peaked and flat positions, some with a tiny tail
    lp = np.log(-np.sort(-p, -1)[:, :64]).astype(np.float16)
    for step in (1 / 4, 1 / 8, 1 / 16):
        q, top = quantise_head(lp, step)
        back = dequantise_head(q, top, step).astype(np.float64)
        ref = lp.astype(np.float64)
        ulp = np.maximum(np.abs(ref), np.abs(back)) * 2.0**-11  # the float16 rounding of the decoded value
        assert dequantise_head(q, top, step).dtype == np.float16 and (back[:, 0] == ref[:, 0]).all()
        assert (q[:, 0] == 0).all() and np.exp(back).sum(-1).max() <= 1.0 and (np.diff(back, axis=-1) <= 0).all()
        err = np.abs(back - ref)
        inside = ref >= ref[:, :1] - 255 * step
        down = q != np.clip(np.rint((ref[:, :1] - ref) / step), 0, 255)
        assert down.any(-1).sum() >= 1  # this data has positions nearest rounding would overfill, at every step
        down = down.any(-1)  # the rows rounded down: within one step, and below
        assert (err <= step / 2 + ulp)[~down][inside[~down]].all()
        assert (err[down] <= step + ulp[down]).all() and (back[down] <= ref[down] + ulp[down]).all()
        assert np.allclose(back[~inside], (ref[:, :1] - 255 * step).repeat(64, 1)[~inside], atol=1e-2)


def test_delta_ids_round_trip():
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 65536, size=(50, 7, 12)).astype(np.uint16)  # wraps modulo 2^16
    counts = rng.integers(0, 3, size=ids.shape).astype(np.uint8)
    ids[counts == 0] = 0
    d = delta_ids(ids, counts)
    assert (d[counts == 0] == 0).all()
    assert np.array_equal(undelta_ids(d, counts), ids)


def test_head_by_id_round_trip():
    """head_order id: stored sorted by id (ids as int16 deltas), read back sorted by value; equal values by id."""
    rng = np.random.default_rng(2)
    ids = np.stack([rng.choice(16000, 8, replace=False) for _ in range(60)]).reshape(6, 10, 8).astype(np.uint16)
    values = -np.sort(rng.choice(np.arange(0, 12, 0.5), size=(6, 10, 8)), -1).astype(np.float16)  # many ties
    stored = encode({"topk_ids": ids, "topk_logp": values}, Encoding(head_order="id"))
    assert stored["topk_ids"].dtype == np.int16 and (np.diff(undelta_ids(stored["topk_ids"]), axis=-1) > 0).all()
    back = decode(stored, Encoding(head_order="id"))
    assert np.array_equal(back["topk_logp"], values)
    key = lambda b: np.take_along_axis(b["topk_ids"], np.lexsort((b["topk_ids"], -b["topk_logp"])), -1)  # noqa: E731
    assert np.array_equal(back["topk_ids"], key({"topk_ids": ids, "topk_logp": values}))
