"""Training objectives: where the soft targets come from. Plain CE (pretraining), a cache (offline KD) or live
teachers (online KD). All return the same LossParts, so one training loop serves all three.

Training uses the fused loss (`fused.py`: loss and gradient in one chunked pass over the logits). The unfused
path (`reference=True`) composes the readable functions of `losses.py`; tests check that both agree."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bl2.distill import losses
from bl2.distill.fused import FusedLoss
from bl2.distill.sources import Batch


@dataclass
class LossParts:
    total: torch.Tensor
    ce: torch.Tensor
    kl: torch.Tensor | None  # reduced KL (None when there is no teacher)


class CrossEntropy:
    """Pretraining: CE on the next token only. Subclasses supply their targets (and the reference KL)."""

    kind: str | None = None  # full | topk | sample
    alpha, temperature, kl_reduction, n_draws = 1.0, 1.0, "token", None
    reference = False  # True: the unfused losses.py path

    def targets(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Target tensors [B, L, ...] for the fused loss."""
        return {}

    def kl_BL(self, logits_BLV: torch.Tensor, batch: Batch) -> torch.Tensor | None:
        return None

    def __call__(self, logits_BLV: torch.Tensor, batch: Batch) -> LossParts:
        labels = batch.input_ids[:, 1:]
        if self.reference:
            ce = losses.ce_loss(logits_BLV, labels)
            kl_BL = self.kl_BL(logits_BLV, batch)
            kl = None if kl_BL is None else losses.reduce_kl(kl_BL, self.kl_reduction)
            return LossParts(losses.combine(ce, kl, self.alpha, self.temperature), ce, kl)
        tgt = self.targets(batch)
        spec = {"kind": self.kind, "alpha": self.alpha, "temperature": self.temperature,
                "reduction": self.kl_reduction, "n_draws": self.n_draws, "names": list(tgt)}
        total, ce, kl = FusedLoss.apply(logits_BLV, labels, spec, *tgt.values())
        return LossParts(total, ce, kl if self.kind else None)


class CachedTargets(CrossEntropy):
    """Offline KD from cached targets (modes full, topk, sample); the batch carries the cache rows."""

    def __init__(self, mode: str, alpha: float, temperature: float, kl_reduction: str,
                 t_index: int | None = None, n_draws: int | None = None):
        self.kind, self.alpha, self.temperature, self.kl_reduction = mode, alpha, temperature, kl_reduction
        self.t_index, self.n_draws = t_index, n_draws

    def targets(self, batch: Batch) -> dict[str, torch.Tensor]:
        t = batch.targets
        if self.kind == "full":
            return {"logp": t["logp"]}
        if self.kind == "sample":
            return {"sample_ids": t["sample_ids"], "sample_counts": t["sample_counts"]}
        out = {"topk_ids": t["topk_ids"], "topk_logp": t["topk_logp"]}
        if self.t_index is not None:
            out["logz"] = t["logz"][..., self.t_index]
        return out

    def kl_BL(self, logits_BLV: torch.Tensor, batch: Batch) -> torch.Tensor:
        t = self.targets(batch)
        lq = losses.student_logprobs(logits_BLV, self.temperature)
        if self.kind == "sample":
            return losses.kl_sample(lq, t["sample_ids"], t["sample_counts"], self.n_draws)
        if self.kind == "full":
            return losses.kl_full(lq, losses.teacher_logprobs_at(t["logp"], self.temperature))
        lt, t_R = losses.topk_targets(t["topk_logp"], t.get("logz"), self.temperature)
        return losses.kl_topk(lq, t["topk_ids"], lt, t_R)


class LiveTeachers(CachedTargets):
    """Online KD: the teacher ensemble runs on every batch (full distribution), same loss as a full cache."""

    def __init__(self, ensemble, alpha: float, temperature: float, kl_reduction: str):
        super().__init__("full", alpha, temperature, kl_reduction)
        self.ensemble = ensemble

    def targets(self, batch: Batch) -> dict[str, torch.Tensor]:
        return {"logp": self.ensemble.logprobs(batch.input_ids[:, :-1])}
