"""Caches at scale, side by side in one run: `bl2 cache-logits` windows/s with 1 vs N torchrun ranks, and the
loader's windows/s streaming a cache from a local S3 server (moto, 127.0.0.1) vs from local disk, next to what a
`tiny` student consumes.

    python benchmarks/bench_cache_scale.py --data DATA --teachers T0,T1 [--windows 1024] [--nproc 1,2]

cache-logits runs as `python -m torch.distributed.run --standalone --nproc-per-node N -m bl2 cache-logits ...`
with the machine's cores split between the ranks (OMP_NUM_THREADS = cores / N); its rate is the cache's own
throughput diagnostic (windows over the slowest rank's time). On a 2-core CPU, 2 ranks share the cores of 1:
the ratio measures overhead, not speed-up. The loader reads one epoch's batches in the training order with a
cold block cache (`CacheWindows`, streamed); the S3 copy is uploaded to moto first. The student's rate is
`benchmarks/bench_loader.py`'s training step (forward, fused KD loss, backward, AdamW).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def cache_rate(args, nproc: int, out: Path) -> dict:
    cores = os.cpu_count() or 1
    env = os.environ | {"OMP_NUM_THREADS": str(max(1, cores // nproc))}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), "-m", "bl2",
           "cache-logits", "--data", str(args.data), "--teachers", args.teachers, "--out", str(out), "--k", "64",
           "--max-windows", str(args.windows), "--batch-size", "32", "--device", args.device]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=7200)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"cache-logits with {nproc} ranks failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    from bl2.cache.reader import CacheReader

    th = CacheReader(str(out)).attrs["diagnostics"]["throughput"]
    return {"nproc": nproc, "windows_per_s": th["windows_per_s"], "seconds": th["seconds"], "wall_s": wall}


def loader_rate(location: str, batch_size: int, batches: int) -> dict:
    from bl2.cache.loader import CacheWindows, open_cache

    source = CacheWindows(open_cache(location, "no"), seed=0, buffer=2048)
    n = min(batches, source.n_windows // batch_size)
    t0 = time.perf_counter()
    for i in range(n):
        source.batch(0, i, batch_size)
    return {"windows_per_s": n * batch_size / (time.perf_counter() - t0), "batches": n}


def start_s3():
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line per S3 request otherwise

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL=f"http://{host}:{port}")
    import boto3

    boto3.client("s3").create_bucket(Bucket="bl2-bench")
    return server


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--teachers", required=True)
    ap.add_argument("--windows", type=int, default=1024, help="windows cached per configuration")
    ap.add_argument("--nproc", default="1,2")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--student-windows-per-s", type=float, default=None,
                    help="a tiny student's rate from bench_loader.py (else measured here)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [cache_rate(args, int(n), Path(tmp) / f"n{n}.zarr") for n in args.nproc.split(",")]
        local = str(Path(tmp) / f"n{rows[0]['nproc']}.zarr")
        server = start_s3()
        try:
            from bl2 import storage

            storage.upload_tree(local, "s3://bl2-bench/cache.zarr")
            batches = args.windows // args.batch_size
            disk = loader_rate(local, args.batch_size, batches)
            s3 = loader_rate("s3://bl2-bench/cache.zarr", args.batch_size, batches)
        finally:
            server.stop()
        student = args.student_windows_per_s
        if student is None:
            sys.path.insert(0, str(Path(__file__).parent))
            from bench_loader import student_rate

            from bl2.cache.reader import CacheReader

            student = student_rate(CacheReader(local), "tiny", args.batch_size, 6)["windows_per_s"]
    base = rows[0]["windows_per_s"]
    print(f"{args.windows} windows, topk k=64, teachers {args.teachers}, device {args.device}, {os.cpu_count()} cores")
    print("| cache-logits processes | windows/s (all ranks) | x 1 process |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r['nproc']} | {r['windows_per_s']:,.1f} | {r['windows_per_s'] / base:.2f} |")
    print("| loader source (streamed, cold) | windows/s | x what a tiny student consumes |")
    print("|---|---|---|")
    for name, r in (("local disk", disk), ("local S3 server (moto)", s3)):
        print(f"| {name} | {r['windows_per_s']:,.0f} | {r['windows_per_s'] / student:,.0f} |")
    print(f"| tiny student training step | {student:,.1f} | 1 |")
    print("BENCH_RESULT " + json.dumps({"cache_logits": rows, "loader_disk": disk, "loader_s3": s3,
                                        "student_windows_per_s": student}))


if __name__ == "__main__":
    main()
