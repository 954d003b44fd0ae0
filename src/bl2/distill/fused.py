"""The training loss, fused: CE and the distillation KL of DESIGN §6 with their gradient computed in one pass
over the logits, a few hundred positions at a time.

Why: over a 16k vocabulary the unfused graph (log_softmax for CE, log_softmax(z / T) for the KL, the masked
copy for the tail's logsumexp, and each backward) materialises several [B, L, V] fp32 tensors per step. On a CPU
that doubled the step time of a 5M-parameter student and added ~45% to its peak memory. Here the forward works on
chunks of positions, writes d(loss)/d(logits) into one buffer, and the backward only scales it. The maths is that
of `losses.py` (the readable reference, which the tests compare this against, values and gradients):

    lq = log_softmax(z / T), q = exp(lq);  KL = sum_i t_i (log t_i - lq_i) [+ t_R (log t_R - log Q_R)]
    dKL/dz = (q * S - t_on_support - t_R * q_tail / Q_R) / T,   S = sum of the target mass (1 up to rounding)

Shapes: N positions (B * L flattened), V vocabulary, K head size / sample slots, P positions per chunk.
"""

from __future__ import annotations

import torch

CHUNK_ELEMENTS = 1 << 22  # ~16 MB of fp32 per [P, V] temporary: stays in cache, no page-fault storms


TINY = torch.finfo(torch.float32).tiny


def _student(z_PV: torch.Tensor, T: float, gather: list[torch.Tensor]):
    """q_T = softmax(z / T) in a fresh buffer, and log q_T at the `gather` index tensors (taken before the
    log-probs are exponentiated in place, so no second [P, V] buffer is needed)."""
    lq = torch.log_softmax(z_PV / T, dim=-1) if T != 1.0 else z_PV - torch.logsumexp(z_PV, dim=-1, keepdim=True)
    picked = [lq.gather(-1, idx) for idx in gather]
    return lq, picked


def _topk(lq: torch.Tensor, lq_head: torch.Tensor, tgt: dict, T: float):
    """KL [P] and the KL-gradient pieces for a top-k head plus the exact tail bucket.
    Returns (kl, q, row_scale [P], head_add [P, K]): dKL/dz * T = q * row_scale + scatter(head_add)."""
    ids = tgt["topk_ids"]
    lt = tgt["topk_logp"].float() / T
    if tgt.get("logz") is not None:
        lt = lt - tgt["logz"].float().unsqueeze(-1)
    t = torch.exp(lt)
    t_R = torch.clamp(1.0 - t.sum(-1), min=0.0)
    kl = torch.sum(t * (lt - lq_head), dim=-1)
    q = lq.exp_()
    row_scale, head_add = t.sum(-1) + t_R, -t
    if ids.shape[-1] < q.shape[-1]:  # the tail bucket (absent when the head is the whole vocabulary)
        q_head = q.gather(-1, ids)
        q_R = q.scatter_(-1, ids, 0.0).sum(-1).clamp_min(TINY)  # tail mass summed directly, never 1 - sum(head)
        q.scatter_(-1, ids, q_head)
        has = t_R > 0
        kl = kl + torch.where(has, torch.xlogy(t_R, t_R) - t_R * torch.log(q_R), torch.zeros_like(t_R))
        share = torch.where(has, t_R / q_R, torch.zeros_like(t_R))  # tail j gets -t_R * q_j / Q_R
        row_scale = row_scale - share
        head_add = head_add + share.unsqueeze(-1) * q_head  # ... but head tokens are not in the tail
    return kl, q, row_scale, head_add


def _sparse(lq_ids: torch.Tensor, tgt: dict):
    """KL [P] and the KL-gradient pieces for a sparse weighted target: weights w [P, M] on ids [P, M] (distinct
    ids wherever w > 0; objective.fused_targets builds them for sample and hybrid targets).
    Returns (kl, row_scale [P], add [P, M]): dKL/dz * T = q * row_scale + scatter(add)."""
    w = tgt["sparse_w"].float()
    return torch.sum(torch.xlogy(w, w) - w * lq_ids, dim=-1), w.sum(-1), -w


