"""One optimizer step of the training loop, and what it needs: the step plan, the learning-rate schedule, the
optimizer. The step runs the forward and backward of every micro-batch (gradient accumulation; DDP all-reduces
on the last one only), clips the gradient, checks that the loss and the gradient norm are finite, and only then
steps the optimizer: a NaN or inf stops the run with the weights and the last checkpoint still good."""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from bl2.distill import dist
from bl2.distill.config import TrainConfig
from bl2.errors import Diverged, require


@dataclass
class StepPlan:
    """Step accounting of a run."""

    steps_per_epoch: int
    total_steps: int

    @classmethod
    def of(cls, cfg: TrainConfig, n_windows: int) -> StepPlan:
        spe = n_windows // cfg.batch_size
        require(spe >= 1, f"{n_windows} training windows are fewer than one batch of {cfg.batch_size}")
        return cls(spe, cfg.max_steps if cfg.max_steps else cfg.epochs * spe)

    def batches(self, start: int) -> list[tuple[int, int]]:
        """(epoch, batch index) of every step from `start` on."""
        return [(s // self.steps_per_epoch, s % self.steps_per_epoch) for s in range(start, self.total_steps)]

    def epoch_end(self, step: int) -> bool:
        return step % self.steps_per_epoch == 0

    def last(self, step: int) -> bool:
        return step == self.total_steps


def lr_at(step: int, cfg: TrainConfig, total: int) -> float:
    """Linear warm-up from 0 over `warmup_steps`, then `cfg.lr_schedule`: cosine or linear decay to 0 at `total`
    (HF's schedules of those names), or constant. A pure function of the step: the checkpointed step is its
    whole state."""
    if step < cfg.warmup_steps:
        return cfg.lr * step / max(1, cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    if cfg.lr_schedule == "linear":
        return cfg.lr * (1.0 - progress)
    if cfg.lr_schedule == "constant":
        return cfg.lr
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model, cfg: TrainConfig) -> torch.optim.AdamW:
    """Weight decay on matrices (embeddings, projections); none on norms and biases. The fused AdamW kernel (one
    pass per parameter; CPU, CUDA and MPS in torch 2.13): 2.2 ms against 6.5 ms per tiny step for the per-tensor
    loop on CPU. Its rounding differs from the loop's, hence golden losses regenerated with it."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    try:
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=True)
    except RuntimeError:  # a device without the fused kernel: the default (foreach where supported)
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)


class TrainStep:
    """`step(batch, lr, number, last_good)`: one optimizer step on a global batch; returns each micro-batch's
    LossParts (for the logger). `last_good()` names the checkpoint a divergence leaves (for its message)."""

    def __init__(self, train_model, model, objective, optimizer, cfg: TrainConfig, device: str, autocast, d):
        from bl2.runtime import device_type

        self.train_model, self.model, self.objective, self.optimizer = train_model, model, objective, optimizer
        self.cfg, self.device, self.d = cfg, device, d
        self.head = model.get_output_embeddings()  # the fused loss applies it, chunk by chunk
        self.amp = (lambda: torch.autocast(device_type(device), dtype=autocast)) if autocast else nullcontext
        self.grad_norm = None  # the last step's global gradient norm (None without --grad-clip: not computed)

    def __call__(self, batch, lr: float, number: int, last_good=None) -> list:
        """Train on one global batch; returns each micro-batch's LossParts. Raises Diverged (before the
        optimizer step) when the loss or the gradient norm is not finite on any rank."""
        from bl2.model.io import final_hidden

        for group in self.optimizer.param_groups:
            group["lr"] = lr
        micros = batch.to(self.device).split(self.cfg.grad_accum)
        parts = []
        for i, micro in enumerate(micros):
            with dist.no_sync(self.train_model, self.d, sync=i == len(micros) - 1):
                with self.amp():  # the output layer runs inside the fused loss, chunk by chunk (fused.py)
                    hidden = final_hidden(self.train_model, micro.input_ids[:, :-1])
                    part = self.objective(hidden, self.head.weight, micro)
                (part.total / self.cfg.grad_accum).backward()
            parts.append(part)
        norm = (torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
                if self.cfg.grad_clip > 0 else torch.zeros((), device=self.device))
        self._check_finite(parts, norm, number, last_good)
        self.grad_norm = norm.detach() if self.cfg.grad_clip > 0 else None  # before clipping; for the logger
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return parts

    def _check_finite(self, parts, norm, number: int, last_good) -> None:
        """One sync per step: the loss (every micro-batch) and the gradient norm must be finite on every rank."""
        total = torch.stack([p.total.detach().float() for p in parts] + [norm.detach().float()])
        if not self.d.any(not bool(torch.isfinite(total).all()), self.device):
            return
        self.optimizer.zero_grad(set_to_none=True)
        ce = sum(float(p.ce) for p in parts) / len(parts)
        kl = [float(p.kl) for p in parts if p.kl is not None]
        where = f"last good checkpoint: {last_good()}" if last_good else "no checkpoint yet"
        raise Diverged(f"step {number}: the loss is not finite (CE {ce:.4g}" + (f", KL {sum(kl) / len(kl):.4g}"
                       if kl else "") + f", gradient norm {float(norm):.4g}); stopped before the optimizer step, "
                       f"{where}")
