"""Benchmark: one distillation step from the cache vs CE-only training vs online distillation from live
teachers: the same student preset, batch and windows, measured side by side in one run.

Each configuration runs in its own child process (so peak RSS is its own), twice, interleaved
(ce, cache, online, ce, cache, online, ...). Step time = median over the steps after a warm-up, from the
per-step rows of metrics.jsonl; peak RSS = the child's ru_maxrss (median over repeats). Targets (reported,
not asserted): cache <= 1.05x CE-only step time and <= 1.10x its peak RSS; online slower by the teachers' forward.

    python benchmarks/bench_distill.py --data DATA --teachers T1,T2 --cache CACHE.zarr [--preset tiny]

Exits non-zero when a configuration fails.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CONFIGS = ("ce", "cache-ram", "cache-stream", "online")


def child(args) -> None:
    """Train one configuration for warmup + steps steps; print {step_times, peak_rss_mb} as JSON."""
    from bl2 import metrics
    from bl2.distill.config import TrainConfig
    from bl2.distill.run import distill, pretrain

    cfg = TrainConfig(preset=args.preset, batch_size=args.batch_size, max_steps=args.warmup + args.steps,
                      log_every=1, ckpt_every=10**6, eval_batch_size=8, alpha=0.5 if args.config != "ce" else 1.0,
                      shuffle_buffer=args.shuffle_buffer)
    out = Path(args.workdir) / args.config
    if args.config == "ce":
        pretrain(cfg, args.data, out, device="cpu", overwrite=True)
    elif args.config == "online":
        distill(cfg, out, teachers=[Path(t) for t in args.teachers.split(",")], data_dir=args.data, device="cpu",
                overwrite=True)
    else:
        distill(cfg, out, cache=args.cache, data_dir=args.data, device="cpu", overwrite=True,
                cache_in_memory="yes" if args.config == "cache-ram" else "no")
    tps = [r["tokens_per_s"] for r in metrics.read(out / "metrics.jsonl", "train")][args.warmup:]
    tokens = args.batch_size * 128
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    result = {"step_s": [tokens / t for t in tps], "peak_rss_mb": peak_mb}
    print("BENCH_RESULT " + json.dumps(result))


def run_child(args, config: str, workdir: str) -> dict:
    cmd = [sys.executable, __file__, "--child", config, "--workdir", workdir, "--data", str(args.data),
           "--preset", args.preset, "--batch-size", str(args.batch_size), "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--shuffle-buffer", str(args.shuffle_buffer)]
    if args.teachers:
        cmd += ["--teachers", args.teachers]
    if args.cache:
        cmd += ["--cache", str(args.cache)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("BENCH_RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.exit(f"configuration {config} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1].split(" ", 1)[1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--teachers", default=None, help="T1,T2: teacher dirs (for the online configuration)")
    p.add_argument("--cache", type=Path, default=None, help="a topk cache of the same teachers and DATA")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=12, help="measured steps per run")
    p.add_argument("--warmup", type=int, default=3, help="unmeasured first steps")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--shuffle-buffer", type=int, default=2048, help="streaming: windows in the shuffle buffer")
    p.add_argument("--out-json", type=Path, default=None)
    p.add_argument("--child", default=None, choices=CONFIGS, help=argparse.SUPPRESS)
    p.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        args.config = args.child
        return child(args)
    if not (args.teachers and args.cache):
        sys.exit("--teachers and --cache are required")
    results: dict[str, list[dict]] = {c: [] for c in CONFIGS}
    with tempfile.TemporaryDirectory(prefix="bl2-bench-distill-") as workdir:
        for r in range(args.repeats):
            for config in CONFIGS:
                results[config].append(run_child(args, config, workdir))
                last = results[config][-1]
                print(f"repeat {r + 1}: {config:13s} median step {statistics.median(last['step_s']):.3f} s,"
                      f" peak RSS {last['peak_rss_mb']:.0f} MiB", flush=True)
    summary = {}
    for config, runs in results.items():
        steps = [s for run in runs for s in run["step_s"]]
        rss = [r["peak_rss_mb"] for r in runs]
        # median over repeats: the same configuration's peak RSS varies by +-15 % from run to run (allocator)
        summary[config] = {"median_step_s": statistics.median(steps), "peak_rss_mb": statistics.median(rss),
                           "peak_rss_range_mb": [min(rss), max(rss)]}
    base = summary["ce"]
    print(f"\n{'configuration':14s} {'step s':>8s} {'x CE':>6s} {'peak RSS MiB':>13s} {'x CE':>6s}  RSS range")
    for config, s in summary.items():
        s["step_ratio"] = s["median_step_s"] / base["median_step_s"]
        s["rss_ratio"] = s["peak_rss_mb"] / base["peak_rss_mb"]
        lo, hi = s["peak_rss_range_mb"]
        print(f"{config:14s} {s['median_step_s']:8.3f} {s['step_ratio']:6.2f} {s['peak_rss_mb']:13.0f} "
              f"{s['rss_ratio']:6.2f}  {lo:.0f}-{hi:.0f}")
    print("targets: cache <= 1.05x CE step time, <= 1.10x CE peak RSS")
    if args.out_json:
        args.out_json.write_text(json.dumps({"summary": summary, "runs": results, "args": vars(args)}, indent=2,
                                            default=str))


if __name__ == "__main__":
    main()
