"""Training windows and their soft targets streamed from a logit cache (the teachers are never loaded).

The whole cache is decoded into RAM when it fits a budget (`--cache-in-memory auto|yes|no`); otherwise
shard-sized blocks are read on demand and kept in a small LRU that plays the shuffle buffer. Both paths
serve the same order (order.epoch_order: blocks of 256 windows, shuffled within a buffer), so whether a
cache fits in RAM never changes a run's result. Epoch e reads alignment e mod N of a cache made with
`--offsets N` (the window offsets are fixed by the cache; the reference drew new ones every epoch).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from bl2.cache.schema import SHARD_WINDOWS
from bl2.distill.order import epoch_order, rank_rows
from bl2.distill.sources import Batch
from bl2.errors import require

BLOCK = SHARD_WINDOWS  # rows per read block: one cache shard (a whole-shard read decodes nothing twice)
MEMORY_CHOICES = ("auto", "yes", "no")


def available_ram() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def decide_in_memory(choice: str, nbytes: int, budget_fraction: float = 0.5) -> bool:
    require(choice in MEMORY_CHOICES, f"--cache-in-memory must be one of {', '.join(MEMORY_CHOICES)}")
    if choice == "auto":
        return nbytes <= budget_fraction * available_ram()
    return choice == "yes"


def to_torch(arrays: dict[str, np.ndarray]) -> Batch:
    """uint16 ids become int64 (index tensors); values keep their stored dtype and are upcast in the loss."""
    targets = {}
    for name, a in arrays.items():
        if name == "input_ids":
            continue
        targets[name] = torch.from_numpy(a.astype(np.int64) if a.dtype == np.uint16 else np.ascontiguousarray(a))
    return Batch(torch.from_numpy(arrays["input_ids"].astype(np.int64)), targets)


@dataclass
class OpenedCache:
    """A complete cache opened for training: the reader, and its decoded arrays when held in RAM."""

    reader: object  # bl2.cache.reader.CacheReader
    data: dict[str, np.ndarray] | None  # every array decoded (checksums verified), or None: streamed


def open_cache(cache, in_memory: str = "auto") -> OpenedCache:
    """Open a complete cache (a location or a CacheReader); decode it whole into RAM when `in_memory` says so
    (auto: if it fits)."""
    from bl2.cache.reader import CacheReader
    from bl2.cache.shards import check_committed_shards

    reader = cache if isinstance(cache, CacheReader) else CacheReader(cache)
    reader.require_complete()
    check_committed_shards(reader)  # a deleted shard fails here, before a step is trained on zeros
    keep = decide_in_memory(in_memory, reader.nbytes_decoded())
    return OpenedCache(reader, reader.read_all() if keep else None)


class CacheWindows:
    """Random access (epoch, batch index) -> Batch over a complete cache."""

    def __init__(self, opened: OpenedCache, seed: int, buffer: int = 8192, rank: int = 0, world_size: int = 1):
        self.reader, self.data, self.seed, self.buffer = opened.reader, opened.data, seed, buffer
        self.rank, self.world_size = rank, world_size
        self.n_windows = self.reader.windows_per_offset
        self.n_alignments = len(self.reader.window_offsets)
        self._blocks: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        self._max_blocks = max(2, buffer // BLOCK + 2)
        self._lock = threading.Lock()
        self._epoch, self._order = None, None

    def rows(self, epoch: int, index: int, batch_size: int) -> np.ndarray:
        if self._epoch != epoch:
            self._order = epoch_order(self.n_windows, self.seed, epoch, block=BLOCK, buffer=self.buffer)
            self._epoch = epoch
        start, _ = self.reader.offset_rows(epoch % self.n_alignments)
        return start + rank_rows(self._order[index * batch_size : (index + 1) * batch_size], self.rank,
                                 self.world_size)

    def batch(self, epoch: int, index: int, batch_size: int) -> Batch:
        rows = self.rows(epoch, index, batch_size)
        if self.data is not None:
            return to_torch({name: a[rows] for name, a in self.data.items()})
        return to_torch(self._gather(rows))

    def _gather(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        blocks = rows // BLOCK
        parts = {b: self._block(int(b)) for b in np.unique(blocks)}
        names = next(iter(parts.values())).keys()
        return {n: np.stack([parts[b][n][r - b * BLOCK] for r, b in zip(rows, blocks)]) for n in names}

    def _block(self, b: int) -> dict[str, np.ndarray]:
        with self._lock:
            if b in self._blocks:
                self._blocks.move_to_end(b)
                return self._blocks[b]
        data = self.reader.read(b * BLOCK, min((b + 1) * BLOCK, self.reader.n_windows))
        with self._lock:
            self._blocks[b] = data
            while len(self._blocks) > self._max_blocks:
                self._blocks.popitem(last=False)
        return data
