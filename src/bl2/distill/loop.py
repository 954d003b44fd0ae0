"""The one training loop. `train(job, out, ...)` runs any Job (job.py): pretraining, distillation from a cache
and online distillation differ only in the job's window source and objective.

AdamW (decay on matrices only), linear warm-up then cosine decay to 0, gradient clipping and accumulation,
bf16 autocast on CUDA / fp32 on CPU. Validation CE at every epoch end (and every `val_every` steps); the
best-validation weights are kept and become the final model (the reference's load_best_model_at_end).
`.item()` only on log steps. Hooks see every metrics row and may stop the run (StopRun).
"""

from __future__ import annotations

import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from bl2.distill import checkpoint
from bl2.distill.config import TrainConfig
from bl2.distill.fused import linear_ce_sum
from bl2.distill.rundir import locked_output
from bl2.distill.sources import Prefetcher
from bl2.distill.words import WordClock
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
    """Linear warm-up from 0 over `warmup` steps, then `cfg.lr_schedule`: cosine or linear decay to 0 at `total`
    (HF's schedules of those names), or constant. A pure function of the step: the checkpointed step is its
    whole state."""
    if step < cfg.warmup:
        return cfg.lr * step / max(1, cfg.warmup)
    progress = min(1.0, (step - cfg.warmup) / max(1, total - cfg.warmup))
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


# Test-only hook: seconds to sleep after every optimizer step, so a test can kill a process mid-run.
SLEEP_ENV = "BL2_TEST_STEP_SLEEP"


class StopRun(Exception):
    """Raised by a hook to end a run cleanly (e.g. a pruned sweep trial): the loop logs a `stopped` event,
    keeps the best weights so far as the final model, and returns."""


@locked_output  # one writer per run dir, for the whole run
def train(job, out: str, resume: bool = False, overwrite: bool = False, device: str = "auto", hooks=()) -> dict:
    """Run a Job (see job.py) into the run dir `out`; returns the summary (best validation CE and its step).
    Each hook is called with every metrics row as it is written (`kind` train, val or event) and may raise
    StopRun to end the run cleanly. Under torchrun every rank calls this; rank 0 writes (see dist.py)."""
    from bl2.distill.rundir import RunDir
    from bl2.model.io import build_model, count_params
    from bl2.progress import console
    from bl2.runtime import (
        Dist,
        autocast_dtype,
        device_type,
        dist_backend,
        init_distributed,
        pick_device,
        provenance,
        seed_everything,
        tune_allocator,
    )

    cfg = job.cfg
    device = pick_device(device)
    d = Dist(init_distributed(device))
    console.quiet = not d.is_main  # one console: rank 0's
    require(cfg.batch_size % (d.world_size * cfg.grad_accum) == 0,
            f"batch_size {cfg.batch_size} must divide evenly over {d.world_size} processes x {cfg.grad_accum} "
            "micro-batches (--batch-size is the global batch)")
    job.source.rank, job.source.world_size = d.rank, d.world_size
    if device_type(device) == "cpu":
        tune_allocator()
    autocast, reason = autocast_dtype(device)
    made = {}  # rank 0 checks and creates the run dir; the others follow once it has succeeded
    d.on_main(lambda: made.setdefault("run", RunDir(out, job.identity, job.tokenizer_dir, resume, overwrite)) and None)
    run = made.get("run") or RunDir(out, job.identity, job.tokenizer_dir, resume, overwrite, writer=False)
    seed_everything(cfg.seed)
    model = build_model(cfg.preset, job.identity["vocab_size"], cfg.seq_len, cfg.seed,
                        attention_dropout=cfg.attention_dropout).to(device)
    prov = provenance(device) | {"world_size": d.world_size, "backend": dist_backend()}
    run.write_run_json({"config": cfg.to_dict(), "provenance": prov, "dtype": reason,
                        "n_params": count_params(model), "started": time.strftime("%Y-%m-%dT%H:%M:%S")} | job.info)
    console.print(f"{job.identity['command']}: preset {cfg.preset} ({count_params(model) / 1e6:.2f}M params) on "
                  f"{device}" + (f" x {d.world_size} processes ({dist_backend()})" if d.enabled else "")
                  + f", {reason}; run dir {run.path}")
    try:
        return fit(model, job, run, device, autocast, hooks, d)
    finally:
        d.barrier()


