"""1 vs N processes under torchrun for `bl2 pretrain`: step time, tokens/s (all ranks) and the bytes DDP
all-reduces per optimizer step, measured side by side in one run.

    python benchmarks/bench_ddp.py --data DATA --preset tiny [--nproc 1,2] [--device cpu|cuda]

Each configuration is `python -m torch.distributed.run --standalone --nproc-per-node N -m bl2 pretrain ...` with
the same global batch, and gets the machine's cores split between its processes (OMP_NUM_THREADS = cores / N);
the step time is the median of the per-step `tokens_per_s` rows after the warm-up steps. Bytes all-reduced are
counted by a DDP communication hook on the same model in a separate 2-process group (every gradient bucket of
one step). On a 2-core CPU, 2 processes cannot be faster than 1: the numbers measure DDP's overhead.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def run_config(args, nproc: int, workdir: Path) -> dict:
    out = workdir / f"n{nproc}"
    cores = os.cpu_count() or 1
    env = os.environ | {"OMP_NUM_THREADS": str(max(1, cores // nproc))}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), "-m", "bl2",
           "pretrain", "--data", str(args.data), "--preset", args.preset, "--out", str(out), "--max-steps",
           str(args.steps), "--batch-size", str(args.batch_size), "--log-every-steps", "1", "--warmup-steps", "5",
           "--ckpt-every-steps", "100000", "--device", args.device]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        sys.exit(f"nproc {nproc} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    from bl2.runs import metrics

    tps = [row["tokens_per_s"] for row in metrics.read(out / "metrics.jsonl", "train")][args.warmup:]
    tokens = args.batch_size * 128
    return {"nproc": nproc, "threads_per_proc": max(1, cores // nproc), "tokens_per_s": statistics.median(tps),
            "step_s": statistics.median(tokens / t for t in tps)}


def _count_worker(rank: int, world: int, port: int, preset: str, vocab: int, device: str, queue) -> None:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from bl2.model.io import build_model

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    backend = "nccl" if device == "cuda" else "gloo"
    dist.init_process_group(backend, rank=rank, world_size=world)
    dev = f"cuda:{rank}" if device == "cuda" else "cpu"
    model = build_model(preset, vocab, 128, 0).to(dev)
    ddp = DistributedDataParallel(model, device_ids=[rank] if device == "cuda" else None)
    counted = []

    def hook(state, bucket):
        counted.append(bucket.buffer().numel() * bucket.buffer().element_size())
        fut = dist.all_reduce(bucket.buffer().div_(world), async_op=True).get_future()
        return fut.then(lambda f: f.value()[0])

    ddp.register_comm_hook(None, hook)
    ids = torch.randint(0, vocab, (2, 129), device=dev)
    ddp(input_ids=ids[:, :-1], labels=ids[:, 1:]).loss.backward()
    if rank == 0:
        queue.put({"bytes_per_step": sum(counted), "buckets": len(counted),
                   "params": sum(p.numel() for p in model.parameters())})
    dist.destroy_process_group()


def allreduce_bytes(preset: str, vocab: int, device: str) -> dict:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_count_worker, args=(r, 2, port, preset, vocab, device, queue)) for r in range(2)]
    for p in procs:
        p.start()
    result = queue.get(timeout=600)
    for p in procs:
        p.join(timeout=60)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--nproc", default="1,2")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--warmup", type=int, default=5, help="logged steps dropped before the median")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    from bl2.data.store import TokenStore

    vocab = TokenStore(args.data).vocab_size
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_config(args, int(n), Path(tmp)) for n in args.nproc.split(",")]
    comm = allreduce_bytes(args.preset, vocab, args.device)
    base = rows[0]
    print(f"preset {args.preset}, vocab {vocab}, global batch {args.batch_size} x 128, device {args.device}, "
          f"{os.cpu_count()} cores")
    print("| processes | threads each | step (median) | tokens/s (all ranks) | x 1 process |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['nproc']} | {r['threads_per_proc']} | {r['step_s']:.3f} s | {r['tokens_per_s']:,.0f} | "
              f"{r['tokens_per_s'] / base['tokens_per_s']:.2f} |")
    print(f"all-reduced per optimizer step: {comm['bytes_per_step'] / 2**20:.1f} MiB in {comm['buckets']} buckets "
          f"({comm['params']:,} parameters x 4 bytes = {comm['params'] * 4 / 2**20:.1f} MiB)")
    print("BENCH_RESULT " + json.dumps({"rows": rows, "allreduce": comm}))


if __name__ == "__main__":
    main()
