"""One place for device, dtype, seeds, provenance (versions, git sha, device name) and the process group of
multi-process runs under torchrun."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bl2.errors import UserError, require

DEVICES = ("auto", "cpu", "cuda", "mps")


def pick_device(name: str = "auto") -> str:
    """`auto` tries cuda, then mps, then cpu; an explicit device must exist. Under torchrun on CUDA each process
    gets its own GPU, `cuda:LOCAL_RANK`."""
    import torch

    require(name in DEVICES, f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    require(name != "cuda" or torch.cuda.is_available(), "--device cuda requested but CUDA is not available")
    require(name != "mps" or has_mps, "--device mps requested but MPS is not available")
    env = dist_env()
    return f"cuda:{env.local_rank}" if name == "cuda" and env.world_size > 1 else name


def device_type(device: str) -> str:
    """'cuda:1' -> 'cuda' (autocast and the allocator care about the type, not the index)."""
    return device.split(":")[0]


def autocast_dtype(device: str):
    """(dtype or None, reason). bf16 autocast on CUDA GPUs that support it; fp32 elsewhere, so CPU runs
    are exactly reproducible (bit-exact resume) and never hit slow CPU bf16 kernels."""
    import torch

    if device_type(device) == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16, "bf16 autocast: CUDA device supports bf16"
    if device_type(device) == "cuda":
        return torch.float16, "fp16 autocast: CUDA device without bf16"
    return None, f"fp32: {device} (exact, reproducible)"


def seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def git_sha() -> str | None:
    """Commit of the bl2 checkout this code runs from (None for an installed wheel)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux; platform's guess elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_caches() -> dict[str, str]:
    """The first core's data caches by level, as Linux reports them ({"L1d": "48K", "L2": "2048K", ...})."""
    out = {}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level, kind = (index / "level").read_text().strip(), (index / "type").read_text().strip()
            if kind != "Instruction":
                out[f"L{level}" + ("d" if kind == "Data" else "")] = (index / "size").read_text().strip()
        except OSError:
            continue
    return out


def device_name(device: str) -> str:
    import torch

    if device_type(device) == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()} ({torch.get_num_threads()} threads)"


def machine_info(since: tuple[int, int] | None | bool = False) -> dict:
    """What a CPU timing depends on, for benchmark outputs: the CPU, its cores, torch and its BLAS build, the
    vector instructions torch's kernels use, and the thread settings; given `since` (a `cpu_times()` reading at
    the start of the timings, None where there is none), also `cpu_steal`, the share of CPU time stolen since."""
    import re

    import torch

    blas = re.search(r"BLAS_INFO=([^,\s]+)", torch.__config__.show())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {"cpu": cpu_model(), "cores": cores, "caches": cpu_caches(), "machine": platform.machine(),
            "torch": torch.__version__,
            "blas": blas and blas.group(1), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch_threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
            "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "ATEN_CPU_CAPABILITY",
                                                   "MKL_ENABLE_INSTRUCTIONS", "OMP_WAIT_POLICY") if os.environ.get(k)}}
    return info | {"cpu_steal": steal_share(since, cpu_times())} if since is not False else info


