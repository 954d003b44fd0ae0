"""Benchmark of `bl2 cache-logits`, measured side by side in one process:

1. throughput: cache-logits (topk, k=64) vs a bare forward of the same teacher ensemble over the same windows,
   same batch size, same device, interleaved (bare, cache, bare, cache, ...); prints the ratio (target >= 0.95);
2. bytes/token on disk for topk k in {8,16,32,64,128} and sample with {16,50} draws, and how far each is from
   a full cache of the same windows (`bl2 cache compare` metrics), next to the reference points
   512 B/token (raw top-128 fp16 + uint16) and ~36 B/token (Sparse Logit Sampling, RS-KD paper).

    python benchmarks/bench_cache.py --data DATA --teachers T1,T2 [--out-json FILE]
    python benchmarks/bench_cache.py --data DATA --untrained tiny   # builds 2 untrained teachers first

Exits non-zero when it cannot produce its result. Runs in < ~10 minutes on 2 CPU cores with tiny teachers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

RAW_TOP128 = 512.0  # B/token: 128 x (fp16 value + uint16 id), uncompressed
RS_KD = 36.0  # B/token reported for Sparse Logit Sampling (~12 unique ids of 50 draws)


def make_untrained(data: Path, preset: str, root: Path, n: int = 2) -> list[Path]:
    from bl2.data.store import TokenStore
    from bl2.model.io import build_model, save_model_dir

    vocab = TokenStore(data).vocab_size
    dirs = []
    for seed in range(n):
        out = root / f"{preset}-untrained-{seed}"
        save_model_dir(build_model(preset, vocab, 128, seed + 1), out, data)
        dirs.append(out)
    return dirs


def bare_forward(ensemble, plan, n_windows: int, batch_size: int) -> tuple[float, float]:
    """(wall, CPU) seconds to forward the same windows, in the same batches, without producing targets."""
    import numpy as np
    import torch

    from bl2.cache import schema

    t0, cpu0 = time.perf_counter(), time.process_time()
    for s in range(0, n_windows, schema.SHARD_WINDOWS):
        rows = np.arange(s, min(n_windows, s + schema.SHARD_WINDOWS))
        windows = plan.windows(rows)
        for b in range(0, len(rows), batch_size):
            x = torch.from_numpy(windows[b : b + batch_size, :-1].astype(np.int64)).to(ensemble.device)
            logits = ensemble.member_logits(x)
            if ensemble.device == "cuda":
                torch.cuda.synchronize()
            del logits
    return time.perf_counter() - t0, time.process_time() - cpu0


def throughput(args, teachers: list[Path], work: Path) -> dict:
    from bl2.cache.writer import CacheLogitsConfig, cache_logits, plan_cache
    from bl2.model.ensemble import Ensemble
    from bl2.runtime import pick_device

    device = pick_device(args.device)

    def cfg(i: int) -> CacheLogitsConfig:
        return CacheLogitsConfig(data=args.data, teachers=teachers, out=str(work / f"tp{i}.zarr"), k=64,
                                 batch_size=args.batch_size, device=device, max_windows=args.windows, quiet=True)

    plan = plan_cache(cfg(0))
    n = plan.attrs["n_windows"]
    ensemble = Ensemble(teachers, device, "logit_mean")
    bare_forward(ensemble, plan, min(n, args.batch_size), args.batch_size)  # warm-up
    bare, cached, bare_cpu, cached_cpu = [], [], [], []
    for i in range(args.repeats):
        wall, cpu = bare_forward(ensemble, plan, n, args.batch_size)
        bare.append(wall)
        bare_cpu.append(cpu)
        th = cache_logits(cfg(i))["diagnostics"]["throughput"]
        cached.append(th["seconds"])
        cached_cpu.append(th["cpu_seconds"])
        print(f"  repeat {i}: bare {wall:.2f} s ({cpu:.2f} s CPU), cache-logits {th['seconds']:.2f} s "
              f"({th['cpu_seconds']:.2f} s CPU)", flush=True)
    tb, tc = statistics.median(bare), statistics.median(cached)
    tokens = n * plan.attrs["seq_len"]
    return {"windows": n, "tokens": tokens, "batch_size": args.batch_size, "device": device, "bare_s": bare,
            "cache_s": cached, "bare_cpu_s": bare_cpu, "cache_cpu_s": cached_cpu, "bare_tok_s": tokens / tb,
            "cache_tok_s": tokens / tc, "ratio": tb / tc,
            "ratio_cpu": statistics.median(bare_cpu) / statistics.median(cached_cpu)}


def sizes_and_kl(args, teachers: list[Path], work: Path) -> list[dict]:
    from bl2.cache.compare import compare_caches
    from bl2.cache.writer import CacheLogitsConfig, cache_logits

    base = dict(data=args.data, teachers=teachers, batch_size=args.batch_size, device=args.device,
                max_windows=args.kl_windows, quiet=True)
    full = str(work / "full.zarr")
    cache_logits(CacheLogitsConfig(out=full, mode="full", **base))
    rows = []
    variants = [("topk", k, None) for k in (8, 16, 32, 64, 128)] + [("sample", None, n) for n in (16, 50)]
    for mode, k, draws in variants:
        out = str(work / f"{mode}-{k or draws}.zarr")
        extra = {"k": k, "temperatures": [1.0, 2.0]} if mode == "topk" else {"n_draws": draws}
        attrs = cache_logits(CacheLogitsConfig(out=out, mode=mode, **extra, **base))
        result = compare_caches(out, full)
        diag = attrs["diagnostics"]
        for row in result["rows"]:
            rows.append({"mode": mode, "k": k, "n_draws": draws, "bytes_per_token": diag["bytes_per_token"],
                         "unique_ids": diag.get("unique_ids", {}).get("mean"), **row})
        print(f"  {mode} {k or draws}: {diag['bytes_per_token']:.1f} B/token", flush=True)
    return rows


def print_tables(tp: dict | None, rows: list[dict]) -> None:
    if tp:
        print_throughput(tp)
    if rows:
        print_sizes(rows)


def print_throughput(tp: dict) -> None:
    print(f"\nthroughput ({tp['windows']} windows x batch {tp['batch_size']} on {tp['device']}): bare forward "
          f"{tp['bare_tok_s']:,.0f} tok/s, cache-logits topk k=64 {tp['cache_tok_s']:,.0f} tok/s, "
          f"ratio {tp['ratio']:.3f} (target >= 0.95); CPU-time ratio {tp['ratio_cpu']:.3f} (robust to other "
          "processes on the box; includes the writer thread)")


def print_sizes(rows: list[dict]) -> None:
    print("\n| mode | k / draws | B/token | vs raw top-128 (512) | vs RS-KD (~36) | T | mass | mass p10 | "
          "kl_bucket | kl_flat_tail | grad_err | unique ids |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        flat = f"{r['kl_flat_tail']:.4f}" if "kl_flat_tail" in r else "-"
        uniq = f"{r['unique_ids']:.1f}" if r["unique_ids"] is not None else "-"
        print(f"| {r['mode']} | {r['k'] or r['n_draws']} | {r['bytes_per_token']:.1f} | "
              f"{r['bytes_per_token'] / RAW_TOP128:.3f}x | {r['bytes_per_token'] / RS_KD:.2f}x | {r['T']:g} | "
              f"{r['mass']:.4f} | {r['mass_p10']:.4f} | {r['kl_bucket']:.2e} | {flat} | {r['grad_err']:.4f} | {uniq} |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, required=True, help="prepared DATA dir")
    p.add_argument("--teachers", help="comma-separated teacher dirs")
    p.add_argument("--untrained", metavar="PRESET", help="build 2 untrained teachers of this preset instead")
    p.add_argument("--windows", type=int, default=512, help="windows for the throughput comparison")
    p.add_argument("--kl-windows", type=int, default=128, help="windows for the size / KL table")
    p.add_argument("--repeats", type=int, default=2, help="interleaved bare/cache repeats (median reported)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice; 1 is robust on a "
                   "shared box, where a 2-thread OpenMP pool stalls whenever another process takes a core)")
    p.add_argument("--only", choices=("throughput", "sizes"), help="run one half of the benchmark")
    p.add_argument("--work", type=Path, help="folder for the caches (default: a temporary dir)")
    p.add_argument("--out-json", type=Path, help="write all numbers as JSON")
    args = p.parse_args()
    if not (args.teachers or args.untrained):
        p.error("pass --teachers or --untrained PRESET")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        teachers = ([Path(t) for t in args.teachers.split(",")] if args.teachers
                    else make_untrained(args.data, args.untrained, work))
        t0 = time.perf_counter()
        print(f"teachers: {', '.join(map(str, teachers))}", flush=True)
        tp = throughput(args, teachers, work) if args.only != "sizes" else None
        rows = sizes_and_kl(args, teachers, work) if args.only != "throughput" else []
        print_tables(tp, rows)
        print(f"\nbenchmark took {time.perf_counter() - t0:.0f} s; load average now {os.getloadavg()[0]:.2f}")
    if args.out_json:
        meta = {"threads": torch.get_num_threads(), "teachers": [str(t) for t in teachers] if args.teachers
                else f"2 untrained {args.untrained}", "data": str(args.data)}
        args.out_json.write_text(json.dumps({"meta": meta, "throughput": tp, "sizes": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # the benchmark failed to produce its result: say why, exit non-zero
        print(f"bench_cache failed: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
