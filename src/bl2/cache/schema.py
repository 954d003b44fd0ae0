"""Cache format v2 (DESIGN §5, docs/cache-format.md): constants, array specs, shards and attribute validation.
Format v1 caches are still read (v2 = v1 + the per-shard commit record `committed` + `logp_dtype`). The v2
additions (mode hybrid, the compact encodings of `bl2.cache.encodings`) are new attrs and arrays of format 2.

This module is the single source of truth for what a bl2 logit cache looks like on disk, shared by the
writer (`cache-logits`), the reader (the distillation loader), `info`, `verify` and `compare`.
A cache is a Zarr v3 group. Every array has one row per window (axis 0), chunks of CHUNK_WINDOWS rows and
shards of SHARD_WINDOWS rows, compressed with Blosc zstd 5 + byte shuffle and checksummed with crc32c.
Rows are stored alignment-major: with `window_offsets` [o_0 .. o_{N-1}] and W `windows_per_offset`, row
a*W + w holds tokens[o_a + w*L : o_a + w*L + L + 1] of the split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bl2.cache.encodings import Encoding
from bl2.errors import UserError, require

FORMAT_VERSION = 2  # written
READ_VERSIONS = (1, 2)  # read
CHUNK_WINDOWS = 16
SHARD_WINDOWS = 256
MODES = ("topk", "full", "sample", "hybrid")
ENSEMBLES = ("logit_mean", "prob_mean")
IN_MEMORY = ("auto", "yes", "no")  # how training holds a cache (bl2.cache.loader): decoded into RAM, or streamed
MAX_VOCAB = 1 << 16  # ids are uint16
MAX_DRAWS = 255  # counts are uint8
LOGP_DTYPES = ("float16", "float32")  # mode full: fp16 (half the bytes) or fp32 (offline == online exactly)
COMMITTED = "committed"  # v2: int64 [n_shards, 1 + n_arrays]: rows committed per shard (0 = not yet), then the
# bytes of each data array's shard object, in `committed_columns` order. One chunk per shard: each rank writes
# only the rows of its own shards, so no two processes ever write the same object.

# Array names per mode, in the order the reader returns them. `logz` only when the grid is not just T=1.
MODE_ARRAYS = {
    "topk": ("input_ids", "topk_ids", "topk_logp", "logz"),
    "full": ("input_ids", "logp"),
    "sample": ("input_ids", "sample_ids", "sample_counts"),
    "hybrid": ("input_ids", "topk_ids", "topk_logp", "logz", "tail_ids", "tail_counts"),
}

# Attrs that define what a cache *is*: a rerun must match all of them to resume; anything else is refused.
IDENTITY_KEYS = (
    "bl2_cache_format", "mode", "k", "vocab_size", "seq_len", "n_windows", "window_offsets", "windows_per_offset",
    "temperatures", "ensemble", "teacher_sha256", "tokenizer_sha256", "tokens_sha256", "split",
    "n_draws", "sample_temperature", "sample_seed", "logp_dtype",
    "head_logp_encoding", "head_logp_step", "head_order", "sparse_ids_encoding",
)

REQUIRED_ATTRS = (
    "bl2_cache_format", "mode", "k", "vocab_size", "seq_len", "n_windows", "window_offset", "window_offsets",
    "windows_per_offset", "temperatures", "ensemble", "teachers", "tokenizer_sha256", "tokens_sha256", "split",
    "data_dir", "windows_done", "complete",
)


@dataclass(frozen=True)
class ArraySpec:
    """One array of the cache: dtype and full shape (rows first)."""

    name: str
    dtype: str  # as stored
    shape: tuple[int, ...]
    decoded_dtype: str | None = None  # as `CacheReader.read` returns it, when a compact encoding differs

    @property
    def chunks(self) -> tuple[int, ...]:
        return (CHUNK_WINDOWS, *self.shape[1:])

    @property
    def shards(self) -> tuple[int, ...]:
        return (SHARD_WINDOWS, *self.shape[1:])

    def nbytes(self) -> int:
        """Bytes once decoded (what a reader holds in RAM)."""
        return math.prod(self.shape) * np.dtype(self.decoded_dtype or self.dtype).itemsize


def needs_logz(mode: str, temperatures: list[float]) -> bool:
    """logz exists in modes topk and hybrid unless the grid is just T=1 (then logZ_1 = 0 by construction)."""
    return mode in ("topk", "hybrid") and list(temperatures) != [1.0]


def array_specs(attrs: dict) -> dict[str, ArraySpec]:
    """The arrays a cache with these attrs holds, with dtypes and shapes (the contract of DESIGN §5)."""
    n, seq, mode = int(attrs["n_windows"]), int(attrs["seq_len"]), attrs["mode"]
    specs = [ArraySpec("input_ids", "uint16", (n, seq + 1))]
    if mode in ("topk", "hybrid"):
        k = int(attrs["k"])
        u8 = attrs.get("head_logp_encoding") == "uint8"  # bl2.cache.encodings: read back as float16
        by_id = attrs.get("head_order") == "id"  # bl2.cache.encodings: int16 deltas of the ids sorted
        specs += [ArraySpec("topk_ids", "int16" if by_id else "uint16", (n, seq, k), "uint16" if by_id else None),
                  ArraySpec("topk_logp", "uint8" if u8 else "float16", (n, seq, k), "float16" if u8 else None)]
        if u8:  # each position's top log-prob; topk_logp holds the steps below it
            specs.append(ArraySpec("topk_logp_max", "float16", (n, seq, 1)))
        if needs_logz(mode, attrs["temperatures"]):
            specs.append(ArraySpec("logz", "float32", (n, seq, len(attrs["temperatures"]))))
    elif mode == "full":
        specs.append(ArraySpec("logp", attrs.get("logp_dtype") or "float16", (n, seq, int(attrs["vocab_size"]))))
    if mode in ("sample", "hybrid"):
        s, prefix = int(attrs["n_draws"]), "sample" if mode == "sample" else "tail"
        delta = attrs.get("sparse_ids_encoding") == "delta"  # bl2.cache.encodings: int16 deltas, read as uint16
        specs += [ArraySpec(f"{prefix}_ids", "int16" if delta else "uint16", (n, seq, s), "uint16" if delta else None),
                  ArraySpec(f"{prefix}_counts", "uint8", (n, seq, s))]
    return {s.name: s for s in specs}


def create_arrays(group, specs: dict[str, ArraySpec]) -> dict:
    """Pre-allocate every data array at its full shape and, in v2, the commit record (missing ones only, so a
    crash during creation resumes)."""
    from bl2.data.store import compressors

    arrays = {}
    for name, spec in specs.items():
        if name in group:
            arrays[name] = group[name]
            check_array(name, arrays[name], spec)
            continue
        # write_empty_chunks: a committed shard always has its file, even one that holds only fill values
        arrays[name] = group.create_array(name, shape=spec.shape, chunks=spec.chunks, shards=spec.shards,
                                          dtype=spec.dtype, compressors=compressors(), fill_value=0,
                                          config={"write_empty_chunks": True})
    if COMMITTED not in group:
        cols = 1 + len(specs)
        group.create_array(COMMITTED, shape=(n_shards(spec.shape[0]), cols), chunks=(1, cols), dtype="int64",
                           compressors=compressors(), fill_value=0, config={"write_empty_chunks": True})
    return arrays


def check_array(name: str, arr, spec: ArraySpec) -> None:
    require(tuple(arr.shape) == spec.shape and str(arr.dtype) == spec.dtype,
            f"array {name} is {arr.dtype}{list(arr.shape)}, expected {spec.dtype}{list(spec.shape)}: "
            "not a valid bl2 cache")


# ---------------------------------------------------------------------------------------------- shards
def n_shards(n_windows: int) -> int:
    return -(-n_windows // SHARD_WINDOWS)


def shard_rows(index: int, n_windows: int) -> tuple[int, int]:
    """Row range [s, e) of shard `index`."""
    return index * SHARD_WINDOWS, min(n_windows, (index + 1) * SHARD_WINDOWS)


def shards_todo(n_windows: int, committed: set[int], rank: int = 0, world_size: int = 1) -> list[tuple[int, int]]:
    """Row ranges of the uncommitted shards this rank writes: every world_size-th of them, from rank on, so any
    number of processes shares what is left after a crash."""
    todo = [i for i in range(n_shards(n_windows)) if i not in committed]
    return [shard_rows(i, n_windows) for i in todo[rank::world_size]]


# ---------------------------------------------------------------------------------------------- attrs
def identity(attrs: dict) -> dict:
    """The subset of attrs a resumed run must match (teachers by weights hash, in order)."""
    ident = {key: attrs.get(key) for key in IDENTITY_KEYS if key != "teacher_sha256"}
    try:  # caches written before the encoding attrs existed hold the canonical arrays: the same identity
        ident.update(Encoding.of(attrs).attrs(str(attrs.get("mode"))))
    except UserError:
        pass
    ident["teacher_sha256"] = [t.get("sha256") for t in attrs.get("teachers", [])]
    return ident


def identity_diff(old: dict, new: dict) -> list[str]:
    """Names of the identity attrs that differ between two caches' attrs."""
    a, b = identity(old), identity(new)
    return [key for key in IDENTITY_KEYS if a.get(key) != b.get(key)]


