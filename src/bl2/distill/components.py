"""The training loop's components, each owning its schedule (torchtitan's pattern): `Rows` writes metrics rows
and shows them to the hooks, `StepLogger` accumulates train CE / KL and logs them every `log_every_steps`,
`Validator` measures validation CE (every epoch end, the last step and every `val_every_steps`) and keeps the
best weights, `Checkpointer` writes resumable checkpoints (every `ckpt_every_steps`, every epoch end, the last
step and when a run is stopped). Each says when it is due; the loop only asks."""

from __future__ import annotations

import math
import time

import torch

from bl2.distill import checkpoint
from bl2.distill.config import TrainConfig
from bl2.distill.step import StepPlan


class StopRun(Exception):
    """Raised by a hook to end a run cleanly (e.g. a pruned sweep trial): the loop logs a `stopped` event,
    keeps the best weights so far as the final model, and returns."""


class Rows:
    """Writes metrics rows (rank 0) and shows each to the hooks; remembers a StopRun a hook raised."""

    def __init__(self, run, hooks, d):
        self.run, self.hooks, self.d = run, list(hooks), d
        self.stop_reason: str | None = None

    def __call__(self, row: dict) -> None:
        if not self.d.is_main:
            return
        row = self.run.log(row)
        for hook in self.hooks:
            try:
                hook(row)
            except StopRun as e:
                self.stop_reason = self.stop_reason or str(e) or "stopped by a hook"

    def stop_requested(self, device: str) -> bool:
        """Did a hook on rank 0 ask to stop? (every rank gets the same answer)"""
        return self.d.any(self.stop_reason is not None, device)


class StepLogger:
    """Train CE / KL summed over the steps since the last row, on the device (no sync per step); every
    `log_every_steps` (and at the last step) a metrics row and one console line: step, CE, KL, lr, tok/s, ETA."""

    def __init__(self, cfg: TrainConfig, plan: StepPlan, rows: Rows, d, device: str):
        self.cfg, self.plan, self.rows, self.d = cfg, plan, rows, d
        self.ce, self.kl = torch.zeros((), device=device), torch.zeros((), device=device)
        self.norm, self.norms = torch.zeros((), device=device), 0  # gradient norms (every rank has the same)
        self.has_kl, self.steps = False, 0
        self.tokens_per_step = cfg.batch_size * cfg.seq_len  # the global batch: all ranks
        self.t0 = self.window_t0 = time.perf_counter()

    def add(self, parts, grad_norm=None) -> None:
        if grad_norm is not None:
            self.norm += grad_norm.float()
            self.norms += 1
        for part in parts:
            self.ce += part.ce.detach() / len(parts)
            if part.kl is not None:
                self.kl += part.kl.detach() / len(parts)
                self.has_kl = True
        self.steps += 1

    def due(self, step: int) -> bool:
        return step % self.cfg.log_every_steps == 0 or self.plan.last(step)

    def __call__(self, step: int, lr: float, seen: dict) -> None:
        from bl2.progress import console

        elapsed = time.perf_counter() - self.window_t0
        tps = self.steps * self.tokens_per_step / elapsed
        eta = (self.plan.total_steps - step) * elapsed / self.steps
        self.d.mean_(self.ce, self.kl)
        ce, kl = float(self.ce) / self.steps, float(self.kl) / self.steps if self.has_kl else None
        norm = float(self.norm) / self.norms if self.norms else None
        self.ce.zero_(), self.kl.zero_(), self.norm.zero_()
        self.steps = self.norms = 0
        console.print(f"step {step}/{self.plan.total_steps}  CE {ce:.4f}" + ("" if kl is None else f"  KL {kl:.4f}")
                      + f"  lr {lr:.2e}  {tps:,.0f} tok/s  {rate(elapsed / max(1, self.cfg.log_every_steps))}"
                      f"  ETA {eta / 60:.1f} min")
        self.window_t0 = time.perf_counter()
        row = {"kind": "train", "step": step, "epoch": step / self.plan.steps_per_epoch, "lr": lr, "ce": ce,
               "tokens_per_s": tps, "elapsed_s": time.perf_counter() - self.t0}
        self.rows(row | ({} if kl is None else {"kl": kl}) | ({} if norm is None else {"grad_norm": norm}) | seen)