def _chunk(z: torch.Tensor, lab: torch.Tensor, kind: str | None, tgt: dict, a: float, c: float, T: float):
    """(CE sum, KL [P] or None, d(total)/dz [P, V]) for one chunk of positions.
    a = weight of each position's CE, c = weight of each position's KL times T (the 1/T of dz/d(z/T) cancels)."""
    ids = {"topk": "topk_ids", "sparse": "sparse_ids"}.get(kind)
    gather = [lab] + ([tgt[ids]] if ids else [])
    lq1, picked = _student(z, 1.0, gather)
    ce = -picked[0].sum()
    if kind is None or T == 1.0:
        lqT, pickedT = lq1, picked
    else:
        lqT, pickedT = _student(z, T, gather[1:] if ids else [])
        pickedT = [None] + pickedT
    kl = None
    if kind == "full":
        lp = tgt["logp"].float()
        lpT = lp if T == 1.0 else torch.log_softmax(lp / T, dim=-1)
        p = torch.exp(lpT)
        kl = torch.sum(p * lpT, dim=-1) - torch.sum(p * lqT, dim=-1)
        qT = lqT.exp_() if lqT is not lq1 else None
        g_kl = (qT, p.sum(-1), p)  # q_T * sum(p) - p
    elif kind == "sparse":
        kl, row_scale, add = _sparse(pickedT[1], tgt)
        qT = lqT.exp_() if lqT is not lq1 else None
        g_kl = (qT, row_scale, add)
    elif kind == "topk":
        kl, qT, row_scale, head_add = _topk(lqT, pickedT[1], tgt, T)
        qT = qT if lqT is not lq1 else None
        g_kl = (qT, row_scale, head_add)
    # d(total)/dz = a * (q - onehot(label)) + c * (q_T * row_scale + [scatter of] extra)
    q = lq1 if kind == "topk" and lqT is lq1 else lq1.exp_()
    if kind is None:
        g = q.mul_(a)
    else:
        qT, row_scale, extra = g_kl
        if qT is None:  # T == 1: the same q serves CE and KL
            g = q.mul_((a + c * row_scale).unsqueeze(-1))
        else:
            g = q.mul_(a).addcmul_(qT, (c * row_scale).unsqueeze(-1))
        if kind == "full":
            g.add_(extra, alpha=-c)
        else:
            g.scatter_add_(-1, tgt[ids], c * extra)
    g.scatter_add_(-1, lab, torch.full(lab.shape, -a, dtype=g.dtype, device=g.device))
    return ce, kl, g


def loss_and_grad(z_NV: torch.Tensor, labels_N: torch.Tensor, kind: str | None, targets: dict, alpha: float,
                  T: float, kl_scale: float, ce_scale: float):
    """Sums over positions: (CE sum, KL sum or None) and d(total)/dz with
    total = alpha * ce_scale * CE_sum + (1 - alpha) * T^2 * kl_scale * KL_sum."""
    n, v = z_NV.shape
    grad_NV = torch.empty(n, v, dtype=z_NV.dtype, device=z_NV.device)
    ce_sum = torch.zeros((), dtype=torch.float32, device=z_NV.device)
    kl_sum = torch.zeros((), dtype=torch.float32, device=z_NV.device) if kind else None
    a, c = alpha * ce_scale, (1.0 - alpha) * T * kl_scale
    step = max(1, CHUNK_ELEMENTS // v)
    for s in range(0, n, step):
        tgt = {k: (x[s : s + step] if isinstance(x, torch.Tensor) else x) for k, x in targets.items()}
        ce, kl, g = _chunk(z_NV[s : s + step].float(), labels_N[s : s + step].unsqueeze(-1), kind, tgt, a, c, T)
        ce_sum += ce
        if kind:
            kl_sum += kl.sum()
        grad_NV[s : s + step] = g
    return ce_sum, kl_sum, grad_NV


class FusedLoss(torch.autograd.Function):
    """total, ce_mean, kl_reduced = FusedLoss.apply(logits_BLV, labels_BL, spec, names, *target tensors), with
    spec a LossSpec and names the target tensors' names. Only `total` carries a gradient; ce and kl are for
    logging."""

    @staticmethod
    def forward(ctx, logits_BLV, labels_BL, spec, names: list[str], *tensors):
        b, seq, v = logits_BLV.shape
        n = b * seq
        targets = {name: t.reshape(n, *t.shape[2:]) for name, t in zip(names, tensors)}
        alpha, T = spec.alpha, spec.temperature
        kind = "sparse" if "sparse_w" in targets else spec.mode  # sample and hybrid: objective.fused_targets
        kl_scale = 1.0 / b if spec.kl_reduction == "sequence" else 1.0 / n
        ce_sum, kl_sum, grad = loss_and_grad(logits_BLV.reshape(n, v), labels_BL.reshape(n), kind, targets, alpha, T,
                                             kl_scale, 1.0 / n)
        ce = ce_sum / n
        kl = kl_sum * kl_scale if kind else torch.zeros_like(ce)
        total = alpha * ce + (1.0 - alpha) * T * T * kl if kind else ce.clone()
        ctx.save_for_backward(grad.view(b, seq, v))
        ctx.n_inputs = 4 + len(tensors)
        ctx.mark_non_differentiable(ce, kl)
        return total, ce, kl

    @staticmethod
    def backward(ctx, grad_total, _grad_ce, _grad_kl):
        (grad,) = ctx.saved_tensors
        return (grad * grad_total.to(grad.dtype),) + (None,) * (ctx.n_inputs - 1)
