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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from bl2.cache.schema import IN_MEMORY, SHARD_WINDOWS
from bl2.data.batch import Batch
from bl2.data.order import epoch_order, rank_rows
from bl2.errors import require

READ_AHEAD = 4  # batches whose blocks are requested before they are needed (streaming)
READ_AHEAD_BLOCKS = 8  # at most this many blocks read ahead (bounded memory: the LRU holds them too)
READ_THREADS = 4  # concurrent block reads
BLOCK = SHARD_WINDOWS  # rows per read block: one cache shard (a whole-shard read decodes nothing twice)


def available_ram() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def decide_in_memory(choice: str, nbytes: int, budget_fraction: float = 0.5) -> bool:
    require(choice in IN_MEMORY, f"--cache-in-memory must be one of {', '.join(IN_MEMORY)}")
    if choice == "auto":
        return nbytes <= budget_fraction * available_ram()
    return choice == "yes"


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
    """Random access (epoch, batch index) -> Batch over a complete cache.

    Streaming (the cache not in RAM) reads shard-sized blocks into a small LRU that plays the shuffle buffer.
    Reads run on a few threads: the blocks a batch lacks are fetched concurrently, and the blocks of the next
    READ_AHEAD batches are requested before they are needed, so a remote store's latency (one request per
    block) overlaps training instead of stalling it. Threads, not processes: fsspec and zarr are not fork-safe.
    """

    def __init__(self, opened: OpenedCache, seed: int, buffer: int = 8192, rank: int = 0, world_size: int = 1):
        self.reader, self.data, self.seed, self.buffer = opened.reader, opened.data, seed, buffer
        self.rank, self.world_size = rank, world_size
        self.n_windows = self.reader.windows_per_offset
        self.n_alignments = len(self.reader.window_offsets)
        self._blocks: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        self._pending: dict[int, Future] = {}
        self._max_blocks = max(2, buffer // BLOCK + 2) + READ_AHEAD_BLOCKS
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
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
            return Batch.of_arrays({name: a[rows] for name, a in self.data.items()})
        blocks = rows // BLOCK
        needed = [int(b) for b in np.unique(blocks)]
        for b in needed:  # everything this batch needs, concurrently
            self._request(b)
        self._read_ahead(epoch, index, batch_size)
        parts = {b: self._block(b) for b in needed}
        names = next(iter(parts.values())).keys()
        return Batch.of_arrays({n: np.stack([parts[int(b)][n][r - b * BLOCK] for r, b in zip(rows, blocks)])
                         for n in names})

    def _read_ahead(self, epoch: int, index: int, batch_size: int) -> None:
        """Request the blocks of the next batches of this epoch, at most READ_AHEAD_BLOCKS not yet held."""
        budget = READ_AHEAD_BLOCKS
        for j in range(index + 1, min(index + 1 + READ_AHEAD, self.n_windows // batch_size)):
            for b in np.unique(self.rows(epoch, j, batch_size) // BLOCK):
                if budget <= 0:
                    return
                budget -= self._request(int(b))

    def _request(self, b: int) -> int:
        """Start reading block b in a thread unless it is held or on its way; 1 if a read was started."""
        with self._lock:
            if b in self._blocks or b in self._pending:
                return 0
            if self._pool is None:
                self._pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="bl2-cache-read")
            self._pending[b] = self._pool.submit(self._load, b)
            return 1

    def _load(self, b: int) -> dict[str, np.ndarray]:
        return self.reader.read(b * BLOCK, min((b + 1) * BLOCK, self.reader.n_windows))

    def _block(self, b: int) -> dict[str, np.ndarray]:
        with self._lock:
            if b in self._blocks:
                self._blocks.move_to_end(b)
                return self._blocks[b]
            future = self._pending.get(b)
        data = future.result() if future is not None else self._load(b)
        with self._lock:
            self._pending.pop(b, None)
            self._blocks[b] = data
            while len(self._blocks) > self._max_blocks:
                self._blocks.popitem(last=False)
        return data
