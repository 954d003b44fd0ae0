"""CacheReader: read-only access to a bl2 logit cache (format v2, and v1), local or at an fsspec URL, for the
distillation loader and the tools.

Reads happen in the calling process (or its threads): zarr's I/O thread and forked workers can deadlock, and
fsspec filesystems are not fork-safe, so never read a cache from a forked DataLoader worker. Every chunk
carries a crc32c checksum; a mismatch is a UserError naming the array and rows. Progress is never the array
shapes (arrays are pre-allocated): v2 records every committed shard (its rows and the byte size of each
array's shard object) in the `committed` array, v1 a prefix `windows_done`. Rows of uncommitted shards are
refused rather than read as fill values, and every read first checks that the shard files of its rows exist
with the recorded sizes (bl2.cache.shards): a deleted or truncated shard is an error, never zeros.
"""

from __future__ import annotations

import math
from functools import cached_property
from pathlib import Path

import numpy as np

from bl2 import storage
from bl2.cache.encodings import Encoding, decode, needs
from bl2.cache.schema import (
    COMMITTED,
    MODE_ARRAYS,
    SHARD_WINDOWS,
    array_specs,
    check_array,
    n_shards,
    shard_rows,
    validate_attrs,
)
from bl2.cache.shards import check_shards
from bl2.errors import UserError, require


def open_group(path: str, mode: str = "r"):
    """The cache's zarr group (a local folder or an fsspec URL)."""
    require(storage.exists(storage.join(path, "zarr.json")), not_a_cache(path))
    try:
        return storage.open_zarr_group(path, mode=mode)
    except Exception as e:  # garbled metadata is the user's artefact, not a bl2 bug
        raise UserError(f"cannot open cache {path}: {_first_line(e)}") from None


def not_a_cache(path: str) -> str:
    """What `path` is, for a command that wanted a cache there (a DATA dir and a run dir are common mix-ups)."""
    if not storage.exists(path):
        return f"cache not found: {path}"
    if storage.exists(storage.join(path, "tokens.zarr")):
        return f"{path} is a DATA dir (from `bl2 prepare`), not a cache; a cache comes from `bl2 cache-logits`"
    if storage.exists(storage.join(path, "run.json")) or storage.exists(storage.join(path, "config.json")):
        return f"{path} is a model/run dir, not a cache; a cache comes from `bl2 cache-logits`"
    if not storage.is_dir(path):
        return f"{path} is a file, not a cache (a cache is a Zarr folder, e.g. cache.zarr)"
    return f"{path} is a folder without zarr.json: not a cache (a cache is the Zarr folder `bl2 cache-logits` writes)"


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


