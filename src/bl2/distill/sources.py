"""Window sources: what the training loop iterates. Each gives, for (epoch, batch index), the same batch
every time (random access, so a resumed run reads exactly what the uninterrupted run would have).

- RandomOffsetWindows: pretraining. Every epoch draws a fresh random offset (0..L-1) per window, as the
  reference's BabylmDataset does, and a fresh order.
- FixedWindows: the non-overlapping windows a cache holds (offset fixed per alignment); used by online
  distillation so that it sees the very windows, in the very order, of a cache-fed run.
"""

from __future__ import annotations

import queue
import threading

import numpy as np

from bl2.cache.schema import SHARD_WINDOWS
from bl2.data.batch import Batch
from bl2.data.order import epoch_order, rank_rows, rng_for
from bl2.data.windows import gather_windows
from bl2.errors import require


class RandomOffsetWindows:
    """Pretraining windows: W = n // L - 1 windows; epoch e shuffles them and shifts each by a random offset."""

    def __init__(self, tokens: np.ndarray, seq_len: int, seed: int, rank: int = 0, world_size: int = 1):
        self.tokens, self.seq_len, self.seed, self.rank, self.world_size = tokens, seq_len, seed, rank, world_size
        self.n_windows = len(tokens) // seq_len - 1
        require(self.n_windows >= 1, f"the training split has {len(tokens)} tokens: too few for one window of "
                f"{seq_len + 1} tokens with a random offset")
        self._epoch, self._order, self._offsets = None, None, None

    def _plan(self, epoch: int):
        if self._epoch != epoch:
            self._order = rng_for(self.seed, epoch).permutation(self.n_windows)
            self._offsets = rng_for(self.seed, epoch, stream=1).integers(0, self.seq_len, self.n_windows)
            self._epoch = epoch
        return self._order, self._offsets

    def batch(self, epoch: int, index: int, batch_size: int) -> Batch:
        order, offsets = self._plan(epoch)
        rows = rank_rows(order[index * batch_size : (index + 1) * batch_size], self.rank, self.world_size)
        return Batch.of_arrays({"input_ids": gather_windows(self.tokens, rows * self.seq_len + offsets[rows],
                                                             self.seq_len)})


class FixedWindows:
    """The non-overlapping windows of a split at fixed offsets (alignment e mod N in epoch e), ordered like a
    cache of the same windows (see order.epoch_order)."""

    def __init__(self, tokens: np.ndarray, seq_len: int, seed: int, offsets=(0,), buffer: int = 8192,
                 rank: int = 0, world_size: int = 1):
        self.tokens, self.seq_len, self.seed, self.offsets, self.buffer = tokens, seq_len, seed, list(offsets), buffer
        self.rank, self.world_size = rank, world_size
        self.n_windows = (len(tokens) - 1 - max(self.offsets)) // seq_len
        require(self.n_windows >= 1, f"the split has {len(tokens)} tokens: too few for one window of {seq_len + 1}")
        self._epoch, self._order = None, None

    def batch(self, epoch: int, index: int, batch_size: int) -> Batch:
        if self._epoch != epoch:
            self._order, self._epoch = epoch_order(self.n_windows, self.seed, epoch, SHARD_WINDOWS, self.buffer), epoch
        rows = rank_rows(self._order[index * batch_size : (index + 1) * batch_size], self.rank, self.world_size)
        offset = self.offsets[epoch % len(self.offsets)]
        return Batch.of_arrays({"input_ids": gather_windows(self.tokens, offset + rows * self.seq_len, self.seq_len)})


class Prefetcher:
    """Computes the next batches in a thread while the model trains on the current one (reads never fork:
    zarr's I/O thread and forked workers can deadlock)."""

    def __init__(self, source, epoch_batches, batch_size: int, depth: int = 2):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(source, epoch_batches, batch_size), daemon=True)
        self._thread.start()

    def _run(self, source, epoch_batches, batch_size):
        try:
            for epoch, index in epoch_batches:
                if self._stop.is_set():
                    return
                self._queue.put(source.batch(epoch, index, batch_size))
        except BaseException as e:  # surfaced in the training thread
            self._queue.put(e)

    def get(self) -> Batch:
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self):
        self._stop.set()
        while not self._queue.empty():
            self._queue.get_nowait()
