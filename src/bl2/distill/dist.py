"""DDP for the training loop under torchrun: wrapping the model and skipping the gradient all-reduce on all but
the last micro-batch of a step. The rest of what differs between one process and many (rank, world size, the
collectives the loop and the cache writer use) is `bl2.runtime.Dist`.

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


def wrap(model, device: str, d):
    """DDP around the model (parameters broadcast from rank 0); the model itself for one process."""
    if not d.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [torch.device(device).index] if device.startswith("cuda") else None
    return DistributedDataParallel(model, device_ids=ids)


def no_sync(train_model, d, sync: bool):
    """Skip the gradient all-reduce on all but the last micro-batch of a step."""
    return train_model.no_sync() if d.enabled and not sync else nullcontext()
