"""Training objectives: a loss spec (what to optimise) composed with a target source (where soft targets come
from): none (pretraining), a cache (offline KD) or live teachers (online KD). All return the same LossParts,
so one training loop serves all three.

Training uses the fused loss (`fused.py`: the output layer, the loss and their gradients in one chunked pass
from the final hidden states, no [B, L, V] tensor); `Objective.reference` composes the readable functions of
`losses.py` on full logits instead, and the tests check that the two agree."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bl2.data.batch import Batch
from bl2.distill import losses
from bl2.distill.config import KL_REDUCTIONS
from bl2.distill.fused import FusedLinearLoss
from bl2.errors import require

MODES = ("full", "topk", "sample", "hybrid")


@dataclass(frozen=True)
class LossSpec:
    """alpha * CE + (1 - alpha) * T^2 * KL(p_T || q_T), DESIGN §6."""

    mode: str | None = None  # target kind: None (CE only) | full | topk | sample | hybrid
    alpha: float = 1.0  # weight of CE
    temperature: float = 1.0  # distillation temperature T
    kl_reduction: str = "token"  # sequence: KL summed over positions, mean over sequences (reference); token: mean
    t_index: int | None = None  # topk, hybrid: index of T in the cache's logz grid (None: no logz, T = 1 grid)
    n_draws: int | None = None  # sample: draws per position (targets are count / n_draws); hybrid: tail draws

    def __post_init__(self):
        require(self.mode is None or self.mode in MODES, f"unknown target mode {self.mode!r}")
        require(0.0 <= self.alpha <= 1.0, f"alpha must be in [0, 1], got {self.alpha}")
        require(self.temperature > 0, f"temperature must be > 0, got {self.temperature}")
        require(self.kl_reduction in KL_REDUCTIONS, f"kl_reduction must be one of {', '.join(KL_REDUCTIONS)}")
        require(self.mode not in ("sample", "hybrid") or (self.n_draws or 0) >= 1,
                f"{self.mode} targets need n_draws >= 1")

    @classmethod
    def of(cls, cfg, mode: str | None, t_index: int | None = None, n_draws: int | None = None) -> LossSpec:
        """The spec of a TrainConfig (alpha, T, reduction) for targets of `mode`; CE only when mode is None."""
        if mode is None:
            return cls()
        return cls(mode, cfg.alpha, cfg.temperature, cfg.kl_reduction, t_index, n_draws)


@dataclass
class LossParts:
    total: torch.Tensor
    ce: torch.Tensor
    kl: torch.Tensor | None  # reduced KL (None when there is no teacher)


def cached_targets(spec: LossSpec, batch: Batch) -> dict[str, torch.Tensor]:
    """The target tensors [B, L, ...] of the spec's mode, from a batch that carries cache rows."""
    t = batch.targets
    if spec.mode == "full":
        return {"logp": t["logp"]}
    if spec.mode == "sample":
        return {"sample_ids": t["sample_ids"], "sample_counts": t["sample_counts"]}
    out = {"topk_ids": t["topk_ids"], "topk_logp": t["topk_logp"]}
    if spec.t_index is not None:
        out["logz"] = t["logz"][..., spec.t_index]
    if spec.mode == "hybrid":
        out.update(tail_ids=t["tail_ids"], tail_counts=t["tail_counts"])
    return out


def fused_targets(spec: LossSpec, t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The fused kernel's inputs. Sample and hybrid targets become one sparse weighted target (fused.sparse):
    ids [B, L, M] and float32 weights [B, L, M]; sample: count / n_draws (M = S); hybrid: the exact head
    t_i = exp(logp_i / T - logZ_T), then t_R * count_j / n_draws on the tail draws (M = K + S)."""
    if spec.mode == "sample":
        return {"sparse_ids": t["sample_ids"], "sparse_w": t["sample_counts"].float() / spec.n_draws}
    if spec.mode == "hybrid":
        lt, t_R = losses.topk_targets(t["topk_logp"].float(), t.get("logz"), spec.temperature)
        tail = losses.hybrid_tail_weights(t_R.float(), t["tail_counts"], spec.n_draws)
        return {"sparse_ids": torch.cat([t["topk_ids"], t["tail_ids"]], -1),
                "sparse_w": torch.cat([torch.exp(lt).float(), tail], -1)}
    return t


def no_targets(spec: LossSpec, batch: Batch) -> dict[str, torch.Tensor]:
    return {}


class LiveTargets:
    """Online KD: the teacher ensemble runs on every batch and gives the full distribution (mode full)."""

    def __init__(self, ensemble):
        self.ensemble = ensemble

    def __call__(self, spec: LossSpec, batch: Batch) -> dict[str, torch.Tensor]:
        return {"logp": self.ensemble.logprobs(batch.input_ids[:, :-1])}


def reference_kl(spec: LossSpec, logits_BLV: torch.Tensor, t: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-position KL [B, L] by the readable functions of losses.py."""
    lq = losses.student_logprobs(logits_BLV, spec.temperature)
    if spec.mode == "sample":
        return losses.kl_sample(lq, t["sample_ids"], t["sample_counts"], spec.n_draws)
    if spec.mode == "full":
        return losses.kl_full(lq, losses.teacher_logprobs_at(t["logp"], spec.temperature))
    lt, t_R = losses.topk_targets(t["topk_logp"], t.get("logz"), spec.temperature)
    if spec.mode == "hybrid":
        return losses.kl_hybrid(lq, t["topk_ids"], lt, t_R, t["tail_ids"], t["tail_counts"], spec.n_draws)
    return losses.kl_topk(lq, t["topk_ids"], lt, t_R)


class Objective:
    """loss(hidden, head_weight, batch) -> LossParts for a spec and a target source `targets(spec, batch) -> dict`:
    the loss of the logits hidden @ head_weight^T, which the fused loss never materialises."""

    def __init__(self, spec: LossSpec, targets=None):
        self.spec = spec
        self.targets = targets or (no_targets if spec.mode is None else cached_targets)
        self.chunk_rows: int | None = None  # positions per chunk of the fused loss (the loop sets it: chunks.py)

    def __call__(self, hidden_BLH: torch.Tensor, weight_VH: torch.Tensor, batch: Batch) -> LossParts:
        tgt = fused_targets(self.spec, self.targets(self.spec, batch))
        total, ce, kl = FusedLinearLoss.apply(hidden_BLH, weight_VH, batch.input_ids[:, 1:], self.spec,
                                              self.chunk_rows, list(tgt), *tgt.values())
        return LossParts(total, ce, kl if self.spec.mode else None)

    def reference(self, logits_BLV: torch.Tensor, batch: Batch) -> LossParts:
        """The unfused path (tests): CE, KL and their combination from losses.py."""
        ce = losses.ce_loss(logits_BLV, batch.input_ids[:, 1:])
        if self.spec.mode is None:
            return LossParts(ce, ce, None)
        kl = losses.reduce_kl(reference_kl(self.spec, logits_BLV, self.targets(self.spec, batch)),
                              self.spec.kl_reduction)
        return LossParts(losses.combine(ce, kl, self.spec.alpha, self.spec.temperature), ce, kl)
