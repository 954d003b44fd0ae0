"""Distillation losses (DESIGN §6). Shapes: B batch, L positions, V vocabulary, K head size / sample slots.

The student is always normalised over the full vocabulary: lq = log_softmax(z / T). Every KL function
returns the per-position KL [B, L]; `reduce_kl` applies the chosen reduction and `combine` the weighting
alpha * CE + (1 - alpha) * T^2 * KL.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def upcast(x: torch.Tensor) -> torch.Tensor:
    """fp16/bf16 -> fp32 for the loss maths; fp64 stays fp64 (reference tests)."""
    return x if x.dtype == torch.float64 else x.float()


def ce_loss(logits_BLV: torch.Tensor, labels_BL: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over all label positions (fp32)."""
    return F.cross_entropy(upcast(logits_BLV).flatten(0, 1), labels_BL.flatten())


def student_logprobs(logits_BLV: torch.Tensor, temperature: float) -> torch.Tensor:
    return torch.log_softmax(upcast(logits_BLV) / temperature, dim=-1)


def teacher_logprobs_at(logp_BLV: torch.Tensor, temperature: float) -> torch.Tensor:
    """p_T from T=1 log-probs: log_softmax(logp / T) (temperature applied to the combined ensemble)."""
    logp_BLV = upcast(logp_BLV)
    return logp_BLV if temperature == 1.0 else torch.log_softmax(logp_BLV / temperature, dim=-1)


def kl_full(lq_BLV: torch.Tensor, lp_BLV: torch.Tensor) -> torch.Tensor:
    """KL(p || q) over the full vocabulary, per position; p and q given as log-probs."""
    return torch.sum(torch.exp(lp_BLV) * (lp_BLV - lq_BLV), dim=-1)


def topk_targets(logp_BLK: torch.Tensor, logz_BL: torch.Tensor | None, temperature: float):
    """Head log-targets lt_i = logp_i / T - logZ_T and the tail mass t_R = 1 - sum t_i (clamped >= 0)."""
    lt_BLK = upcast(logp_BLK) / temperature
    if logz_BL is not None:
        lt_BLK = lt_BLK - upcast(logz_BL).unsqueeze(-1)
    t_R = torch.clamp(1.0 - torch.exp(lt_BLK).sum(-1), min=0.0)
    return lt_BLK, t_R


def kl_topk(lq_BLV: torch.Tensor, ids_BLK: torch.Tensor, lt_BLK: torch.Tensor, t_R: torch.Tensor) -> torch.Tensor:
    """KL over the k head outcomes plus one tail bucket. The student's tail log-mass is a logsumexp over the
    tokens outside the head (not log(1 - sum), which cancels catastrophically when the head holds most mass).
    Head gradients then equal full-KD gradients exactly; the tail is matched in aggregate."""
    lq_head = lq_BLV.gather(-1, ids_BLK)
    head = torch.sum(torch.exp(lt_BLK) * (lt_BLK - lq_head), dim=-1)
    if ids_BLK.shape[-1] == lq_BLV.shape[-1]:  # the head is the whole vocabulary: there is no tail
        return head
    lq_tail = torch.logsumexp(lq_BLV.scatter(-1, ids_BLK, float("-inf")), dim=-1)
    return head + torch.xlogy(t_R, t_R) - t_R * lq_tail


def kl_sample(lq_BLV: torch.Tensor, ids_BLS: torch.Tensor, counts_BLS: torch.Tensor, n_draws: int) -> torch.Tensor:
    """Sparse Logit Sampling: targets t_i = count_i / n_draws (unbiased for p_T); empty slots (count 0) add 0."""
    t_BLS = counts_BLS.to(lq_BLV.dtype) / n_draws
    lq_s = lq_BLV.gather(-1, ids_BLS)
    return torch.sum(torch.xlogy(t_BLS, t_BLS) - t_BLS * lq_s, dim=-1)


def hybrid_tail_weights(t_R: torch.Tensor, counts_BLS: torch.Tensor, n_draws: int) -> torch.Tensor:
    """Hybrid tail targets t_R * count_j / n_draws: the tail mass spread over the draws from the tail (unbiased
    for p_T on the tail, since E[count_j / n_draws] = p_T(j) / R_T); empty slots (count 0) weigh 0."""
    return t_R.unsqueeze(-1) * (counts_BLS.to(t_R.dtype) / n_draws)


def kl_hybrid(lq_BLV: torch.Tensor, ids_BLK: torch.Tensor, lt_BLK: torch.Tensor, t_R: torch.Tensor,
              tail_ids_BLS: torch.Tensor, tail_counts_BLS: torch.Tensor, n_draws: int) -> torch.Tensor:
    """Hybrid: the exact top-k head (lt, t_R as topk_targets gives them) plus the tail mass t_R spread over the
    tail draws (hybrid_tail_weights): a sparse target over K + S ids. Head and tail ids are disjoint."""
    head = torch.sum(torch.exp(lt_BLK) * (lt_BLK - lq_BLV.gather(-1, ids_BLK)), dim=-1)
    w_BLS = hybrid_tail_weights(t_R, tail_counts_BLS, n_draws)
    tail = torch.sum(torch.xlogy(w_BLS, w_BLS) - w_BLS * lq_BLV.gather(-1, tail_ids_BLS), dim=-1)
    return head + tail


def reduce_kl(kl_BL: torch.Tensor, reduction: str) -> torch.Tensor:
    """sequence: sum over positions, mean over sequences (the reference's KLDivLoss batchmean on [B, L, V],
    so ~L times a per-token KL); token: mean over all positions."""
    if reduction == "sequence":
        return kl_BL.sum(-1).mean()
    assert reduction == "token", reduction
    return kl_BL.mean()


def combine(ce: torch.Tensor, kl: torch.Tensor | None, alpha: float, temperature: float) -> torch.Tensor:
    if kl is None:
        return ce
    return alpha * ce + (1.0 - alpha) * temperature**2 * kl
