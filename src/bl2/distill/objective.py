"""Training objectives: where the soft targets come from. Plain CE (pretraining), a cache (offline KD) or live
teachers (online KD). All return the same LossParts, so one training loop serves all three."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bl2.distill import losses
from bl2.distill.sources import Batch


@dataclass
class LossParts:
    total: torch.Tensor
    ce: torch.Tensor
    kl: torch.Tensor | None  # reduced KL (None when there is no teacher)


class CrossEntropy:
    """Pretraining: CE on the next token only. Subclasses supply the per-position KL of their targets."""

    alpha, temperature, kl_reduction = 1.0, 1.0, "token"

    def kl_BL(self, logits_BLV: torch.Tensor, batch: Batch) -> torch.Tensor | None:
        return None

    def __call__(self, logits_BLV: torch.Tensor, batch: Batch) -> LossParts:
        ce = losses.ce_loss(logits_BLV, batch.input_ids[:, 1:])
        kl_BL = self.kl_BL(logits_BLV, batch)
        kl = None if kl_BL is None else losses.reduce_kl(kl_BL, self.kl_reduction)
        return LossParts(losses.combine(ce, kl, self.alpha, self.temperature), ce, kl)


class CachedTargets(CrossEntropy):
    """Offline KD from cached targets (modes full, topk, sample); the batch carries the cache rows."""

    def __init__(self, mode: str, alpha: float, temperature: float, kl_reduction: str,
                 t_index: int | None = None, n_draws: int | None = None):
        self.mode, self.alpha, self.temperature, self.kl_reduction = mode, alpha, temperature, kl_reduction
        self.t_index, self.n_draws = t_index, n_draws

    def kl_BL(self, logits_BLV: torch.Tensor, batch: Batch) -> torch.Tensor:
        t = batch.targets
        lq = losses.student_logprobs(logits_BLV, self.temperature)
        if self.mode == "sample":
            return losses.kl_sample(lq, t["sample_ids"], t["sample_counts"], self.n_draws)
        if self.mode == "full":
            return losses.kl_full(lq, losses.teacher_logprobs_at(t["logp"], self.temperature))
        logz = None if self.t_index is None else t["logz"][..., self.t_index]
        lt, t_R = losses.topk_targets(t["topk_logp"], logz, self.temperature)
        return losses.kl_topk(lq, t["topk_ids"], lt, t_R)


class LiveTeachers(CrossEntropy):
    """Online KD: the teacher ensemble runs on every batch (full distribution), same loss as a full cache."""

    def __init__(self, ensemble, alpha: float, temperature: float, kl_reduction: str):
        self.ensemble, self.alpha, self.temperature, self.kl_reduction = ensemble, alpha, temperature, kl_reduction

    def kl_BL(self, logits_BLV: torch.Tensor, batch: Batch) -> torch.Tensor:
        lp = self.ensemble.logprobs(batch.input_ids[:, :-1])
        lq = losses.student_logprobs(logits_BLV, self.temperature)
        return losses.kl_full(lq, losses.teacher_logprobs_at(lp, self.temperature))
