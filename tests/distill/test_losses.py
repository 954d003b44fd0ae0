"""The distillation losses against naive hand-written references (float64, explicit loops)."""

from __future__ import annotations

import math

import pytest
import torch

from bl2.distill import losses

torch.set_default_dtype(torch.float32)


def naive_kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)


def random_case(seed=0, B=2, L=3, V=12, sharp=3.0):
    g = torch.Generator().manual_seed(seed)
    z_s = torch.randn(B, L, V, generator=g, dtype=torch.float64)
    z_t = sharp * torch.randn(B, L, V, generator=g, dtype=torch.float64)
    return z_s, torch.log_softmax(z_t, -1)


@pytest.mark.parametrize("T", [1.0, 2.0])
def test_full_kl_matches_naive(T):
    z_s, lp = random_case()
    lq = losses.student_logprobs(z_s, T).double()
    lpT = losses.teacher_logprobs_at(lp, T).double()
    got = losses.kl_full(lq, lpT)
    for b in range(2):
        for j in range(3):
            p = [math.exp(x / T) for x in lp[b, j].tolist()]
            p = [x / sum(p) for x in p]
            q = [math.exp(x / T) for x in z_s[b, j].tolist()]
            q = [x / sum(q) for x in q]
            assert got[b, j].item() == pytest.approx(naive_kl(p, q), rel=1e-6)


def topk_inputs(lp, k, T):
    """What a cache stores: top-k ids/log-probs at T=1, and log Z_T over the full vocabulary."""
    vals, ids = lp.topk(k, dim=-1)
    logz = torch.logsumexp(lp / T, dim=-1)
    return ids, vals, logz


@pytest.mark.parametrize("T", [1.0, 2.0])
def test_topk_kl_matches_naive_tail_bucket(T):
    z_s, lp = random_case(seed=1)
    k = 4
    ids, vals, logz = topk_inputs(lp, k, T)
    lq = torch.log_softmax(z_s / T, -1)
    lt, t_R = losses.topk_targets(vals, logz if T != 1 else None, T)
    got = losses.kl_topk(lq, ids, lt, t_R)
    for b in range(2):
        for j in range(3):
            pT = torch.softmax(lp[b, j] / T, -1).tolist()
            q = torch.softmax(z_s[b, j] / T, -1).tolist()
            head = ids[b, j].tolist()
            t = [pT[i] for i in head] + [1 - sum(pT[i] for i in head)]
            qq = [q[i] for i in head] + [sum(q[i] for i in range(len(q)) if i not in head)]
            assert got[b, j].item() == pytest.approx(naive_kl(t, qq), rel=1e-6, abs=1e-9)


def test_topk_with_whole_vocab_equals_full_kl():
    z_s, lp = random_case(seed=2)
    ids, vals, logz = topk_inputs(lp, lp.shape[-1], 2.0)
    lq = torch.log_softmax(z_s / 2.0, -1)
    lt, t_R = losses.topk_targets(vals, logz, 2.0)
    full = losses.kl_full(lq, losses.teacher_logprobs_at(lp, 2.0))
    assert torch.allclose(losses.kl_topk(lq, ids, lt, t_R), full, atol=1e-10)


@pytest.mark.parametrize("T", [1.0, 2.0])
def test_topk_head_gradients_equal_full_kd(T):
    z_s, lp = random_case(seed=3, V=20)
    k = 5
    ids, vals, logz = topk_inputs(lp, k, T)
    z1 = z_s.clone().requires_grad_(True)
    lt, t_R = losses.topk_targets(vals, logz, T)
    losses.kl_topk(losses.student_logprobs(z1, T).double(), ids, lt, t_R).sum().backward()
    z2 = z_s.clone().requires_grad_(True)
    losses.kl_full(torch.log_softmax(z2 / T, -1), losses.teacher_logprobs_at(lp, T)).sum().backward()
    g_topk, g_full = z1.grad.gather(-1, ids), z2.grad.gather(-1, ids)
    assert torch.allclose(g_topk, g_full, atol=1e-12)
    # the tail only gets an aggregate signal: its gradients differ from full KD in general
    tail = torch.ones_like(z_s, dtype=torch.bool).scatter(-1, ids, False)
    assert not torch.allclose(z1.grad[tail], z2.grad[tail], atol=1e-6)


