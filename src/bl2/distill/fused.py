"""The training loss, fused with the model's output layer: CE and the distillation KL of DESIGN §6 and their
gradients, computed a few hundred positions at a time from the final hidden states, so that no [B, L, V] tensor
(logits, log-probs or their gradient) ever exists.

Why: over a 16k vocabulary a 5M-parameter student's step is mostly its output layer and the loss. The plain
graph (logits, log_softmax for CE, log_softmax(z / T) for the KL, the masked copy for the tail's logsumexp, and
each backward) materialises several [B, L, V] fp32 tensors of 262 MB at batch 32 x 128. Here each chunk of
positions computes its logits z = h W^T into one cache-sized buffer, turns that buffer into d(total)/dz in place,
and folds it straight into the two gradients the backward needs: dh = g W and dW += g^T h. The backward only
scales them. The maths is that of `losses.py` (the readable reference, which tests/test_fused.py compares this
against, values and gradients):

    lq = log_softmax(z / T), q_T = exp(lq);  KL = sum_i t_i (log t_i - lq_i) [+ t_R (log t_R - log Q_R)]
    d(T^2 KL)/dz = T (q_T * S - t_on_support - t_R * q_T,tail / Q_R),   S = sum of the target mass (1 up to rounding)
    d(CE)/dz = q_1 - onehot(label)
    total = alpha * CE_mean + (1 - alpha) * T^2 * KL_reduced

so per position, with a = alpha / N (CE weight) and c = (1 - alpha) * T * kl_scale (KL weight; one T of T^2 is
the 1/T of dz/d(z/T)):  g = a (q_1 - onehot) + c (q_T * S - t_on_support - t_R q_T,tail / Q_R).
Each target kind is one small function below (`ce_only`, `full`, `topk`, `sparse` for sample and hybrid)
returning a `Chunk`.

Shapes: N positions (B * L flattened), H hidden size, V vocabulary, K head size / sample slots, P positions per
chunk.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

# The default chunk when none is given (`chunks.py` measures the best one per machine; the training loop passes
# that). CPU: 32 MB of fp32 per [P, V] buffer (524 positions at V = 16k); measured on the first 2-core VM (tiny
# head, 4,096 positions, loss + output layer forward and backward): 2^20 elements 0.80 s, 2^22 0.56 s, 2^23
# 0.48-0.53 s, 2^24 0.50 s, 2^26 0.57-0.63 s: bigger matmuls win until the chunk's passes fall out of the caches.
CHUNK_ELEMENTS = 1 << 23
CHUNK_ELEMENTS_GPU = 1 << 26  # GPU: fewer, larger chunks (kernel launches, not caches, are the cost there)
TINY = torch.finfo(torch.float32).tiny


class Weights(NamedTuple):
    """Per-position weights of the two terms and the temperature."""

    a: float  # weight of each position's CE (alpha * ce_scale)
    c: float  # weight of each position's KL, times T (the 1/T of dz/d(z/T) cancels one T of T^2)
    T: float  # distillation temperature


class Chunk(NamedTuple):
    """One chunk's results. The chunk's d(total)/dz is `scale * grad`: the caller folds the scale (a number or
    one per row, [P, 1]) into its two small matmul operands instead of a pass over [P, V]."""

    ce: torch.Tensor  # CE summed over the chunk's positions (scalar)
    kl: torch.Tensor | None  # KL(p_T || q_T) per position [P] (None: CE only)
    grad: torch.Tensor  # [P, V], written over the chunk's logit buffer
    scale: float | torch.Tensor = 1.0


# ------------------------------------------------------------------------------------------------ pieces
# The student's q_T is kept unnormalised, e = exp(x) with x = (z - max z) / T <= 0 (so exp cannot overflow), and
# s = sum_v e: q_T = e / s and log q_T = x - log s. One exp pass per temperature (log_softmax then exp would be
# two), and log-probs at the few gathered indices are exact even where q itself underflows.
def _shifted(z: torch.Tensor, T: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_1, x_T): x_1 = z - max z in place of z (for the CE), x_T = x_1 / T (for the KL; x_1 itself at T = 1)."""
    x1 = z.sub_(z.amax(-1, keepdim=True))
    return x1, (x1 if T == 1.0 else x1 / T)