class CacheReader:
    """A bl2 cache opened read-only. Attributes mirror the group attrs; `read` returns numpy rows."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self.group = open_group(self.path)
        self.attrs = dict(self.group.attrs)
        validate_attrs(self.attrs, self.path)
        self.specs = array_specs(self.attrs)
        self.version = int(self.attrs["bl2_cache_format"])
        self.encoding = Encoding.of(self.attrs)  # compact encodings: `read` returns the canonical arrays
        self._arrays = {name: self._open_array(name) for name in self.specs}
        for name, spec in self.specs.items():
            check_array(name, self._arrays[name], spec)
        self._record = self._read_record()

    def _open_array(self, name: str):
        """The zarr array `name`; a missing or garbled one (its zarr.json) is a one-line UserError."""
        try:
            arr = self.group.get(name)
        except Exception as e:
            raise UserError(f"cache {self.path}: array {name} cannot be opened ({_first_line(e)})") from None
        require(arr is not None, f"{self.path} lacks array {name}: not a valid bl2 cache v{self.version}")
        require(hasattr(arr, "shape") and hasattr(arr, "metadata"), f"{self.path}: {name} is not an array")
        return arr

    # -- attrs ---------------------------------------------------------------------------------------
    mode = property(lambda self: self.attrs["mode"])
    k = property(lambda self: self.attrs["k"])
    vocab_size = property(lambda self: int(self.attrs["vocab_size"]))
    seq_len = property(lambda self: int(self.attrs["seq_len"]))
    n_windows = property(lambda self: int(self.attrs["n_windows"]))
    windows_per_offset = property(lambda self: int(self.attrs["windows_per_offset"]))
    window_offsets = property(lambda self: [int(o) for o in self.attrs["window_offsets"]])
    temperatures = property(lambda self: [float(t) for t in self.attrs["temperatures"]])
    tokenizer_sha256 = property(lambda self: self.attrs["tokenizer_sha256"])
    data_dir = property(lambda self: self.attrs["data_dir"])
    n_draws = property(lambda self: self.attrs.get("n_draws"))
    sample_temperature = property(lambda self: self.attrs.get("sample_temperature"))
    complete = property(lambda self: bool(self.attrs["complete"]))

    # -- progress ------------------------------------------------------------------------------------
    def _read_record(self) -> np.ndarray | None:
        """v2: the `committed` array [n_shards, 1 + n_arrays] (rows, then each array's shard-object bytes)."""
        if self.version < 2:
            return None
        record = self._open_array(COMMITTED)
        try:
            return record[:]
        except Exception as e:
            raise UserError(f"cache {self.path}: its commit record is unreadable ({_first_line(e)})") from None

    # The record is read once, when the reader opens: what derives from it is computed once too (every `read`
    # consults both, and a streamed cache is read block by block).
    @cached_property
    def committed(self) -> frozenset[int]:
        """Indexes of the shards whose rows are written (v1: the shards below `windows_done`)."""
        if self._record is None:
            done = int(self.attrs["windows_done"])
            return frozenset(i for i in range(n_shards(self.n_windows)) if shard_rows(i, self.n_windows)[1] <= done)
        return frozenset(int(i) for i in np.flatnonzero(self._record[:, 0] > 0))

    @property
    def windows_done(self) -> int:
        """Rows written so far (all of them in a complete cache)."""
        if self._record is None:
            return int(self.attrs["windows_done"])
        return int(self._record[:, 0].sum())

    def committed_ranges(self) -> list[tuple[int, int]]:
        """Row ranges [s, e) of the committed shards, in order."""
        return [shard_rows(i, self.n_windows) for i in sorted(self.committed)]

    def shard_record(self) -> dict[str, dict[int, int]] | None:
        """v2: {array: {committed shard: bytes of its shard object}}, as the writer recorded them; None for v1."""
        return self._shard_sizes

    @cached_property
    def _shard_sizes(self) -> dict[str, dict[int, int]] | None:
        if self._record is None:
            return None
        done = np.flatnonzero(self._record[:, 0])
        return {name: {int(i): int(self._record[i, 1 + j]) for i in done} for j, name in enumerate(self.specs)}

    @property
    def zarr_arrays(self) -> dict:
        """Every open zarr array of the cache as stored (compact encodings may add some), by name (for checks
        that look at the store itself)."""
        return dict(self._arrays)

    @property
    def arrays(self) -> list[str]:
        """The array names present for this mode, in MODE_ARRAYS order."""
        return [name for name in MODE_ARRAYS[self.mode] if name in self.specs]

    def require_complete(self) -> None:
        require(self.complete and len(self.committed) == n_shards(self.n_windows),
                f"cache {self.path} is incomplete ({self.windows_done}/{self.n_windows} windows): "
                "rerun the same `bl2 cache-logits` command to resume it")

    def offset_rows(self, alignment: int) -> tuple[int, int]:
        """Row range [start, stop) of alignment `alignment` (epoch e of a student uses e mod N)."""
        n = len(self.window_offsets)
        a = alignment % n
        return a * self.windows_per_offset, (a + 1) * self.windows_per_offset

    def temperature_index(self, temperature: float) -> int | None:
        """Index of T in logz's last axis. None where no logz is needed: topk with the grid {1} (logZ_1 = 0),
        full mode (logp gives every T exactly). Sample and hybrid modes allow only their sampling temperature (the
        tail's draws are from p_T; another T would need the tail ids' log-probs)."""
        t = float(temperature)
        require(t > 0, f"temperature must be > 0, got {t}")
        if self.mode == "full":
            return None
        if self.mode in ("sample", "hybrid"):
            require(math.isclose(t, float(self.sample_temperature)),
                    f"cache {self.path} was sampled at T={self.sample_temperature}; T={t} is not available")
            return 0 if "logz" in self.specs else None
        temps = self.temperatures
        match = [i for i, g in enumerate(temps) if math.isclose(g, t)]
        require(bool(match), f"T={t} is not in the cache's temperature grid {temps}: rebuild the cache with it")
        return None if "logz" not in self.specs else match[0]

    # -- data ----------------------------------------------------------------------------------------
    def read(self, start: int, stop: int, arrays: list[str] | None = None) -> dict[str, np.ndarray]:
        """Rows [start, stop) of every array of the mode (or of `arrays`), checksums verified."""
        names = self.arrays if arrays is None else list(arrays)
        unknown = [n for n in names if n not in self.specs]
        require(not unknown, f"cache {self.path} has no array(s) {', '.join(unknown)} (mode {self.mode})")
        require(0 <= start <= stop <= self.n_windows, f"rows {start}:{stop} outside 0..{self.n_windows}")
        pending = set(range(start // SHARD_WINDOWS, -(-stop // SHARD_WINDOWS))) - self.committed
        require(not pending, f"rows {start}:{stop} of {self.path} are not written yet (shards {sorted(pending)[:4]} "
                "are not committed)")
        stored = needs(names, self.encoding)
        check_shards(self.path, {name: self._arrays[name] for name in stored}, start, stop, self.shard_record())
        block = decode({name: self._read_array(name, start, stop) for name in stored}, self.encoding)
        return {name: block[name] for name in names}

    def _read_array(self, name: str, start: int, stop: int) -> np.ndarray:
        try:
            return self._arrays[name][start:stop]
        except Exception as e:  # crc32c mismatch (ValueError), truncated shard, undecodable chunk
            storage.settle_zarr_io()
            raise UserError(f"cache {self.path}: array {name} rows {start}:{stop} is corrupt "
                            f"({_first_line(e)})") from None

    def read_all(self) -> dict[str, np.ndarray]:
        """Every row, filled one shard at a time into preallocated arrays. Measured on a 157 MB (decoded) cache:
        the process grows by 204 MB, against 266 MB for one whole-array read."""
        out = {name: np.empty(spec.shape, dtype=spec.decoded_dtype or spec.dtype)
               for name, spec in self.specs.items() if name in self.arrays}
        step = self.specs[self.arrays[0]].shards[0]
        for start in range(0, self.n_windows, step):
            for name, block in self.read(start, min(start + step, self.n_windows)).items():
                out[name][start : start + len(block)] = block
        return out

    def nbytes_decoded(self) -> int:
        """Bytes the whole cache takes in RAM once decoded (the arrays `read` returns)."""
        return sum(self.specs[name].nbytes() for name in self.arrays)

    def nbytes_stored(self) -> int:
        """Bytes of the store's files / objects."""
        return storage.tree_nbytes(self.path)


def dir_nbytes(path: str) -> int:
    """Total size of the files / objects under a store path."""
    return storage.tree_nbytes(path)
