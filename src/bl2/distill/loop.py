"""The one training loop. `train(job, out, ...)` runs any Job (job.py): pretraining, distillation from a cache
and online distillation differ only in the job's window source and objective.

AdamW (decay on matrices only), linear warm-up then the lr schedule, gradient clipping and accumulation, bf16
autocast on CUDA / fp32 on CPU (step.py). Its components each say when they are due (components.py): the
logger (a line and a metrics row every `log_every_steps`), the validator (validation CE at every epoch end and
every `val_every_steps`; the best-validation weights become the final model, the reference's
load_best_model_at_end), the checkpointer. `.item()` only on log steps, and once per step for the finite-loss
check. Hooks see every metrics row and may stop the run (StopRun).
"""

from __future__ import annotations

import time

import torch

from bl2.distill import checkpoint, dist
from bl2.distill.components import Checkpointer, Rows, StepLogger, StopRun, Validator
from bl2.distill.rundir import locked_output
from bl2.distill.sources import Prefetcher
from bl2.distill.step import StepPlan, TrainStep, lr_at, make_optimizer
from bl2.distill.words import WordClock
from bl2.errors import Diverged, require

__all__ = ["StopRun", "fit", "lr_at", "make_optimizer", "train"]


@locked_output  # one writer per run dir, for the whole run
def train(job, out: str, resume: bool = False, overwrite: bool = False, device: str = "auto", hooks=()) -> dict:
    """Run a Job (see job.py) into the run dir `out`; returns the summary (best validation CE and its step).
    Each hook is called with every metrics row as it is written (`kind` train, val or event) and may raise
    StopRun to end the run cleanly. Under torchrun every rank calls this; rank 0 writes (see dist.py)."""
    from bl2.distill.rundir import RunDir
    from bl2.model.io import build_model, count_params
    from bl2.progress import console, set_quiet
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
    set_quiet(not d.is_main)  # one output: rank 0's
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
    chunk = d.on_main(lambda: _loss_chunk(cfg, model, job, run.saved, device, autocast, d.world_size))
    job.objective.chunk_rows = chunk["rows"]  # rank 0's choice on every rank
    run.write_run_json({"config": cfg.to_dict(), "provenance": prov, "dtype": reason, "loss_chunk": chunk,
                        "n_params": count_params(model), "started": time.strftime("%Y-%m-%dT%H:%M:%S")} | job.info)
    console.print(f"{job.identity['command']}: preset {cfg.preset} ({count_params(model) / 1e6:.2f}M params) on "
                  f"{device}" + (f" x {d.world_size} processes ({dist_backend()})" if d.enabled else "")
                  + f", {reason}; run dir {run.path}")
    reporter = _reporter(job, run, resume) if d.is_main else None  # --report-to: rank 0 only
    status = "FAILED"
    try:
        summary = fit(model, job, run, device, autocast, (*hooks, reporter) if reporter else hooks, d)
        status = "FINISHED"
        return summary
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if reporter:
            reporter.close(status)
        d.barrier()


def _loss_chunk(cfg, model, job, saved: dict | None, device: str, autocast, world_size: int) -> dict:
    """Positions per chunk of the fused loss (chunks.py): --loss-chunk, the resumed run's own (`saved`: its
    run.json), or the machine's fastest for this run's micro-batch."""
    from bl2.distill import chunks
    from bl2.progress import console

    previous = (saved or {}).get("loss_chunk", {}).get("rows")
    positions = cfg.batch_size // (world_size * cfg.grad_accum) * cfg.seq_len
    head = model.get_output_embeddings().weight
    chunk = chunks.choose(cfg.loss_chunk, head.shape[1], head.shape[0], positions, device, autocast, previous,
                          announce=lambda: console.print("fused loss: measuring chunk sizes on this machine (once; "
                                                         f"cached in {chunks.cache_path()})"))
    console.print(f"fused loss: {chunk['rows']} positions per chunk ({chunk['how']})")
    return chunk