class _Log:
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


@dataclass
class _Acc:
    """Train CE / KL summed over the steps since the last log row (on the device: no sync per step)."""

    ce: torch.Tensor
    kl: torch.Tensor
    has_kl: bool = False
    steps: int = 0

    def add(self, parts, grad_accum: int) -> None:
        self.ce += parts.ce.detach() / grad_accum
        if parts.kl is not None:
            self.kl += parts.kl.detach() / grad_accum
            self.has_kl = True

    def take(self, d) -> tuple[float, float | None]:
        """Means over the window (and over ranks), then reset."""
        d.mean_(self.ce, self.kl)
        ce, kl = float(self.ce) / self.steps, float(self.kl) / self.steps
        self.ce.zero_()
        self.kl.zero_()
        self.steps = 0
        return ce, kl if self.has_kl else None


def fit(model, job, run, device: str, autocast=None, hooks=(), d=None) -> dict:
    """Train `model` in place on the job; `run` (a RunDir) receives metrics, checkpoints and the final model.
    Returns the summary dict (best validation CE and its step)."""
    from bl2.distill import dist
    from bl2.eval.loss import windows_nll
    from bl2.model.io import final_hidden
    from bl2.progress import console, make_progress
    from bl2.runtime import Dist, device_type

    d = d or Dist()
    cfg, objective = job.cfg, job.objective
    log = _Log(run, hooks, d)
    plan = Plan.of(cfg, job.source.n_windows)
    words = WordClock.of(job, run, d.rank)  # words seen; word-count checkpoints (BabyLM)
    optimizer = make_optimizer(model, cfg)
    state = {"step": 0, "best_val_ce": None, "best_step": None}
    resume_from = d.on_main(run.resume_checkpoint)
    if resume_from is not None:
        state = checkpoint.load(resume_from, model, optimizer, d.rank, d.world_size)
        if d.is_main:
            run.truncate_metrics(state["step"])
        log({"kind": "event", "event": "resume", "step": state["step"], "checkpoint": resume_from.name,
             "world_size": d.world_size})
    compiled = torch.compile(model) if cfg.compile else model
    train_model = dist.wrap(compiled, device, d)
    amp = (lambda: torch.autocast(device_type(device), dtype=autocast)) if autocast else nullcontext
    head = model.get_output_embeddings()  # the fused loss applies it, chunk by chunk
    val_share = job.val_windows[d.rank :: d.world_size]

    def validate(step: int) -> None:
        model.eval()
        total, count = windows_nll(lambda ids: final_hidden(compiled, ids), val_share, cfg.eval_batch_size, device,
                                   autocast, nll=lambda h, labels: linear_ce_sum(h, head.weight, labels))
        total, count = d.sum(total, count)
        model.train()
        val_ce = total / max(count, 1)
        if state["best_val_ce"] is None or val_ce < state["best_val_ce"]:
            state.update(best_val_ce=val_ce, best_step=step)
            if d.is_main:
                checkpoint.save_best(run.path, model, {"step": step, "val_ce": val_ce})
        console.print(f"[bold]step {step}/{plan.total_steps}  val CE {val_ce:.4f}  (ppl {math.exp(val_ce):.1f})"
                      f"  best {state['best_val_ce']:.4f} @ {state['best_step']}")
        log({"kind": "val", "step": step, "epoch": step / plan.steps_per_epoch, "val_ce": val_ce,
             "val_ppl": math.exp(val_ce), "best_val_ce": state["best_val_ce"]})

    start = state["step"]
    steps = [(s // plan.steps_per_epoch, s % plan.steps_per_epoch) for s in range(start, plan.total_steps)]
    prefetch = Prefetcher(job.source, steps, cfg.batch_size)
    tokens_per_step = cfg.batch_size * cfg.seq_len  # the global batch: all ranks
    model.train()
    t0 = window_t0 = time.perf_counter()
    acc = _Acc(torch.zeros((), device=device), torch.zeros((), device=device))
    stopped = None
    sleep = float(os.environ.get(SLEEP_ENV, "0") or 0)
    try:
        with make_progress("steps") as bar:
            task = bar.add_task("training", total=plan.total_steps, completed=start)
            for step in range(start, plan.total_steps):
                batch = prefetch.get().to(device)
                lr = lr_at(step, cfg, plan.total_steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                micros = batch.split(cfg.grad_accum)
                for i, micro in enumerate(micros):
                    with dist.no_sync(train_model, d, sync=i == len(micros) - 1):
                        with amp():  # the output layer runs inside the fused loss, chunk by chunk (fused.py)
                            hidden = final_hidden(train_model, micro.input_ids[:, :-1])
                            parts = objective(hidden, head.weight, micro)
                        (parts.total / cfg.grad_accum).backward()
                    acc.add(parts, cfg.grad_accum)
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                done, acc.steps = step + 1, acc.steps + 1
                words.after_step(done, model)
                if sleep:
                    time.sleep(sleep)
                bar.advance(task)
                epoch_end = done % plan.steps_per_epoch == 0
                logged = done % cfg.log_every == 0 or done == plan.total_steps
                if logged:
                    elapsed = time.perf_counter() - window_t0
                    tps, eta = acc.steps * tokens_per_step / elapsed, (plan.total_steps - done) * elapsed / acc.steps
                    ce, kl = acc.take(d)
                    row = {"kind": "train", "step": done, "epoch": done / plan.steps_per_epoch, "lr": lr, "ce": ce,
                           "tokens_per_s": tps, "elapsed_s": time.perf_counter() - t0} | ({} if kl is None else
                                                                                            {"kl": kl})
                    row |= words.seen(done)
                    console.print(f"step {done}/{plan.total_steps}  CE {ce:.4f}" + ("" if kl is None else
                                  f"  KL {kl:.4f}") + f"  lr {lr:.2e}  {tps:,.0f} tok/s  ETA {eta / 60:.1f} min")
                    window_t0 = time.perf_counter()
                    log(row)
                validated = epoch_end or done == plan.total_steps or (cfg.val_every and done % cfg.val_every == 0)
                if validated:
                    validate(done)
                if (logged or validated) and log.stop_requested(device):
                    stopped = d.on_main(lambda: log.stop_reason)
                state["step"] = done
                if done % cfg.ckpt_every == 0 or epoch_end or done == plan.total_steps or stopped:
                    rng = d.gather(checkpoint.rng_state())
                    if d.is_main:
                        checkpoint.save(run.path, done, model, optimizer,
                                        state | {"epoch": done / plan.steps_per_epoch}, cfg.keep_checkpoints, rng)
                if stopped:
                    log({"kind": "event", "event": "stopped", "step": done, "reason": stopped})
                    break
    finally:
        prefetch.close()
    return _finish(model, run, state, stopped, time.perf_counter() - t0, log, d, words)


def _finish(model, run, state: dict, stopped, train_s: float, log, d, words) -> dict:
    """Rank 0: the best validation weights become the final model dir."""
    from bl2.progress import console

    summary = {"kind": "event", "event": "done", "step": state["step"], "best_step": state["best_step"],
               "best_val_ce": state["best_val_ce"], "train_s": train_s, "stopped": stopped}
    summary = words.finish(summary)  # + words and tokens seen, budget; recorded in run.json (rank 0)
    if d.is_main:
        best = checkpoint.load_best(run.path, model)
        log(summary)
        run.save_final(model)
        console.print(f"final model = best validation weights (step {best and best['step']}) -> {run.path}")
    return summary
