"""The fused loss (training path) equals the readable reference composition of losses.py: values and gradients,
for every target kind, both reductions, T = 1 and 2, and alpha in {0.5, 1}."""

from __future__ import annotations

import pytest
import torch

from bl2.distill import fused
from bl2.distill.objective import LossSpec, Objective
from bl2.distill.sources import Batch

B, L, V, K = 3, 5, 50, 6


def make_batch(seed: int = 0) -> tuple[torch.Tensor, Batch]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, L, V, generator=g, dtype=torch.float64) * 2
    ids = torch.randint(0, V, (B, L + 1), generator=g)
    lp = torch.log_softmax(torch.randn(B, L, V, generator=g, dtype=torch.float64) * 3, -1)
    topv, topi = lp.topk(K, dim=-1)
    logz = torch.stack([torch.logsumexp(lp / T, -1) for T in (1.0, 2.0)], -1)
    draws = torch.multinomial(torch.exp(lp).view(-1, V), 20, replacement=True, generator=g)
    s_ids = torch.zeros(B * L, 20, dtype=torch.long)
    s_cnt = torch.zeros(B * L, 20, dtype=torch.long)
    for r in range(B * L):
        u, c = draws[r].unique(return_counts=True)
        s_ids[r, : len(u)], s_cnt[r, : len(u)] = u, c
    targets = {"logp": lp, "topk_ids": topi, "topk_logp": topv, "logz": logz,
               "sample_ids": s_ids.view(B, L, 20), "sample_counts": s_cnt.view(B, L, 20)}
    return logits, Batch(ids, targets)


def run(objective, logits, batch, reference=False):
    z = logits.clone().requires_grad_(True)
    parts = objective.reference(z, batch) if reference else objective(z, batch)
    parts.total.backward()
    return parts, z.grad


CASES = [("full", 1.0, None), ("full", 2.0, None), ("topk", 1.0, None), ("topk", 1.0, 0), ("topk", 2.0, 1),
         ("sample", 1.0, None)]


@pytest.mark.parametrize("mode, T, t_index", CASES)
@pytest.mark.parametrize("reduction", ["sequence", "token"])
@pytest.mark.parametrize("alpha", [0.5, 1.0])
def test_fused_equals_reference(mode, T, t_index, reduction, alpha, monkeypatch):
    monkeypatch.setattr(fused, "CHUNK_ELEMENTS", 4 * V)  # several chunks per batch
    logits, batch = make_batch()
    obj = Objective(LossSpec(mode, alpha, T, reduction, t_index=t_index, n_draws=20))
    a, ga = run(obj, logits, batch)
    b, gb = run(obj, logits, batch, reference=True)
    for x, y in [(a.total, b.total), (a.ce, b.ce), (a.kl, b.kl)]:
        assert torch.allclose(x.double(), y.double(), rtol=1e-5, atol=1e-7), (x, y)
    assert torch.allclose(ga, gb, rtol=1e-4, atol=1e-8)


def test_fused_ce_equals_cross_entropy():
    logits, batch = make_batch(1)
    a, ga = run(Objective(LossSpec()), logits, batch)
    b, gb = run(Objective(LossSpec()), logits, batch, reference=True)
    assert a.kl is None and torch.allclose(a.total.double(), b.total.double(), rtol=1e-6)
    assert torch.allclose(ga, gb, rtol=1e-4, atol=1e-9)


def test_fused_topk_whole_vocab_has_no_tail():
    logits, batch = make_batch(2)
    lp = batch.targets["logp"]
    vals, ids = lp.topk(V, dim=-1)
    batch.targets.update(topk_ids=ids, topk_logp=vals)
    a, ga = run(Objective(LossSpec("topk", 0.5, 1.0, "token")), logits, batch)
    b, gb = run(Objective(LossSpec("full", 0.5, 1.0, "token")), logits, batch)
    assert torch.allclose(a.kl.double(), b.kl.double(), rtol=1e-5) and torch.isfinite(ga).all()
    assert torch.allclose(ga, gb, rtol=1e-4, atol=1e-8)
