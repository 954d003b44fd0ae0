"""Benchmark: bl2's training step (CE only, distillation from caches, online distillation) against a minimal
Hugging Face `Trainer` CE run: the same student preset, windows, batch, threads and allocator setting, side by
side in one run.

Configurations, each in its own child process (so peak RSS is its own), interleaved over the repeats:
- hf-trainer-ce: `transformers.Trainer` on the same LlamaForCausalLM (`bl2.model.io.build_model`), the same
  pretraining windows, labels = input ids (HF's causal-LM convention), its default optimizer (fused AdamW) and
  gradient clipping; bf16 on CUDA, as bl2;
- ce: `bl2 pretrain` (alpha = 1, no targets);
- cache-ram:MODE / cache-stream:MODE: `bl2 distill --cache` with alpha 0.5, the decoded cache held in RAM or
  streamed in shard-sized blocks, for each cache given (topk, sample, ...);
- online: `bl2 distill --teachers` (live teachers, full-vocabulary targets).
Step time = median over the steps after a warm-up (bl2: the per-step rows of metrics.jsonl; Trainer: the time
between consecutive `on_step_end` callbacks, data loading included in both); step peak RSS = the child's VmHWM
at the last measured step, process peak = its ru_maxrss at exit (bl2's final validation and saves, the
Trainer's end of training), both medians over repeats. Targets (reported, not asserted): bl2 CE <= 1.00x the
Trainer's step; from a cache <= 1.05x the Trainer's CE step and <= 1.10x bl2 CE's peak RSS.

    python benchmarks/bench_distill.py --data DATA --teachers T1,T2 --cache TOPK.zarr,SAMPLE.zarr \
        [--preset tiny] [--device cpu|cuda]

Needs `pip install -e '.[bench]'` (accelerate, for the Trainer). Exits non-zero when a configuration fails.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE = "hf-trainer-ce"
COMPILED = "+compiled"  # suffix of a configuration run under torch.compile


def bench_cfg(args, alpha: float, cache_in_memory: str = "auto"):
    from bl2.distill.config import TrainConfig

    return TrainConfig(preset=args.preset, batch_size=args.batch_size, max_steps=args.warmup + args.steps,
                       log_every_steps=1, ckpt_every_steps=10**6, eval_batch_size=8, alpha=alpha,
                       shuffle_buffer=args.shuffle_buffer, cache_in_memory=cache_in_memory,
                       loss_chunk=args.loss_chunk, compile=args.compile == "yes")


def hwm_mb() -> float | None:
    """The process's peak RSS so far (VmHWM, Linux), in MiB."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return None


def child_bl2(args, out: Path) -> tuple[list[float], float | None]:
    """Train one bl2 configuration: the step times of the measured steps and the peak RSS at the last step. The
    final validation reads only 64 windows (it is not what is measured, and the whole val split would take
    longer than the steps)."""
    import dataclasses

    from bl2.distill.job import cache_job, online_job, pretrain_job
    from bl2.distill.loop import train
    from bl2.runs import metrics

    kind, _, cache = args.config.partition(":")
    if kind == "ce":
        job = pretrain_job(bench_cfg(args, 1.0), str(args.data))
    elif kind == "online":
        job = online_job(bench_cfg(args, 0.5), args.teachers.split(","), str(args.data), device=args.device)
    else:
        job = cache_job(bench_cfg(args, 0.5, "yes" if kind == "cache-ram" else "no"), cache, str(args.data))
    peaks = []
    train(dataclasses.replace(job, val_windows=job.val_windows[:64]), str(out), overwrite=True, device=args.device,
          hooks=[lambda row: row["kind"] == "train" and peaks.append(hwm_mb())])
    tps = [r["tokens_per_s"] for r in metrics.read(out / "metrics.jsonl", "train")]
    return [args.batch_size * 128 / t for t in tps], peaks[-1]


def child_trainer(args, out: Path) -> tuple[list[float], float | None]:
    """A minimal Trainer CE run on bl2's model and pretraining windows: the step times of the measured steps and
    the peak RSS at the last step."""
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from bl2.data.store import TokenStore
    from bl2.distill.sources import RandomOffsetWindows
    from bl2.model.io import build_model
    from bl2.runtime import pick_device

    device = pick_device(args.device)
    cfg = bench_cfg(args, 1.0)
    store = TokenStore(args.data)
    windows = RandomOffsetWindows(store.split("train"), cfg.seq_len, cfg.seed)

    class Windows(torch.utils.data.Dataset):  # epoch 0 of bl2's pretraining order, one window per item
        def __len__(self):
            return windows.n_windows

        def __getitem__(self, i):
            ids = windows.batch(0, i, 1).input_ids[0, :-1]
            return {"input_ids": ids, "labels": ids}

    class Clock(TrainerCallback):
        def __init__(self):
            self.ends, self.peak = [time.perf_counter()], None

        def on_step_end(self, *_, **__):
            self.ends.append(time.perf_counter())
            self.peak = hwm_mb()

    model = build_model(cfg.preset, store.vocab_size, cfg.seq_len, cfg.seed)
    targs = TrainingArguments(output_dir=str(out), per_device_train_batch_size=cfg.batch_size,
                              max_steps=cfg.max_steps, learning_rate=cfg.lr, warmup_steps=cfg.warmup_steps,
                              lr_scheduler_type="cosine", weight_decay=cfg.weight_decay, save_strategy="no",
                              report_to=[], logging_steps=10**6, disable_tqdm=True, seed=cfg.seed,
                              dataloader_num_workers=0, use_cpu=device == "cpu", bf16=device.startswith("cuda"),
                              torch_compile=args.compile == "yes")
    clock = Clock()
    Trainer(model=model, args=targs, train_dataset=Windows(), callbacks=[clock]).train()
    return [b - a for a, b in zip(clock.ends, clock.ends[1:])], clock.peak