def _reporter(job, run, resume: bool):
    """The --report-to sinks of this run, fed every metrics row (a loop hook); None when none is asked for."""
    from bl2.runs import sinks

    if not sinks.require_installed(job.cfg.report_to):
        return None
    info = sinks.run_info(run.path, job.cfg.to_dict(), job.identity, job.info) | {"mlflow_uri": job.cfg.mlflow_uri}
    return sinks.Reporter(run.path, job.cfg.report_to, info, resume=resume)


def fit(model, job, run, device: str, autocast=None, hooks=(), d=None) -> dict:
    """Train `model` in place on the job; `run` (a RunDir) receives metrics, checkpoints and the final model.
    Returns the summary dict (best validation CE and its step)."""
    from bl2.progress import make_progress
    from bl2.runtime import Dist

    d = d or Dist()
    cfg, plan, rows = job.cfg, StepPlan.of(job.cfg, job.source.n_windows), Rows(run, hooks, d)
    optimizer = make_optimizer(model, cfg)
    state = _resume(run, model, optimizer, rows, d)
    forward_model = torch.compile(model) if cfg.compile else model
    step_fn = TrainStep(dist.wrap(forward_model, device, d), model, job.objective, optimizer, cfg, device, autocast, d)
    validator = Validator(model, forward_model, job, run, plan, device, autocast, rows, d, state)
    checkpointer, logger = Checkpointer(run, cfg, plan, d), StepLogger(cfg, plan, rows, d, device)
    words = WordClock.of(job, run, d.rank)  # words seen; word-count checkpoints (BabyLM)
    prefetch = Prefetcher(job.source, plan.batches(state["step"]), cfg.batch_size)
    stopped, t0 = None, time.perf_counter()
    model.train()
    try:
        with make_progress("steps", lines=False) as bar:  # off a terminal the step lines say it
            task = bar.add_task("training", total=plan.total_steps, completed=state["step"])
            for step in range(state["step"] + 1, plan.total_steps + 1):
                lr = lr_at(step - 1, cfg, plan.total_steps)
                logger.add(step_fn(prefetch.get(), lr, step, checkpointer.last_good), step_fn.grad_norm)
                state["step"] = step
                words.after_step(step, model)
                bar.advance(task)
                if logged := logger.due(step):
                    logger(step, lr, words.seen(step))
                if validated := validator.due(step):
                    validator(step)
                if (logged or validated) and rows.stop_requested(device):
                    stopped = d.on_main(lambda: rows.stop_reason)
                if checkpointer.due(step, stopped is not None):
                    checkpointer(step, model, optimizer, state)
                if stopped:
                    rows({"kind": "event", "event": "stopped", "step": step, "reason": stopped})
                    break
    except Diverged as e:
        rows({"kind": "event", "event": "diverged", "step": state["step"] + 1, "reason": str(e)})
        raise
    finally:
        prefetch.close()
    return _finish(model, run, state, stopped, time.perf_counter() - t0, rows, d, words)


def _resume(run, model, optimizer, rows: Rows, d) -> dict:
    """The loop's state: fresh, or restored (model, optimizer, RNG) from the newest checkpoint of a resumed run."""
    state = {"step": 0, "best_val_ce": None, "best_step": None}
    resume_from = d.on_main(run.resume_checkpoint)
    if resume_from is None:
        return state
    state = checkpoint.load(resume_from, model, optimizer, d.rank, d.world_size)
    if d.is_main:
        run.truncate_metrics(state["step"])
    rows({"kind": "event", "event": "resume", "step": state["step"], "checkpoint": resume_from.name,
          "world_size": d.world_size})
    return state


def _finish(model, run, state: dict, stopped, train_s: float, rows: Rows, d, words) -> dict:
    """Rank 0: the best validation weights become the final model dir."""
    from bl2.progress import console

    summary = {"kind": "event", "event": "done", "step": state["step"], "best_step": state["best_step"],
               "best_val_ce": state["best_val_ce"], "train_s": train_s, "stopped": stopped}
    summary = words.finish(summary)  # + words and tokens seen, budget; recorded in run.json (rank 0)
    if d.is_main:
        best = checkpoint.load_best(run.path, model)
        rows(summary)
        run.save_final(model)
        console.print(f"final model = best validation weights (step {best and best['step']}) -> {run.path}")
    return summary