def cpu_times() -> tuple[int, int] | None:
    """(steal, total) CPU time in clock ticks since boot, from /proc/stat (None elsewhere). Two readings give the
    share of a timed interval that the hypervisor gave to other guests: on a shared VM, the noise in a timing."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def steal_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """The fraction of CPU time stolen between two `cpu_times()` readings."""
    if not before or not after or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def provenance(device: str = "cpu") -> dict:
    """Versions, git sha and device, for run.json and cache attrs."""
    import numpy
    import tokenizers
    import torch
    import transformers
    import zarr

    from bl2 import __version__

    return {
        "bl2_version": __version__,
        "git_sha": git_sha(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "zarr": zarr.__version__,
        "numpy": numpy.__version__,
        "device": device,
        "device_name": device_name(device),
        "host": platform.node(),
    }


def tune_allocator() -> bool:
    """Keep freed memory in glibc's heap instead of returning every large block to the kernel, and keep one heap.

    A CPU training step allocates and frees many large buffers; above glibc's mmap threshold each allocation is
    fresh pages, and faulting them in cost ~30% of a tiny step (measured: 0.80 s -> 0.55 s per step, at +25% peak
    RSS). One malloc arena for all threads: zarr decodes a cache in its own threads, and what they free stays in
    their arenas, where the training thread cannot reuse it (measured: a 64.5 MB in-RAM cache left 25-30 MB of
    such memory resident, a third of the cache run's excess RSS over a CE run). Call it before any thread
    allocates (the CLI does, first thing). No-op where glibc is absent. Returns True if applied.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if platform.system() != "Linux" or not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8
        return bool(libc.mallopt(m_mmap_threshold, 1 << 30) and libc.mallopt(m_trim_threshold, 1 << 31)
                    and libc.mallopt(m_arena_max, 1))
    except (OSError, AttributeError):
        return False


# ---------------------------------------------------------------------------------------------- torchrun
DIST_TIMEOUT_ENV = "BL2_DIST_TIMEOUT"  # seconds a collective may wait for a missing rank (default 600)


@dataclass(frozen=True)
class DistEnv:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_env() -> DistEnv:
    """Read torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK); rank 0 of 1 when they are absent."""
    try:
        return DistEnv(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                       int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError:
        return DistEnv()


def init_distributed(device: str) -> DistEnv:
    """Join the torchrun process group (nccl on CUDA, gloo elsewhere) once; a no-op for a single process.
    Collectives time out after $BL2_DIST_TIMEOUT seconds, so a rank that dies never leaves the others hanging."""
    import datetime

    import torch
    import torch.distributed as dist

    env = dist_env()
    if env.world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device_type(device) == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(env.local_rank)
        timeout = datetime.timedelta(seconds=float(os.environ.get(DIST_TIMEOUT_ENV, 600)))
        dist.init_process_group(backend, timeout=timeout)
    return env


def dist_backend() -> str | None:
    """The process group's backend, or None for a single process."""
    import torch.distributed as dist

    return dist.get_backend() if dist.is_available() and dist.is_initialized() else None


class Dist:
    """This process's view of a torchrun job: rank, world size, and the few collectives bl2 needs (the training
    loop, the cache writer). With one process every method is the trivial one and torch.distributed is never
    touched. Rank 0 makes the decisions that involve the filesystem (`on_main`) and the others follow."""

    def __init__(self, env: DistEnv | None = None):
        env = env or DistEnv()
        self.env = env
        self.rank, self.world_size = env.rank, env.world_size

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def mean_(self, *tensors) -> None:
        """Average scalar tensors over ranks, in place (logged CE and KL)."""
        if self.enabled:
            import torch.distributed as dist

            for t in tensors:
                dist.all_reduce(t, op=dist.ReduceOp.SUM)
                t.div_(self.world_size)

    def sum(self, *values: float, device: str = "cpu") -> list[float]:
        """Sum Python numbers over ranks (validation NLL and token counts) in float64."""
        if not self.enabled:
            return list(values)
        import torch
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def any(self, flag: bool, device: str = "cpu") -> bool:
        """True on every rank when `flag` is true on any rank (rank 0's hooks stopping the run)."""
        if not self.enabled:
            return flag
        import torch
        import torch.distributed as dist

        t = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def on_main(self, fn):
        """Run fn() on rank 0 only and hand every rank its result; a UserError raised there is raised on
        every rank (same message), so no rank waits for a rank 0 that has given up."""
        if not self.enabled:
            return fn()
        import torch.distributed as dist

        box = [None]
        if self.is_main:
            try:
                box[0] = ("ok", fn())
            except UserError as e:
                box[0] = ("error", str(e))
        dist.broadcast_object_list(box, src=0)
        kind, value = box[0]
        if kind == "error":
            error = UserError(value)
            error.shared = True  # rank 0 says it; the other ranks stay silent (cli/common.py)
            raise error
        return value

    def gather(self, obj) -> list:
        """obj of every rank, in rank order (on every rank)."""
        if not self.enabled:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()