def child(args) -> None:
    """Run one configuration; print {step_s, warmup_s, step_peak_rss_mb, peak_rss_mb} as JSON (warmup_s: the
    unmeasured first steps together, compilation included under --compile)."""
    from bl2.runtime import tune_allocator

    tune_allocator()  # what the bl2 CLI does first thing; the Trainer runs with the same setting
    out = Path(args.workdir) / args.config.replace(":", "_").replace("/", "_")
    steps, step_peak = child_trainer(args, out) if args.config == BASE else child_bl2(args, out)
    warmup_s, steps = sum(steps[:args.warmup]), steps[args.warmup:]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    import torch

    # accelerator memory: what the claim "teachers never occupy accelerator memory" is measured by
    cuda_mb = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    print("BENCH_RESULT " + json.dumps({"step_s": steps, "warmup_s": warmup_s, "step_peak_rss_mb": step_peak,
                                        "peak_rss_mb": peak_mb, "peak_cuda_mb": cuda_mb}))


def run_child(args, config: str, workdir: str) -> dict:
    config, compiled = config.removesuffix(COMPILED), config.endswith(COMPILED)
    cmd = [sys.executable, __file__, "--child", config, "--workdir", workdir, "--data", str(args.data),
           "--preset", args.preset, "--batch-size", str(args.batch_size), "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--shuffle-buffer", str(args.shuffle_buffer), "--device", args.device,
           "--loss-chunk", str(args.loss_chunk), "--compile", "yes" if compiled else "no"]
    if args.teachers:
        cmd += ["--teachers", args.teachers]
    # each child compiles from an empty inductor cache: its warm-up is what a first run on a machine pays (later
    # runs of the same shapes reuse the cache in /tmp and compile faster)
    env = os.environ | {"TORCHINDUCTOR_CACHE_DIR": tempfile.mkdtemp(prefix="inductor-", dir=workdir)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("BENCH_RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.exit(f"configuration {config} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1].split(" ", 1)[1])


def configurations(args) -> list[str]:
    """hf-trainer-ce, ce, cache-ram:PATH and cache-stream:PATH per cache, online."""
    caches = [c for c in (args.cache or "").split(",") if c]
    eager = [BASE, "ce"] + [f"{kind}:{c}" for c in caches for kind in ("cache-ram", "cache-stream")] + (
        ["online"] if args.teachers else [])
    if args.only:
        keep = set(args.only.split(",")) | {BASE, "ce"}
        eager = [c for c in eager if c.partition(":")[0] in keep]
    compiled = [c + COMPILED for c in eager]
    return {"no": eager, "yes": compiled, "both": [c for pair in zip(eager, compiled) for c in pair]}[args.compile]


def label(config: str) -> str:
    """cache-ram:/x/topk64.zarr -> cache-ram:topk (the cache's mode); a compiled one ends in +compiled."""
    config, suffix = config.removesuffix(COMPILED), COMPILED if config.endswith(COMPILED) else ""
    kind, _, path = config.partition(":")
    if not path:
        return kind + suffix
    from bl2.cache.reader import CacheReader

    return f"{kind}:{CacheReader(path).mode}{suffix}"


