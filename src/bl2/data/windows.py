"""Window arithmetic over a 1-D token stream: the geometry every consumer of windows shares (the cache writer
and reader, the training sources, evaluation). A window of sequence length L holds L + 1 tokens: inputs
[0, L) and labels [1, L].

Cache geometry: with offsets [o_0 .. o_{N-1}] and W windows per offset, global (alignment-major) row a*W + w
starts at token o_a + w*L.
"""

from __future__ import annotations

import numpy as np


def window_offsets(seq_len: int, n_offsets: int) -> list[int]:
    """Alignment a starts its windows at token a*L//N (alignment 0 at token 0)."""
    return [a * seq_len // n_offsets for a in range(n_offsets)]


def windows_per_offset(n_tokens: int, seq_len: int, offsets: list[int]) -> int:
    """W: the same count for every alignment, set by the largest offset (windows need L+1 tokens)."""
    return max(0, (n_tokens - 1 - max(offsets)) // seq_len)


def row_starts(rows: np.ndarray, per_offset: int, offsets: list[int], seq_len: int) -> np.ndarray:
    """First token of each (global, alignment-major) row."""
    rows = np.asarray(rows, dtype=np.int64)
    return np.asarray(offsets, dtype=np.int64)[rows // per_offset] + (rows % per_offset) * seq_len


def gather_windows(tokens: np.ndarray, starts: np.ndarray, seq_len: int) -> np.ndarray:
    """[len(starts), L+1] windows of the token stream (the stream's dtype: uint16 for a token store)."""
    return tokens[np.asarray(starts)[:, None] + np.arange(seq_len + 1)]


def eval_windows(tokens: np.ndarray, seq_len: int) -> np.ndarray:
    """Non-overlapping windows of seq_len + 1 tokens (stride seq_len) at offset 0: every token but the first
    is predicted exactly once across windows (the remainder that does not fill a window is dropped)."""
    n = (len(tokens) - 1) // seq_len
    return gather_windows(tokens, np.arange(n) * seq_len, seq_len) if n else np.zeros((0, seq_len + 1), tokens.dtype)