def validate_attrs(attrs: dict, where: str = "cache") -> None:
    """UserError unless attrs describe a bl2 cache (format 1 or 2) this code can read."""
    require("bl2_cache_format" in attrs, f"{where} is not a bl2 logit cache (no bl2_cache_format attribute)")
    version = attrs["bl2_cache_format"]
    require(version in READ_VERSIONS,
            f"{where} has cache format {version}; this bl2 reads formats {', '.join(map(str, READ_VERSIONS))}")
    missing = [key for key in REQUIRED_ATTRS if key not in attrs]
    require(not missing, f"{where} lacks attributes {', '.join(missing)}: not a valid bl2 cache v{version}")
    require(attrs.get("logp_dtype") in (None, *LOGP_DTYPES),
            f"{where} has unknown logp_dtype {attrs.get('logp_dtype')!r}")
    require(attrs["mode"] in MODES, f"{where} has unknown mode {attrs['mode']!r}")
    require(attrs["ensemble"] in ENSEMBLES, f"{where} has unknown ensemble rule {attrs['ensemble']!r}")
    if attrs["mode"] in ("sample", "hybrid"):
        require(attrs.get("n_draws") and attrs.get("sample_temperature"),
                f"{where}: {attrs['mode']} mode without n_draws / sample_temperature")
    if attrs["mode"] == "hybrid":
        require(attrs.get("k") and list(attrs["temperatures"]) == [attrs["sample_temperature"]],
                f"{where}: hybrid mode needs k and the temperature grid [sample_temperature]")
    try:
        Encoding.of(attrs)
    except UserError as e:
        raise UserError(f"{where} has an unknown encoding: {e}") from None
    try:
        n, per, offs = int(attrs["n_windows"]), int(attrs["windows_per_offset"]), list(attrs["window_offsets"])
    except (TypeError, ValueError):
        raise UserError(f"{where}: malformed window attributes") from None
    require(n == per * len(offs), f"{where}: n_windows {n} != windows_per_offset {per} x {len(offs)} offsets")
