"""Deterministic per-epoch orders of training windows: a pure function of (seed, epoch), so that a resumed
run continues with exactly the batches an uninterrupted run would have seen."""

from __future__ import annotations

import numpy as np


def rng_for(seed: int, epoch: int, stream: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, stream])


def epoch_order(n: int, seed: int, epoch: int, block: int, buffer: int) -> np.ndarray:
    """A permutation of range(n). When n <= buffer it is a full permutation; otherwise rows are grouped in
    blocks of `block` consecutive rows (a cache shard), the blocks are permuted, and each run of
    buffer // block blocks is permuted within: the order a shuffle buffer over shard-sized reads yields."""
    rng = rng_for(seed, epoch)
    if n <= buffer:
        return rng.permutation(n)
    n_blocks = -(-n // block)
    blocks = rng.permutation(n_blocks)
    per_group = max(1, buffer // block)
    parts = []
    for g in range(0, n_blocks, per_group):
        rows = np.concatenate([np.arange(b * block, min(n, (b + 1) * block)) for b in blocks[g : g + per_group]])
        parts.append(rng.permutation(rows))
    return np.concatenate(parts)


def rank_rows(rows: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """This process's share of a global batch (rows rank, rank + world, ...): with world_size processes each
    reads batch_size / world_size windows of the same global order, so the global batch is unchanged."""
    return rows[rank::world_size] if world_size > 1 else rows
