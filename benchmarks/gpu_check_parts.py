"""The measuring parts of benchmarks/gpu_check.sh that are easier in Python.

    python benchmarks/gpu_check_parts.py cache --data DATA --teachers T0,T1 --out CACHE [--windows 256] ...
    python benchmarks/gpu_check_parts.py summary --out DIR

`cache`: runs `bl2 cache-logits` (top-64, the given windows; its own write throughput, and end to end) and,
on the same windows, a bare forward pass of each teacher (no softmax, no top-k, no writes; model load
excluded), and prints both rates as JSON. `summary`: gathers DIR's JSONs into DIR/gpu_check.json and prints
the headline numbers."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def bare_forward(teachers: list[str], data: str, windows: int, batch_size: int, device: str) -> float:
    """Tokens/s of the teachers' forward passes alone over the first `windows` windows of the train split."""
    import torch

    from bl2.data.store import TokenStore
    from bl2.model.io import load_model
    from bl2.runtime import pick_device

    device = pick_device(device)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    models = [load_model(Path(t), device, dtype) for t in teachers]
    seq = int(models[0].config.max_position_embeddings) // 2
    tokens = torch.from_numpy(TokenStore(data).split("train")[: windows * seq].astype("int64"))
    windows = len(tokens) // seq
    batches = tokens[: windows * seq].view(windows, seq).split(batch_size)
    with torch.inference_mode():
        models[0](input_ids=batches[0].to(device))  # warm-up (kernels, allocator)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for m in models:
            for b in batches:
                m(input_ids=b.to(device))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    return windows * seq / (time.perf_counter() - t0)


def cache(args) -> None:
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "bl2", "cache-logits", "--data", args.data, "--teachers", args.teachers, "--out",
           args.out, "--k", "64", "--max-windows", str(args.windows), "--batch-size", str(args.batch_size),
           "--device", args.device, "--overwrite"]
    subprocess.run(cmd, check=True, capture_output=True)
    seconds = time.perf_counter() - t0
    from bl2.cache.reader import CacheReader

    r = CacheReader(args.out)
    tokens = r.n_windows * r.seq_len
    loop = r.attrs["diagnostics"]["throughput"]["tokens_per_s"]  # forwards + top-k + writes, start-up excluded
    bare = bare_forward(args.teachers.split(","), args.data, args.windows, args.batch_size, args.device)
    print(json.dumps({"cache_tokens_per_s": loop, "cache_tokens_per_s_end_to_end": tokens / seconds,
                      "cache_tokens": tokens, "bare_forward_tokens_per_s": bare, "cache_vs_bare_forward": loop / bare}))


def summary(args) -> None:
    out = Path(args.out)

    def read(name):
        path = out / name
        return json.loads(path.read_text()) if path.is_file() else None

    doc = {"cache": read("cache.json"), "bench_distill": read("bench_distill.json"),
           "loss_chunk": read("loss_chunk.json")}
    zs = read("zero_shot.json")
    if zs:
        tasks = zs["systems"][0]["tasks"].values()
        doc["zero_shot_items_per_s"] = sum(t["n_items"] for t in tasks) / sum(t["seconds"] for t in tasks)
    (out / "gpu_check.json").write_text(json.dumps(doc, indent=2))
    steps = (doc["bench_distill"] or {}).get("summary", {})
    print("\nGPU check summary (" + str(out / "gpu_check.json") + ")")
    for name, s in steps.items():
        cuda = f", peak accelerator memory {s['peak_cuda_mb']:.0f} MiB" if s.get("peak_cuda_mb") else ""
        print(f"  {name:20s} step {s['median_step_s']:.3f} s = {s['step_vs_trainer']:.2f}x Trainer CE, "
              f"peak RSS {s['peak_rss_mb']:.0f} MiB{cuda}")
    if doc["cache"]:
        c = doc["cache"]
        print(f"  cache-logits {c['cache_tokens_per_s']:,.0f} tokens/s end to end vs bare teacher forwards "
              f"{c['bare_forward_tokens_per_s']:,.0f} tokens/s ({c['cache_vs_bare_forward']:.2f}x)")
    if doc["loss_chunk"]:
        times = {k: statistics.median(v) for k, v in doc["loss_chunk"]["times"].items()}
        print("  output layer + loss: " + ", ".join(f"{k} {t * 1e3:.1f} ms ({t / times['hf']:.2f}x)"
                                                       for k, t in times.items()))
    if "zero_shot_items_per_s" in doc:
        print(f"  zero-shot {doc['zero_shot_items_per_s']:,.1f} items/s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="part", required=True)
    c = sub.add_parser("cache")
    for name in ("--data", "--teachers", "--out"):
        c.add_argument(name, required=True)
    c.add_argument("--windows", type=int, default=256)
    c.add_argument("--batch-size", type=int, default=32)
    c.add_argument("--device", default="cuda")
    s = sub.add_parser("summary")
    s.add_argument("--out", required=True)
    args = p.parse_args()
    cache(args) if args.part == "cache" else summary(args)


if __name__ == "__main__":
    main()
