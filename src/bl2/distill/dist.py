"""Multi-process training under torchrun (DDP), in one place: everything the loop does differently when
WORLD_SIZE > 1. With one process every method is the trivial one and nothing from torch.distributed runs.

Contract (DESIGN §2, "Scaling out"): `--batch-size` is the global batch; rank r reads rows r, r+N, ... of each
global batch (the sources' `rank_rows`), so N processes train on the windows of the 1-process run in the same
order. Gradients are averaged over ranks by DDP (equal shares, so the average of the ranks' means is the mean
over the global batch), only on the last micro-batch of a step (`no_sync` before). Rank 0 alone writes the run
dir; decisions that rank 0 makes (run dir checks, a hook stopping the run) are broadcast to the others, so a
user error ends every rank with the same one line instead of leaving them waiting.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from bl2.errors import UserError
from bl2.runtime import DistEnv


class Dist:
    """This process's view of the job: rank, world size, and the few collectives the loop needs."""

    def __init__(self, env: DistEnv):
        self.env = env
        self.rank, self.world_size = env.rank, env.world_size

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model, device: str):
        """DDP around the model (parameters broadcast from rank 0); the model itself for one process."""
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [torch.device(device).index] if device.startswith("cuda") else None
        return DistributedDataParallel(model, device_ids=ids)

    def no_sync(self, train_model, sync: bool):
        """Skip the gradient all-reduce on all but the last micro-batch of a step."""
        return train_model.no_sync() if self.enabled and not sync else nullcontext()

    def mean_(self, *tensors: torch.Tensor) -> None:
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
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def any(self, flag: bool, device: str = "cpu") -> bool:
        """True on every rank when `flag` is true on any rank (rank 0's hooks stopping the run)."""
        if not self.enabled:
            return flag
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
            raise UserError(value)
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