def report(args, results: dict[str, list[dict]]) -> dict:
    """Medians per configuration and their ratios (to the eager Trainer and bl2 CE when they ran, else to the
    compiled ones); peak RSS as medians over repeats (it varies from run to run)."""
    summary = {}
    for config, runs in results.items():
        step_peaks = [r["step_peak_rss_mb"] or r["peak_rss_mb"] for r in runs]
        summary[label(config)] = {
            "median_step_s": statistics.median(s for run in runs for s in run["step_s"]),
            "step_peak_rss_mb": statistics.median(step_peaks), "step_peak_rss_range_mb": [min(step_peaks),
                                                                                        max(step_peaks)],
            "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
            "warmup_s": statistics.median(r["warmup_s"] for r in runs),
            "peak_cuda_mb": None if runs[0].get("peak_cuda_mb") is None else statistics.median(
                r["peak_cuda_mb"] for r in runs)}
    base = summary.get(BASE) or summary[BASE + COMPILED]
    ce = summary.get("ce") or summary["ce" + COMPILED]
    print(f"\n{'configuration':20s} {'step s':>7s} {'x Trainer':>9s} {'x bl2 CE':>8s} | {'step peak RSS':>13s} "
          f"{'x bl2 CE':>8s} {'x Trainer':>9s} {'range':>9s} | {'process peak':>12s} {'x bl2 CE':>8s} | "
          f"{'warm-up s':>9s}")
    for name, s in summary.items():
        s["step_vs_trainer"] = s["median_step_s"] / base["median_step_s"]
        s["step_vs_ce"] = s["median_step_s"] / ce["median_step_s"]
        s["step_rss_vs_ce"] = s["step_peak_rss_mb"] / ce["step_peak_rss_mb"]
        s["step_rss_vs_trainer"] = s["step_peak_rss_mb"] / base["step_peak_rss_mb"]
        s["rss_vs_ce"] = s["peak_rss_mb"] / ce["peak_rss_mb"]
        lo, hi = s["step_peak_rss_range_mb"]
        print(f"{name:20s} {s['median_step_s']:7.3f} {s['step_vs_trainer']:9.2f} {s['step_vs_ce']:8.2f} | "
              f"{s['step_peak_rss_mb']:9.0f} MiB {s['step_rss_vs_ce']:8.2f} {s['step_rss_vs_trainer']:9.2f} "
              f"{lo:4.0f}-{hi:4.0f} | {s['peak_rss_mb']:8.0f} MiB {s['rss_vs_ce']:8.2f} | {s['warmup_s']:9.1f}")
    print(f"warm-up: the {args.warmup} unmeasured first steps together (torch.compile compiles there)")
    print("step peak RSS: at the last measured step; process peak: at exit (bl2's final validation and saves, "
          "the Trainer's end of training)")
    if ce.get("peak_cuda_mb"):
        print("peak CUDA memory (torch.cuda.max_memory_allocated): " + ", ".join(
            f"{name} {s['peak_cuda_mb']:.0f} MiB ({s['peak_cuda_mb'] / ce['peak_cuda_mb']:.2f}x bl2 CE)"
            for name, s in summary.items()))
    print("targets: bl2 ce <= 1.00x Trainer step; cache <= 1.05x Trainer step and <= 1.10x bl2 CE peak RSS")
    return summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--teachers", default=None, help="T1,T2: teacher dirs (for the online configuration)")
    p.add_argument("--cache", default=None, help="C1[,C2..]: caches of the same DATA (e.g. a topk and a sample one)")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto (every configuration runs on it)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=12, help="measured steps per run")
    p.add_argument("--warmup", type=int, default=3, help="unmeasured first steps")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--shuffle-buffer", type=int, default=2048, help="streaming: windows in the shuffle buffer")
    p.add_argument("--only", default=None, help="comma-separated configuration kinds to run (hf-trainer-ce and ce "
                   "always run: the ratios need them)")
    p.add_argument("--loss-chunk", type=int, default=0, help="bl2: positions per fused-loss chunk (0: measured "
                   "per machine, as `bl2 pretrain`; 524 = the fixed 2^23-element chunk of before)")
    p.add_argument("--compile", choices=["no", "yes", "both"], default="no", help="torch.compile: bl2 --compile "
                   "and the Trainer's torch_compile=True; both: each configuration eager and compiled, interleaved "
                   "(the warm-up steps include the compilation)")
    p.add_argument("--timeout", type=float, default=900, help="seconds a configuration may take")
    p.add_argument("--out-json", type=Path, default=None)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        args.config = args.child
        return child(args)
    configs = configurations(args)
    results: dict[str, list[dict]] = {c: [] for c in configs}
    from bl2.runtime import cpu_times, machine_info

    start = cpu_times()
    with tempfile.TemporaryDirectory(prefix="bl2-bench-distill-") as workdir:
        for r in range(args.repeats):
            for config in configs:
                results[config].append(run_child(args, config, workdir))
                last = results[config][-1]
                print(f"repeat {r + 1}: {label(config):20s} median step {statistics.median(last['step_s']):.3f} s,"
                      f" step peak RSS {last['step_peak_rss_mb'] or 0:.0f} MiB, process peak "
                      f"{last['peak_rss_mb']:.0f} MiB", flush=True)
    summary = report(args, results)
    machine = machine_info(since=start)
    print("machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()))
    if args.out_json:
        args.out_json.write_text(json.dumps({"summary": summary, "machine": machine, "runs": results,
                                             "args": vars(args)}, indent=2, default=str))


if __name__ == "__main__":
    main()
