"""The batch type the training loop consumes, and its one conversion from the numpy arrays that window sources
and the cache loader read (uint16 token ids become int64 index tensors; target values keep their stored dtype and
are upcast in the loss)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class Batch:
    """input_ids [B, L+1] (inputs are [:, :-1], labels [:, 1:]) and, from a cache, target arrays [B, L, ..]."""

    input_ids: torch.Tensor
    targets: dict[str, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def of_arrays(cls, arrays: dict[str, np.ndarray]) -> Batch:
        """From numpy arrays: `input_ids` [B, L+1] and any cache target arrays [B, L, ..] (uint16 ids -> int64)."""
        targets = {name: _tensor(a) for name, a in arrays.items() if name != "input_ids"}
        return cls(torch.from_numpy(arrays["input_ids"].astype(np.int64)), targets)

    def split(self, n: int) -> list[Batch]:
        """n equal micro-batches (gradient accumulation)."""
        ids = self.input_ids.chunk(n)
        parts = {k: v.chunk(n) for k, v in self.targets.items()}
        return [Batch(ids[i], {k: v[i] for k, v in parts.items()}) for i in range(n)]

    def to(self, device: str) -> Batch:
        return Batch(self.input_ids.to(device, non_blocking=True),
                     {k: v.to(device, non_blocking=True) for k, v in self.targets.items()})


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a.astype(np.int64) if a.dtype == np.uint16 else np.ascontiguousarray(a))