def test_topk_never_renormalises_over_head():
    """If the student puts all mass on the head in the teacher's proportions, KL is the tail-bucket term only."""
    lp = torch.log(torch.tensor([[[0.5, 0.3, 0.1, 0.1]]], dtype=torch.float64))
    ids = torch.tensor([[[0, 1]]])
    lt, t_R = losses.topk_targets(lp.gather(-1, ids), None, 1.0)
    assert t_R.item() == pytest.approx(0.2)
    lq = torch.log(torch.tensor([[[0.5, 0.3, 0.1, 0.1]]], dtype=torch.float64))
    assert losses.kl_topk(lq, ids, lt, t_R).item() == pytest.approx(0.0, abs=1e-12)
    lq_renorm = torch.log(torch.tensor([[[0.625, 0.375, 1e-12, 1e-12]]], dtype=torch.float64))
    assert losses.kl_topk(lq_renorm, ids, lt, t_R).item() > 1.0  # an empty tail is heavily penalised


def test_sample_kl_matches_naive_and_is_unbiased_in_gradient():
    z_s, lp = random_case(seed=4, B=1, L=1, V=8)
    n = 50
    g = torch.Generator().manual_seed(0)
    p = torch.exp(lp[0, 0])
    grads = []
    for _ in range(4000):
        draws = torch.multinomial(p, n, replacement=True, generator=g)
        uniq, counts = draws.unique(return_counts=True)
        ids, cnt = uniq.view(1, 1, -1), counts.view(1, 1, -1)
        z = z_s.clone().requires_grad_(True)
        kl = losses.kl_sample(torch.log_softmax(z, -1), ids, cnt, n)
        if len(grads) == 0:
            t = (cnt.double() / n)[0, 0].tolist()
            q = torch.softmax(z_s[0, 0], -1)[uniq].tolist()
            assert kl.item() == pytest.approx(sum(ti * math.log(ti / qi) for ti, qi in zip(t, q)), rel=1e-6)
        kl.sum().backward()
        grads.append(z.grad[0, 0])
    mean_grad = torch.stack(grads).mean(0)
    full_grad = torch.softmax(z_s[0, 0], -1) - p  # gradient of KL(p || softmax(z))
    assert torch.allclose(mean_grad, full_grad, atol=0.01)


def test_sample_empty_slots_contribute_nothing():
    lq = torch.log_softmax(torch.randn(1, 1, 6, dtype=torch.float64), -1)
    a = losses.kl_sample(lq, torch.tensor([[[2, 4]]]), torch.tensor([[[3, 2]]]), 5)
    b = losses.kl_sample(lq, torch.tensor([[[2, 4, 0, 0]]]), torch.tensor([[[3, 2, 0, 0]]]), 5)
    assert torch.equal(a, b)


def test_reductions_and_weighting():
    kl = torch.arange(12, dtype=torch.float64).view(3, 4)
    assert losses.reduce_kl(kl, "sequence").item() == pytest.approx(kl.sum().item() / 3)
    assert losses.reduce_kl(kl, "token").item() == pytest.approx(kl.mean().item())
    assert losses.reduce_kl(kl, "sequence").item() == pytest.approx(4 * losses.reduce_kl(kl, "token").item())
    ce, k = torch.tensor(2.0), torch.tensor(0.5)
    assert losses.combine(ce, k, 0.5, 2.0).item() == pytest.approx(0.5 * 2.0 + 0.5 * 4 * 0.5)
    assert losses.combine(ce, None, 0.5, 2.0).item() == 2.0
