"""The fused loss (training path: output layer + loss from the hidden states) equals the readable reference
composition of losses.py on the full logits: values and gradients (to the hidden states and the output layer's
weight), for every target kind, both reductions, T = 1 and 2, and alpha in {0.5, 1}."""

from __future__ import annotations

import pytest
import torch

from bl2.data.batch import Batch
from bl2.distill import fused
from bl2.distill.objective import LossSpec, Objective

B, L, V, K, H = 3, 5, 50, 6, 8


def make_batch(seed: int = 0) -> tuple[tuple[torch.Tensor, torch.Tensor], Batch]:
    """((hidden [B, L, H], weight [V, H]), batch); the logits hidden @ weight^T have a spread of about 2."""
    g = torch.Generator().manual_seed(seed)
    head = (torch.randn(B, L, H, generator=g, dtype=torch.float64),
            torch.randn(V, H, generator=g, dtype=torch.float64) * 2 / H**0.5)
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
    return head, Batch(ids, targets)


def run(objective, head, batch, reference=False):
    """LossParts and the gradients (d/d hidden, d/d weight): fused, or the reference on full logits."""
    h, w = (x.clone().requires_grad_(True) for x in head)
    parts = objective.reference(h @ w.t(), batch) if reference else objective(h, w, batch)
    parts.total.backward()
    return parts, torch.cat([h.grad.flatten(), w.grad.flatten()])


CASES = [("full", 1.0, None), ("full", 2.0, None), ("topk", 1.0, None), ("topk", 1.0, 0), ("topk", 2.0, 1),
         ("sample", 1.0, None)]


@pytest.mark.parametrize("mode, T, t_index", CASES)
@pytest.mark.parametrize("reduction", ["sequence", "token"])
@pytest.mark.parametrize("alpha", [0.5, 1.0])
def test_fused_equals_reference(mode, T, t_index, reduction, alpha, monkeypatch):
    monkeypatch.setattr(fused, "CHUNK_ELEMENTS", 4 * V)  # several chunks per batch, the last one short
    head, batch = make_batch()
    obj = Objective(LossSpec(mode, alpha, T, reduction, t_index=t_index, n_draws=20))
    a, ga = run(obj, head, batch)
    b, gb = run(obj, head, batch, reference=True)
    for x, y in [(a.total, b.total), (a.ce, b.ce), (a.kl, b.kl)]:
        assert torch.allclose(x.double(), y.double(), rtol=1e-5, atol=1e-7), (x, y)
    assert torch.allclose(ga, gb, rtol=1e-4, atol=1e-8)


def test_fused_ce_equals_cross_entropy():
    head, batch = make_batch(1)
    a, ga = run(Objective(LossSpec()), head, batch)
    b, gb = run(Objective(LossSpec()), head, batch, reference=True)
    assert a.kl is None and torch.allclose(a.total.double(), b.total.double(), rtol=1e-6)
    assert torch.allclose(ga, gb, rtol=1e-4, atol=1e-9)


def test_fused_topk_whole_vocab_has_no_tail():
    head, batch = make_batch(2)
    lp = batch.targets["logp"]
    vals, ids = lp.topk(V, dim=-1)
    batch.targets.update(topk_ids=ids, topk_logp=vals)
    a, ga = run(Objective(LossSpec("topk", 0.5, 1.0, "token")), head, batch)
    b, gb = run(Objective(LossSpec("full", 0.5, 1.0, "token")), head, batch)
    assert torch.allclose(a.kl.double(), b.kl.double(), rtol=1e-5) and torch.isfinite(ga).all()
    assert torch.allclose(ga, gb, rtol=1e-4, atol=1e-8)


def test_fused_fp32_and_scaled_backward():
    """The training dtype (fp32 maths) against the fp64 reference, and a scaled total (gradient accumulation)."""
    head, batch = make_batch(3)
    obj = Objective(LossSpec("topk", 0.5, 2.0, "sequence", t_index=1))
    h, w = (x.float().requires_grad_(True) for x in head)
    parts = obj(h, w, batch)
    (parts.total * 0.25).backward()
    b, gb = run(obj, head, batch, reference=True)
    assert torch.allclose(parts.total.double(), b.total, rtol=1e-5)
    assert torch.allclose(torch.cat([h.grad.flatten(), w.grad.flatten()]).double(), 0.25 * gb, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("mode", [None, "sample"])
def test_fused_under_autocast_matmuls_in_bf16(mode):
    """The autocast path (bf16 matmuls as on CUDA, fp32 loss maths), here on CPU: close to the fp64 reference."""
    head, batch = make_batch(4)
    obj = Objective(LossSpec(mode, 0.5, 1.0, "token", n_draws=20) if mode else LossSpec())
    h, w = (x.float().requires_grad_(True) for x in head)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        parts = obj(h, w, batch)
    parts.total.backward()
    b, gb = run(obj, head, batch, reference=True)
    assert parts.total.dtype == torch.float32 and h.grad.dtype == w.grad.dtype == torch.float32
    assert torch.allclose(parts.total.double(), b.total, rtol=2e-2)
    assert torch.allclose(torch.cat([h.grad.flatten(), w.grad.flatten()]).double(), gb, rtol=5e-2, atol=5e-3)


def test_linear_ce_sum_equals_cross_entropy(monkeypatch):
    """Validation's chunked CE of hidden @ weight^T is the summed cross-entropy of the full logits."""
    monkeypatch.setattr(fused, "CHUNK_ELEMENTS", 4 * V)
    (h, w), batch = make_batch(5)
    labels = batch.input_ids[:, 1:]
    expected = torch.nn.functional.cross_entropy((h @ w.t()).flatten(0, 1), labels.flatten(), reduction="sum")
    assert torch.allclose(fused.linear_ce_sum(h, w, labels), expected, rtol=1e-10)
