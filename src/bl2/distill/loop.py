"""The one training loop. `train(job, out, ...)` runs any Job (job.py): pretraining, distillation from a cache
and online distillation differ only in the job's window source and objective.

AdamW (decay on matrices only), linear warm-up then cosine decay to 0, gradient clipping and accumulation,
bf16 autocast on CUDA / fp32 on CPU. Validation CE at every epoch end (and every `val_every` steps); the
best-validation weights are kept and become the final model (the reference's load_best_model_at_end).
`.item()` only on log steps. Hooks see every metrics row and may stop the run (StopRun).
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from bl2.distill import checkpoint
from bl2.distill.config import TrainConfig
from bl2.distill.fused import linear_ce_sum
from bl2.distill.sources import Prefetcher
from bl2.errors import require


@dataclass
class Plan:
    """Step accounting of a run."""

    steps_per_epoch: int
    total_steps: int

    @classmethod
    def of(cls, cfg: TrainConfig, n_windows: int) -> Plan:
        spe = n_windows // cfg.batch_size
        require(spe >= 1, f"{n_windows} training windows are fewer than one batch of {cfg.batch_size}")
        return cls(spe, cfg.max_steps if cfg.max_steps else cfg.epochs * spe)


def lr_at(step: int, cfg: TrainConfig, total: int) -> float:
    """Linear warm-up from 0 over `warmup` steps, then cosine decay to 0 at `total` (HF's cosine schedule).
    The schedule is a pure function of the step, so the checkpointed step is its whole state."""
    if step < cfg.warmup:
        return cfg.lr * step / max(1, cfg.warmup)
    progress = (step - cfg.warmup) / max(1, total - cfg.warmup)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


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


class StopRun(Exception):
    """Raised by a hook to end a run cleanly (e.g. a pruned sweep trial): the loop logs a `stopped` event,
    keeps the best weights so far as the final model, and returns."""


def train(job, out: str, resume: bool = False, overwrite: bool = False, device: str = "auto", hooks=()) -> dict:
    """Run a Job (see job.py) into the run dir `out`; returns the summary (best validation CE and its step).
    Each hook is called with every metrics row as it is written (`kind` train, val or event) and may raise
    StopRun to end the run cleanly."""
    from bl2.distill.rundir import RunDir
    from bl2.model.io import build_model, count_params
    from bl2.progress import console
    from bl2.runtime import autocast_dtype, pick_device, provenance, seed_everything, tune_allocator

    cfg = job.cfg
    device = pick_device(device)
    if device == "cpu":
        tune_allocator()
    autocast, reason = autocast_dtype(device)
    run = RunDir(out, job.identity, job.tokenizer_dir, resume, overwrite)
    seed_everything(cfg.seed)
    model = build_model(cfg.preset, job.identity["vocab_size"], cfg.seq_len, cfg.seed).to(device)
    run.write_run_json({"config": cfg.to_dict(), "provenance": provenance(device), "dtype": reason,
                        "n_params": count_params(model), "started": time.strftime("%Y-%m-%dT%H:%M:%S")} | job.info)
    console.print(f"{job.identity['command']}: preset {cfg.preset} ({count_params(model) / 1e6:.2f}M params) on "
                  f"{device}, {reason}; run dir {run.path}")
    return fit(model, job, run, device, autocast, hooks)


class _Log:
    """Writes metrics rows and shows each to the hooks."""

    def __init__(self, run, hooks):
        self.run, self.hooks = run, list(hooks)

    def __call__(self, row: dict) -> dict:
        row = self.run.log(row)
        for hook in self.hooks:
            hook(row)
        return row


def fit(model, job, run, device: str, autocast=None, hooks=(), rank: int = 0, world_size: int = 1):
    """Train `model` in place on the job; `run` (a RunDir) receives metrics, checkpoints and the final model.
    Returns the summary dict (best validation CE and its step). rank / world_size: the sources already read
    per-rank shares of each global batch; gradient all-reduce (DDP under torchrun) is the missing piece."""
    require(world_size == 1 and rank == 0, "multi-process training (world_size > 1) is not implemented yet")
    from bl2.eval.loss import windows_ce
    from bl2.model.io import final_hidden
    from bl2.progress import console, make_progress

    cfg, source, objective = job.cfg, job.source, job.objective
    log = _Log(run, hooks)
    plan = Plan.of(cfg, source.n_windows)
    optimizer = make_optimizer(model, cfg)
    state = {"step": 0, "best_val_ce": None, "best_step": None}
    resume_from = run.resume_checkpoint()
    if resume_from is not None:
        state = checkpoint.load(resume_from, model, optimizer)
        run.truncate_metrics(state["step"])
        log({"kind": "event", "event": "resume", "step": state["step"], "checkpoint": resume_from.name})
    train_model = torch.compile(model) if cfg.compile else model
    head = model.get_output_embeddings()
    amp = (lambda: torch.autocast(device, dtype=autocast)) if autocast else nullcontext

    def validate(step: int) -> float:
        model.eval()
        val_ce = windows_ce(lambda ids: final_hidden(train_model, ids), job.val_windows, cfg.eval_batch_size,
                            device, autocast, nll=lambda h, labels: linear_ce_sum(h, head.weight, labels))
        model.train()
        row = {"kind": "val", "step": step, "epoch": step / plan.steps_per_epoch, "val_ce": val_ce,
               "val_ppl": math.exp(val_ce)}
        if state["best_val_ce"] is None or val_ce < state["best_val_ce"]:
            state.update(best_val_ce=val_ce, best_step=step)
            checkpoint.save_best(run.path, model, {"step": step, "val_ce": val_ce})
        console.print(f"[bold]step {step}/{plan.total_steps}  val CE {val_ce:.4f}  (ppl {math.exp(val_ce):.1f})"
                      f"  best {state['best_val_ce']:.4f} @ {state['best_step']}")
        log(row | {"best_val_ce": state["best_val_ce"]})
        return val_ce

    start = state["step"]
    steps = [(s // plan.steps_per_epoch, s % plan.steps_per_epoch) for s in range(start, plan.total_steps)]
    prefetch = Prefetcher(source, steps, cfg.batch_size)
    tokens_per_step = cfg.batch_size * cfg.seq_len
    model.train()
    t0, window_t0, window_steps = time.perf_counter(), time.perf_counter(), 0
    ce_acc = torch.zeros((), device=device)
    kl_acc = torch.zeros((), device=device)
    has_kl = False
    stopped = None
    try:
        with make_progress("steps") as bar:
            task = bar.add_task("training", total=plan.total_steps, completed=start)
            for step in range(start, plan.total_steps):
                batch = prefetch.get().to(device)
                lr = lr_at(step, cfg, plan.total_steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                for micro in batch.split(cfg.grad_accum):
                    with amp():  # the output layer runs inside the fused loss, chunk by chunk (fused.py)
                        hidden = final_hidden(train_model, micro.input_ids[:, :-1])
                        parts = objective(hidden, head.weight, micro)
                    (parts.total / cfg.grad_accum).backward()
                    ce_acc += parts.ce.detach() / cfg.grad_accum
                    if parts.kl is not None:
                        kl_acc += parts.kl.detach() / cfg.grad_accum
                        has_kl = True
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                done = step + 1
                window_steps += 1
                bar.advance(task)
                epoch_end = done % plan.steps_per_epoch == 0
                val_now = epoch_end or done == plan.total_steps or (cfg.val_every and done % cfg.val_every == 0)
                try:
                    if done % cfg.log_every == 0 or done == plan.total_steps:
                        elapsed = time.perf_counter() - window_t0
                        tps = window_steps * tokens_per_step / elapsed
                        eta = (plan.total_steps - done) * elapsed / window_steps
                        row = {"kind": "train", "step": done, "epoch": done / plan.steps_per_epoch, "lr": lr,
                               "ce": float(ce_acc) / window_steps, "tokens_per_s": tps,
                               "elapsed_s": time.perf_counter() - t0}
                        if has_kl:
                            row["kl"] = float(kl_acc) / window_steps
                        kl_txt = f"  KL {row['kl']:.4f}" if has_kl else ""
                        console.print(f"step {done}/{plan.total_steps}  CE {row['ce']:.4f}{kl_txt}  lr {lr:.2e}"
                                      f"  {tps:,.0f} tok/s  ETA {eta / 60:.1f} min")
                        ce_acc.zero_()
                        kl_acc.zero_()
                        window_t0, window_steps = time.perf_counter(), 0
                        log(row)
                    if val_now:
                        validate(done)
                except StopRun as e:
                    stopped = str(e) or "stopped by a hook"
                state["step"] = done
                if done % cfg.ckpt_every == 0 or epoch_end or done == plan.total_steps or stopped:
                    checkpoint.save(run.path, done, model, optimizer, state | {"epoch": done / plan.steps_per_epoch},
                                    cfg.keep_checkpoints)
                if stopped:
                    log({"kind": "event", "event": "stopped", "step": done, "reason": stopped})
                    break
    finally:
        prefetch.close()
    best = checkpoint.load_best(run.path, model)
    summary = {"kind": "event", "event": "done", "step": state["step"], "best_step": state["best_step"],
               "best_val_ce": state["best_val_ce"], "train_s": time.perf_counter() - t0, "stopped": stopped}
    log(summary)
    run.save_final(model)
    console.print(f"final model = best validation weights (step {best and best['step']}) -> {run.path}")
    return summary