def _exp_(x1: torch.Tensor, xT: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(e_1, e_T) in place of (x_1, x_T); one pass when they are the same tensor."""
    e1 = x1.exp_()
    return e1, (e1 if xT is x1 else xT.exp_())


def _mix(e1, s1, eT, sT, w: Weights, row: torch.Tensor, lab: torch.Tensor) -> torch.Tensor:
    """a (q_1 - onehot(label)) + c * row * q_T in place of e_1: the dense part of every KD gradient (q = e / s)."""
    if eT is e1:
        g = e1.mul_(((w.a + w.c * row) / s1).unsqueeze(-1))
    else:
        g = e1.mul_((w.a / s1).unsqueeze(-1)).addcmul_(eT, (w.c * row / sT).unsqueeze(-1))
    return g.scatter_add_(-1, lab, torch.full(lab.shape, -w.a, dtype=g.dtype, device=g.device))


# ------------------------------------------------------------------------------------------------ modes
def ce_only(z: torch.Tensor, lab: torch.Tensor, tgt: dict, w: Weights) -> Chunk:
    """Pretraining: d(CE)/dz = q - onehot(label) = (e - s * onehot) / s; the row scale a / s goes to the caller."""
    x, _ = _shifted(z, 1.0)
    x_y = x.gather(-1, lab)
    e = x.exp_()
    s = e.sum(-1, keepdim=True)
    return Chunk((s.log() - x_y).sum(), None, e.scatter_add_(-1, lab, -s), w.a / s)


def full(z: torch.Tensor, lab: torch.Tensor, tgt: dict, w: Weights) -> Chunk:
    """Full-vocabulary targets (a full cache, or live teachers): KL(p_T || q_T) exactly,
    = sum p log p - sum p x_T + S log s_T with S = sum p."""
    lp = tgt["logp"].to(z.dtype)
    lpT = lp if w.T == 1.0 else torch.log_softmax(lp / w.T, dim=-1)
    p = torch.exp(lpT)
    x1, xT = _shifted(z, w.T)
    x_y = x1.gather(-1, lab)
    kl = torch.einsum("pv,pv->p", p, lpT) - torch.einsum("pv,pv->p", p, xT)
    e1, eT = _exp_(x1, xT)
    s1, sT = e1.sum(-1), (None if eT is e1 else eT.sum(-1))
    S = p.sum(-1)
    kl = kl + S * (s1 if sT is None else sT).log()
    g = _mix(e1, s1, eT, sT, w, S, lab)
    return Chunk((s1.log() - x_y.squeeze(-1)).sum(), kl, g.sub_(p, alpha=w.c))


def topk(z: torch.Tensor, lab: torch.Tensor, tgt: dict, w: Weights) -> Chunk:
    """Top-k head t_i = exp(logp_i / T - logZ_T) plus the exact tail bucket t_R = 1 - sum t_i, whose student
    mass Q_R is summed directly over the tail (never 1 - sum of the head)."""
    ids = tgt["topk_ids"]
    lt = tgt["topk_logp"].to(z.dtype) / w.T
    if tgt.get("logz") is not None:
        lt = lt - tgt["logz"].to(z.dtype).unsqueeze(-1)
    t = torch.exp(lt)
    t_R = torch.clamp(1.0 - t.sum(-1), min=0.0)
    x1, xT = _shifted(z, w.T)
    x_y, xT_head = x1.gather(-1, lab), xT.gather(-1, ids)
    e1, eT = _exp_(x1, xT)
    e_head = eT.gather(-1, ids)
    has_tail = ids.shape[-1] < eT.shape[-1]  # no tail bucket when the head is the whole vocabulary
    if has_tail:  # tail sum, head zeroed and restored: one pass gives both the tail mass and s_T
        tail = eT.scatter_(-1, ids, 0.0).sum(-1)
        eT.scatter_(-1, ids, e_head)
    sT = (tail + e_head.sum(-1)) if has_tail else eT.sum(-1)
    s1 = sT if eT is e1 else e1.sum(-1)
    kl = torch.sum(t * (lt - (xT_head - sT.log().unsqueeze(-1))), dim=-1)
    row, head = t.sum(-1) + t_R, -t  # d(KL)/d(z/T) = q_T * row + scatter(head)
    if has_tail:
        q_R = (tail / sT).clamp_min(TINY)
        has = t_R > 0
        kl = kl + torch.where(has, torch.xlogy(t_R, t_R) - t_R * torch.log(q_R), torch.zeros_like(t_R))
        share = torch.where(has, t_R / q_R, torch.zeros_like(t_R))  # tail j gets -t_R * q_j / Q_R ...
        row, head = row - share, head + (share / sT).unsqueeze(-1) * e_head  # ... head tokens are not in the tail
    g = _mix(e1, s1, eT, sT, w, row, lab)
    return Chunk((s1.log() - x_y.squeeze(-1)).sum(), kl, g.scatter_add_(-1, ids, w.c * head))


def sparse(z: torch.Tensor, lab: torch.Tensor, tgt: dict, w: Weights) -> Chunk:
    """A sparse weighted target t on distinct ids (objective.fused_targets builds it): sample mode (Sparse Logit
    Sampling, t_i = count_i / n_draws) and hybrid mode (the exact head, then the tail mass spread over the tail
    draws). Empty slots (weight 0) add nothing."""
    ids = tgt["sparse_ids"]
    t = tgt["sparse_w"].to(z.dtype)
    x1, xT = _shifted(z, w.T)
    x_y, xT_ids = x1.gather(-1, lab), xT.gather(-1, ids)
    e1, eT = _exp_(x1, xT)
    s1 = e1.sum(-1)
    sT = s1 if eT is e1 else eT.sum(-1)
    kl = torch.sum(torch.xlogy(t, t) - t * (xT_ids - sT.log().unsqueeze(-1)), dim=-1)
    g = _mix(e1, s1, eT, sT, w, t.sum(-1), lab)
    return Chunk((s1.log() - x_y.squeeze(-1)).sum(), kl, g.scatter_add_(-1, ids, -w.c * t))


MODES = {None: ce_only, "full": full, "topk": topk, "sparse": sparse}  # sample, hybrid: sparse


# ------------------------------------------------------------------------------------------------ driver
def chunk_rows(vocab: int, device: torch.device, rows: int | None = None) -> int:
    """Positions per chunk: `rows` when given (the loop's measured choice, chunks.py), else the default rule."""
    if rows:
        return rows
    elements = CHUNK_ELEMENTS_GPU if device.type == "cuda" else CHUNK_ELEMENTS
    return max(1, elements // vocab)


def linear_loss_and_grad(h_NH: torch.Tensor, w_VH: torch.Tensor, labels_N: torch.Tensor, mode: str | None,
                         targets: dict, w: Weights, compute_dtype: torch.dtype, rows: int | None = None):
    """Sums over positions (CE sum, KL sum or None) of the loss of logits h W^T, and d(total)/dh [N, H] and
    d(total)/dW [V, H], `rows` positions at a time (None: the default rule). The logits' matmuls run in
    `compute_dtype` (bf16 under CUDA autocast), the loss maths in fp32 (fp64 stays fp64)."""
    n, v = h_NH.shape[0], w_VH.shape[0]
    fn, step = MODES[mode], chunk_rows(v, h_NH.device, rows)
    math_dtype = torch.promote_types(h_NH.dtype, torch.float32)
    hc, wc = h_NH.to(compute_dtype), w_VH.to(compute_dtype)
    grad_h = torch.empty_like(h_NH)
    grad_w = torch.zeros(w_VH.shape, dtype=math_dtype, device=w_VH.device)
    buf = torch.empty(min(step, n), v, dtype=math_dtype, device=h_NH.device)
    ce_sum = torch.zeros((), dtype=math_dtype, device=h_NH.device)
    kl_sum = torch.zeros((), dtype=math_dtype, device=h_NH.device) if mode else None
    for s in range(0, n, step):
        e = min(n, s + step)
        z = _logits(hc[s:e], wc, buf[: e - s])
        tgt = {k: x[s:e] for k, x in targets.items()}
        r = fn(z, labels_N[s:e].unsqueeze(-1), tgt, w)
        ce_sum += r.ce
        if mode:
            kl_sum += r.kl.sum()
        gc = r.grad.to(compute_dtype)
        grad_h[s:e] = torch.mm(gc, wc).mul_(r.scale)
        h_scaled = (hc[s:e] * r.scale).to(compute_dtype)  # the (row) scale of g, on the small operand
        if gc.dtype == grad_w.dtype:
            grad_w.addmm_(gc.t(), h_scaled)
        else:
            grad_w.add_(torch.mm(gc.t(), h_scaled))
    return ce_sum, kl_sum, grad_h, grad_w.to(w_VH.dtype)


def linear_ce_sum(hidden_BLH: torch.Tensor, weight_VH: torch.Tensor, labels_BL: torch.Tensor,
                  rows: int | None = None) -> torch.Tensor:
    """Summed CE of the logits hidden @ weight^T, chunk by chunk (validation: no [B, L, V] logits; call it
    without grad)."""
    hdim, v = hidden_BLH.shape[-1], weight_VH.shape[0]
    h, labels = hidden_BLH.reshape(-1, hdim), labels_BL.reshape(-1, 1)
    compute_dtype, n, step = _compute_dtype(h), len(h), chunk_rows(v, h.device, rows)
    hc, wc = h.to(compute_dtype), weight_VH.to(compute_dtype)
    buf = torch.empty(min(step, n), v, dtype=torch.promote_types(h.dtype, torch.float32), device=h.device)
    total = torch.zeros((), dtype=buf.dtype, device=h.device)
    with torch.autocast(h.device.type, enabled=False):
        for s in range(0, n, step):
            e = min(n, s + step)
            total += ce_only(_logits(hc[s:e], wc, buf[: e - s]), labels[s:e], {}, Weights(1.0, 0.0, 1.0)).ce
    return total


def _logits(h_PH: torch.Tensor, w_VH: torch.Tensor, buf: torch.Tensor) -> torch.Tensor:
    """z = h W^T into `buf` (fp32 math); in lower precision the matmul runs in it, then is upcast."""
    if h_PH.dtype == buf.dtype:
        return torch.mm(h_PH, w_VH.t(), out=buf)
    return buf.copy_(torch.mm(h_PH, w_VH.t()))


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    kind = x.device.type
    if torch.is_autocast_enabled(kind):
        return torch.get_autocast_dtype(kind)
    return x.dtype


class FusedLinearLoss(torch.autograd.Function):
    """total, ce_mean, kl_reduced = FusedLinearLoss.apply(hidden_BLH, weight_VH, labels_BL, spec, rows, names,
    *targets): the loss of the logits hidden @ weight^T, with spec a LossSpec, rows the positions per chunk (None:
    the default rule) and names the target tensors' names. Only `total` carries a gradient (to hidden and
    weight); ce and kl are for logging."""

    @staticmethod
    def forward(ctx, hidden_BLH, weight_VH, labels_BL, spec, rows: int | None, names: list[str], *tensors):
        b, seq, hdim = hidden_BLH.shape
        n = b * seq
        compute_dtype = _compute_dtype(hidden_BLH)
        targets = {name: t.reshape(n, *t.shape[2:]) for name, t in zip(names, tensors)}
        kl_scale = 1.0 / b if spec.kl_reduction == "sequence" else 1.0 / n
        alpha, T = (spec.alpha, spec.temperature) if spec.mode else (1.0, 1.0)  # no targets: CE only
        w = Weights(alpha / n, (1.0 - alpha) * T * kl_scale, T)
        kind = "sparse" if "sparse_w" in targets else spec.mode  # sample and hybrid: objective.fused_targets
        with torch.autocast(hidden_BLH.device.type, enabled=False):
            ce_sum, kl_sum, grad_h, grad_w = linear_loss_and_grad(
                hidden_BLH.reshape(n, hdim), weight_VH, labels_BL.reshape(n), kind, targets, w, compute_dtype, rows)
        ce = ce_sum / n
        kl = kl_sum * kl_scale if spec.mode else torch.zeros_like(ce)
        total = alpha * ce + (1.0 - alpha) * T * T * kl if spec.mode else ce.clone()
        ctx.save_for_backward(grad_h.view(b, seq, hdim), grad_w)
        ctx.n_inputs = 6 + len(tensors)
        ctx.mark_non_differentiable(ce, kl)
        return total, ce, kl

    @staticmethod
    def backward(ctx, grad_total, _grad_ce, _grad_kl):
        grad_h, grad_w = ctx.saved_tensors  # scaled in place: a second backward through this graph is refused
        return (grad_h.mul_(grad_total.to(grad_h.dtype)), grad_w.mul_(grad_total.to(grad_w.dtype))) + (
            None,) * (ctx.n_inputs - 2)
