"""Benchmark: windows/s the cache loader sustains (whole cache in RAM, and streamed in shard-sized blocks
through the shuffle buffer) vs windows/s a student consumes, measured side by side in one run.

The student figure is a real training step (forward, fused KD loss, backward, AdamW) of the given preset on
batches from the same cache. The loader figures are `CacheWindows.batch` calls in the training order (new
epoch order, so streaming starts cold) in the main thread; in training they run in a prefetch thread.

    python benchmarks/bench_loader.py --cache CACHE.zarr [--preset tiny] [--batch-size 32] [--batches 40]

Exits non-zero when it cannot produce its result.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def loader_rate(reader, in_memory: bool, batch_size: int, batches: int, buffer: int) -> dict:
    from bl2.cache.loader import CacheWindows, open_cache

    t0 = time.perf_counter()
    source = CacheWindows(open_cache(reader, "yes" if in_memory else "no"), seed=0, buffer=buffer)
    setup = time.perf_counter() - t0
    n = min(batches, source.n_windows // batch_size)
    t0 = time.perf_counter()
    for i in range(n):
        source.batch(1, i, batch_size)
    dt = time.perf_counter() - t0
    return {"setup_s": setup, "batches": n, "windows_per_s": n * batch_size / dt}


def student_rate(reader, preset: str, batch_size: int, steps: int) -> dict:
    from bl2.cache.loader import CacheWindows, open_cache
    from bl2.distill.config import TrainConfig
    from bl2.distill.loop import make_optimizer
    from bl2.distill.objective import LossSpec, Objective
    from bl2.model.io import build_model, final_hidden
    from bl2.runtime import tune_allocator

    tune_allocator()
    cfg = TrainConfig(preset=preset, batch_size=batch_size)
    model = build_model(preset, reader.vocab_size, reader.seq_len, seed=0)
    opt = make_optimizer(model, cfg)
    objective = Objective(LossSpec(reader.mode, 0.5, 1.0, "sequence", reader.temperature_index(1.0), reader.n_draws))
    source = CacheWindows(open_cache(reader, "yes"), seed=0)
    times = []
    for i in range(steps + 2):
        batch = source.batch(0, i, batch_size)
        t0 = time.perf_counter()
        hidden = final_hidden(model, batch.input_ids[:, :-1])
        objective(hidden, model.get_output_embeddings().weight, batch).total.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    step = sorted(times[2:])[len(times[2:]) // 2]
    return {"median_step_s": step, "windows_per_s": batch_size / step}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--batches", type=int, default=40, help="loader batches timed per mode")
    p.add_argument("--buffer", type=int, default=8192, help="shuffle buffer (windows) of the streaming mode")
    p.add_argument("--steps", type=int, default=5, help="student steps timed")
    p.add_argument("--out-json", type=Path, default=None)
    args = p.parse_args()

    from bl2.cache.reader import CacheReader
    from bl2.errors import UserError

    try:
        reader = CacheReader(args.cache)
        reader.require_complete()
    except UserError as e:
        sys.exit(f"error: {e}")
    stream = loader_rate(reader, False, args.batch_size, args.batches, args.buffer)
    ram = loader_rate(reader, True, args.batch_size, args.batches, args.buffer)
    student = student_rate(reader, args.preset, args.batch_size, args.steps)
    print(f"cache {args.cache}: mode {reader.mode}, {reader.n_windows} windows, "
          f"{reader.nbytes_decoded() / 2**20:.0f} MiB decoded, batch {args.batch_size}")
    print(f"{'source':28s} {'windows/s':>10s} {'x student':>10s}")
    for name, r in [("loader, cache in RAM", ram), ("loader, streamed blocks", stream),
                    (f"student ({args.preset}) consumes", student)]:
        print(f"{name:28s} {r['windows_per_s']:10.1f} {r['windows_per_s'] / student['windows_per_s']:10.1f}")
    print(f"(RAM mode decodes the whole cache first: {ram['setup_s']:.1f} s)")
    if args.out_json:
        args.out_json.write_text(json.dumps({"ram": ram, "stream": stream, "student": student, "args": vars(args)},
                                            indent=2, default=str))


if __name__ == "__main__":
    main()