def rate(seconds_per_step: float) -> str:
    """steps/s for fast runs, s/step for slow ones (a slow run never reads "0 steps/s")."""
    return f"{1 / seconds_per_step:.1f} steps/s" if seconds_per_step < 1 else f"{seconds_per_step:.1f} s/step"


class Validator:
    """Validation CE over this rank's share of the validation windows (NLL summed over ranks), through the
    chunked output layer (no [B, L, V] logits); the best weights so far are saved (rank 0) and become the final
    model. Due at every epoch end, at the last step and every `val_every_steps`."""

    def __init__(self, model, forward_model, job, run, plan: StepPlan, device: str, autocast, rows: Rows, d,
                 state: dict):
        self.model, self.forward_model, self.cfg, self.run, self.plan = model, forward_model, job.cfg, run, plan
        self.device, self.autocast, self.rows, self.d, self.state = device, autocast, rows, d, state
        self.windows, self.objective = job.val_windows[d.rank :: d.world_size], job.objective

    def due(self, step: int) -> bool:
        every = self.cfg.val_every_steps
        return self.plan.epoch_end(step) or self.plan.last(step) or bool(every and step % every == 0)

    def __call__(self, step: int) -> None:
        from bl2.distill.fused import linear_ce_sum
        from bl2.eval.loss import windows_nll
        from bl2.model.io import final_hidden
        from bl2.progress import console

        head, rows = self.model.get_output_embeddings(), self.objective.chunk_rows
        self.model.eval()
        total, count = windows_nll(lambda ids: final_hidden(self.forward_model, ids), self.windows,
                                   self.cfg.eval_batch_size, self.device, self.autocast,
                                   nll=lambda h, labels: linear_ce_sum(h, head.weight, labels, rows))
        total, count = self.d.sum(total, count)
        self.model.train()
        val_ce, state = total / max(count, 1), self.state
        if state["best_val_ce"] is None or val_ce < state["best_val_ce"]:
            state.update(best_val_ce=val_ce, best_step=step)
            if self.d.is_main:
                checkpoint.save_best(self.run.path, self.model, {"step": step, "val_ce": val_ce})
        console.print(f"[bold]step {step}/{self.plan.total_steps}  val CE {val_ce:.4f}  (ppl {math.exp(val_ce):.1f})"
                      f"  best {state['best_val_ce']:.4f} @ {state['best_step']}")
        self.rows({"kind": "val", "step": step, "epoch": step / self.plan.steps_per_epoch, "val_ce": val_ce,
                   "val_ppl": math.exp(val_ce), "best_val_ce": state["best_val_ce"]})


class Checkpointer:
    """Resumable checkpoints (model, optimizer, every rank's RNG state, the loop's state) every
    `ckpt_every_steps`, at every epoch end, at the last step and when the run is stopped; rank 0 writes."""

    def __init__(self, run, cfg: TrainConfig, plan: StepPlan, d):
        self.run, self.cfg, self.plan, self.d = run, cfg, plan, d

    def due(self, step: int, stopped: bool = False) -> bool:
        return (step % self.cfg.ckpt_every_steps == 0 or self.plan.epoch_end(step) or self.plan.last(step)
                or stopped)

    def __call__(self, step: int, model, optimizer, state: dict) -> None:
        rng = self.d.gather(checkpoint.rng_state())
        if self.d.is_main:
            checkpoint.save(self.run.path, step, model, optimizer, state | {"epoch": step / self.plan.steps_per_epoch},
                            self.cfg.keep_checkpoints, rng)

    def last_good(self) -> str:
        """The newest checkpoint on disk (what a diverged run leaves to resume from)."""
        latest = checkpoint.latest(self.run.path)
        return str(latest) if latest is not None else "none yet"
