"""The fused loss's chunk size (positions per chunk of the output layer + loss, fused.py), chosen per machine.

Why: the fastest chunk is a property of the machine (its caches, the kernels its BLAS picks for the chunk's
matmul shapes), not of bl2: on the CPUs measured (BENCHMARKS.md, "the step on every CPU") the best lay anywhere
from 2^22 to 2^26 elements per [P, V] buffer, and small chunks lost up to 1.8x. So, unless --loss-chunk gives a
number, the loop measures: forward and backward of the CE loss on the run's own shapes (hidden size, vocabulary,
positions per micro-batch) for each candidate, interleaved, the fastest (min over repeats) wins. The answer is
cached per machine and shapes (`cache_path()`), so a machine measures once, and it goes into run.json, which a
resumed run reuses (exact resume). Every chunk size gives the same results up to float rounding: only the order
of the sums over chunks changes.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import nullcontext
from pathlib import Path

import torch

# log2 of the elements of one chunk's [P, V] buffer: 4 MB to 64 MB of fp32 on a CPU (from about L2 to past most
# L3s). Measured on an Intel and an AMD 2-core VM (tiny head, BENCHMARKS.md): 2^19 lost everywhere (1.3-1.8x);
# 2^25-2^26 won at most 4 % over 2^24 and their buffer adds 64-200 MB to a run's peak RSS, so they are not tried.
# CUDA: larger, where kernel launches, not caches, are the cost.
CANDIDATES = {"cpu": range(20, 25), "cuda": range(22, 28)}
REPEATS = 3
TIE = 0.03  # within 3 % of the fastest, the default rule's size (fused.chunk_rows) is kept


def cache_path() -> Path:
    """Measured chunk sizes, per machine and shapes: $BL2_TUNE_CACHE, else $XDG_CACHE_HOME/bl2/loss_chunks.json
    (~/.cache/bl2/...)."""
    if os.environ.get("BL2_TUNE_CACHE"):
        return Path(os.environ["BL2_TUNE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bl2" / "loss_chunks.json"


def candidates(vocab: int, positions: int, device: torch.device) -> list[int]:
    """The distinct chunk sizes (positions) to try: at most `positions` (a micro-batch is one chunk at most)."""
    logs = CANDIDATES["cuda" if device.type == "cuda" else "cpu"]
    return sorted({max(1, min(positions, (1 << c) // vocab)) for c in logs})


def machine_key(hidden: int, vocab: int, positions: int, device: torch.device, dtype) -> str:
    """What the fastest chunk depends on: the device (CPU model, threads, kernels, BLAS restrictions; the GPU's
    name), torch's version, the shapes and the compute dtype."""
    from bl2.runtime import cpu_model

    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        env = ",".join(f"{k}={os.environ[k]}" for k in ("MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR") if k in os.environ)
        where = f"{cpu_model()}|{torch.get_num_threads()} threads|{torch.backends.cpu.get_cpu_capability()}|{env}"
    return f"{where}|torch {torch.__version__}|H{hidden} V{vocab} N{positions}|{str(dtype).replace('torch.', '')}"


def measure(hidden: int, vocab: int, positions: int, device: torch.device, autocast=None,
            repeats: int = REPEATS) -> tuple[int, dict[int, float]]:
    """(fastest rows, {rows: best seconds}) of the CE loss + output layer, forward and backward, on random
    inputs of the run's shapes; one candidate needs no measurement."""
    from bl2.distill.fused import FusedLinearLoss, chunk_rows
    from bl2.distill.objective import LossSpec

    rows = candidates(vocab, positions, device)
    if len(rows) == 1:
        return rows[0], {}
    g = torch.Generator().manual_seed(0)
    h = torch.randn(1, positions, hidden, generator=g).to(device).requires_grad_()
    w = (torch.randn(vocab, hidden, generator=g) * hidden**-0.5).to(device).requires_grad_()
    labels = torch.randint(0, vocab, (1, positions), generator=g).to(device)

    def once(r: int) -> float:
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        sync()
        t = time.perf_counter()
        with torch.autocast(device.type, dtype=autocast) if autocast else nullcontext():
            total, _, _ = FusedLinearLoss.apply(h, w, labels, LossSpec(), r, [])
        total.backward()
        sync()
        return time.perf_counter() - t

    for r in rows:  # warm-up: allocator, the BLAS's buffers
        once(r)
    best = {r: float("inf") for r in rows}
    for _ in range(repeats):  # interleaved, so a noisy moment hits every candidate alike
        for r in rows:
            best[r] = min(best[r], once(r))
    return pick(best, min(positions, chunk_rows(vocab, device))), best


def pick(best: dict[int, float], default: int, tie: float = TIE) -> int:
    """The fastest size, unless the default rule's is within `tie` of it: where the curve is flat, a noisy moment
    (another guest on a shared VM) should not decide, and the default keeps runs on similar machines alike."""
    fastest = min(best, key=best.__getitem__)
    return default if default in best and best[default] <= (1 + tie) * best[fastest] else fastest


def choose(setting: int, hidden: int, vocab: int, positions: int, device, autocast=None,
           previous: int | None = None, announce=lambda: None) -> dict:
    """{"rows", "how"}: `setting` when it is a number (how "set"); else the run's own earlier choice (a resume:
    "resumed"), the machine's cached measurement ("cached"), or a new measurement ("measured", cached; after
    `announce()`)."""
    device = torch.device(device)
    if setting:
        return {"rows": setting, "how": "set"}
    if previous:
        return {"rows": previous, "how": "resumed"}
    key = machine_key(hidden, vocab, positions, device, autocast or torch.float32)
    known = _load(cache_path())
    if isinstance(known.get(key), int) and known[key] >= 1:
        return {"rows": known[key], "how": "cached"}
    if len(options := candidates(vocab, positions, device)) == 1:
        return {"rows": options[0], "how": "one chunk per micro-batch"}  # nothing to choose, nothing to remember
    announce()
    t = time.perf_counter()
    rows, best = measure(hidden, vocab, positions, device, autocast)
    _store(cache_path(), key, rows)
    return {"rows": rows, "how": "measured", "seconds": {str(r): round(s, 5) for r, s in best.items()},
            "took_s": round(time.perf_counter() - t, 2)}


def _load(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _store(path: Path, key: str, rows: int) -> None:
    """Add one entry; a write that fails (a read-only home) only costs a measurement next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _load(path) | {key: rows}
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)  # atomic: two runs measuring at once leave one whole file
    except OSError:
        pass
