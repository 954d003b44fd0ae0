"""Benchmark: the output layer + loss, forward and backward, as bl2 computes it (`fused.FusedLinearLoss`, chunk by
chunk) against the Hugging Face path (one [N, V] logits matmul, `.float()`, `F.cross_entropy`, autograd), side by
side in one process, interleaved; and, with --profile, where each one's time goes (matmuls vs the passes over the
logits), from torch.profiler's per-operator self time.

    python benchmarks/bench_loss_chunk.py [--hidden 128] [--vocab 16000] [--positions 4096] \
        [--chunks 20,21,22,23,24,25,26] [--mode ce|topk] [--repeats 7] [--profile] [--device cpu|cuda] \
        [--out-json F]

`--chunks` are log2 of the elements of one chunk's [P, V] buffer (P = 2^c // V positions per chunk); `auto` adds
what `bl2.distill.chunks` measures and picks on this machine. The tiny preset's head is hidden 128, vocab 16,000,
and a batch of 32 x 128 is 4,096 positions. To see how the curve moves on a CPU without AVX-512 (torch's AVX2
kernels, MKL held to its AVX2 code paths: the most it uses on an AMD CPU), run it again under
`ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2`. On CUDA (`--device cuda`, as the GPU check runs it) the
hf path computes its logits in bf16 under autocast and the fused one its matmuls in bf16, as in training;
--profile reports CPU-side time only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

EAGER: dict = {}  # fused.MODES as shipped, and compiled (--compile)
COMPILED: dict = {}
MATMUL = ("aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::matmul", "aten::linear")


def inputs(args, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    n, h, v = args.positions, args.hidden, args.vocab
    out = {"h": torch.randn(n, h, generator=g), "w": torch.randn(v, h, generator=g) * h**-0.5,
           "labels": torch.randint(0, v, (n,), generator=g)}
    if args.mode == "topk":
        logits = torch.randn(n, v, generator=g)
        lp, ids = torch.log_softmax(logits, -1).topk(64, dim=-1)
        out["targets"] = {"topk_ids": ids, "topk_logp": lp}
    move = {k: t.to(args.device) for k, t in out.items() if torch.is_tensor(t)}
    return out | move | ({"targets": {k: t.to(args.device) for k, t in out["targets"].items()}} if "targets" in out
                         else {})


def autocast(x: dict):
    """bf16 autocast on CUDA, as training runs there (bl2's loop and the Trainer with bf16=True)."""
    from contextlib import nullcontext

    cuda = x["h"].device.type == "cuda"
    return torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()


def hf_step(x: dict) -> None:
    """What LlamaForCausalLM(labels=...) does after the final norm: lm_head, upcast, cross_entropy; backward."""
    h, w = x["h"].detach().requires_grad_(), x["w"].detach().requires_grad_()
    with autocast(x):
        loss = F.cross_entropy(F.linear(h, w).float(), x["labels"])
    loss.backward()


def fused_step(x: dict, rows: int, mode: str | None, compiled: bool = False) -> None:
    from bl2.distill import fused
    from bl2.distill.fused import FusedLinearLoss
    from bl2.distill.objective import LossSpec

    if EAGER:  # --compile: the eager or the compiled loss maths for this call
        fused.MODES = COMPILED if compiled else EAGER

    h, w = x["h"].detach().requires_grad_(), x["w"].detach().requires_grad_()
    spec = LossSpec(mode, 0.5, 1.0) if mode else LossSpec()
    tgt = x.get("targets", {}) if mode else {}
    with autocast(x):
        total, _, _ = FusedLinearLoss.apply(h.unsqueeze(0), w, x["labels"].unsqueeze(0), spec, rows, list(tgt),
                                            *[t.unsqueeze(0) for t in tgt.values()])
    total.backward()


def compiled_hf_step():
    """hf_step's loss under torch.compile (what Trainer(torch_compile=True) compiles: the model with its head and
    loss)."""
    def loss_of(h, w, labels):
        return F.cross_entropy(F.linear(h, w).float(), labels)

    compiled = torch.compile(loss_of)

    def step(x: dict) -> None:
        h, w = x["h"].detach().requires_grad_(), x["w"].detach().requires_grad_()
        compiled(h, w, x["labels"]).backward()

    return step


def configurations(args, x: dict) -> dict:
    global EAGER, COMPILED
    from bl2.distill import fused

    mode = None if args.mode == "ce" else args.mode
    configs = {"hf": lambda: hf_step(x)}
    if args.compile:
        EAGER = dict(fused.MODES)
        COMPILED = {k: torch.compile(fn, dynamic=False) for k, fn in EAGER.items()}
        step = compiled_hf_step()
        configs["hf compiled"] = lambda: step(x)
        for c in args.chunks.split(","):
            rows = max(1, min(args.positions, (1 << int(c)) // args.vocab))
            configs[f"fused 2^{c} eager"] = lambda r=rows: fused_step(x, r, mode)
            configs[f"fused 2^{c} compiled"] = lambda r=rows: fused_step(x, r, mode, True)
        return configs
    for c in args.chunks.split(","):
        if c == "auto":
            from bl2.distill.chunks import measure

            device = torch.device(args.device)
            rows, _ = measure(args.hidden, args.vocab, args.positions, device,
                              torch.bfloat16 if device.type == "cuda" else None)
            configs[f"fused auto ({rows} rows)"] = lambda r=rows: fused_step(x, r, mode)
        else:
            rows = max(1, min(args.positions, (1 << int(c)) // args.vocab))
            configs[f"fused 2^{c} ({rows} rows)"] = lambda r=rows: fused_step(x, r, mode)
    return configs


def timed(fn) -> float:
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t


def profile(name: str, fn) -> dict:
    """Self CPU time per operator group over 3 calls, in seconds per call."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as prof

    fn()
    with prof(activities=[ProfilerActivity.CPU]) as p:
        for _ in range(3):
            fn()
    groups: dict[str, float] = {}
    for e in p.key_averages():
        key = "matmul" if e.key in MATMUL else e.key
        groups[key] = groups.get(key, 0.0) + e.self_cpu_time_total / 1e6 / 3
    top = dict(sorted(groups.items(), key=lambda kv: -kv[1])[:8])
    print(f"  {name}: " + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in top.items()))
    return top


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--vocab", type=int, default=16000)
    p.add_argument("--positions", type=int, default=4096)
    p.add_argument("--chunks", default="20,21,22,23,24,25,26", help="log2 elements per chunk, or auto")
    p.add_argument("--mode", default="ce", choices=["ce", "topk"])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--compile", action="store_true", help="each chunk size eager and with the loss maths of a chunk "
                   "under torch.compile (fused.MODES compiled); hf with and without torch.compile")
    p.add_argument("--out-json", type=Path)
    args = p.parse_args()
    from bl2.runtime import cpu_times, machine_info, tune_allocator

    tune_allocator()  # as the CLI
    start = cpu_times()  # the share stolen by other guests: the noise of a shared VM
    x = inputs(args)
    configs = configurations(args, x)
    for name, fn in configs.items():  # warm-up: allocator, MKL's buffers, compilation
        t = time.perf_counter()
        fn()
        fn()  # a short last chunk compiles its own graph on the first call too
        print(f"warm-up {name}: {time.perf_counter() - t:.1f} s", flush=True)
    times: dict[str, list[float]] = {k: [] for k in configs}
    for _ in range(args.repeats):
        for name, fn in configs.items():
            times[name].append(timed(fn))
    base = statistics.median(times["hf"])
    print(f"{'configuration':28s} {'median s':>9s} {'min s':>7s} {'x hf':>6s}")
    for name, ts in times.items():
        print(f"{name:28s} {statistics.median(ts):9.3f} {min(ts):7.3f} {statistics.median(ts) / base:6.2f}")
    prof = {name: profile(name, fn) for name, fn in configs.items()} if args.profile else {}
    machine = machine_info(since=start)
    print("machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()))
    if args.out_json:
        args.out_json.write_text(json.dumps({"times": times, "profile": prof, "machine": machine,
                                             "args": vars(args)}, indent=2, default=str))


if __name__ == "__main__":
    main()
