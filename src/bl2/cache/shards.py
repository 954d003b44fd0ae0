"""Committed shards must be on disk. Zarr reads a shard file that is absent (or empty) as fill values, and
checksums cover only the chunks that exist, so a deleted shard of a complete cache would otherwise train a
student on zeros without a word. Every read of committed rows therefore first checks that each shard file
holding them exists and is at least as long as its shard index; a truncated file longer than that fails its
index checksum when read (the reader turns that into a UserError too).

Shard files are found the way zarr 3 names them: the array's chunk-key encoding of the shard's grid
coordinates (`<array>/c/<i>/0[/0]` for bl2's arrays, one shard per SHARD_WINDOWS rows), asked of the
array's own store, so the same check works for local and (later) fsspec stores.

`record`: what the writer recorded per finished shard, `{array name: {shard index: size in bytes}}` (the
commit record of cache format v2, `CacheReader.shard_record()`; None for v1 caches); when given, every
committed shard must have an entry and the file's size must equal it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping

from bl2.errors import UserError

INDEX_ENTRY_BYTES = 16  # (offset, nbytes) as two uint64 per inner chunk
CRC_BYTES = 4


class ShardError(UserError):
    """A committed shard file is missing, truncated or differs from the record (a damaged cache)."""


def shard_shape(arr) -> tuple[int, ...]:
    """The array's shard (outer chunk) shape: the chunk grid of a sharded zarr v3 array."""
    return tuple(arr.metadata.chunk_grid.chunk_shape)


def shard_keys(arr, start: int, stop: int) -> list[tuple[int, str]]:
    """(row-axis shard index, store key) of every shard file holding rows [start, stop) of `arr`."""
    shape, shards = tuple(arr.shape), shard_shape(arr)
    if stop <= start:
        return []
    first, last = start // shards[0], (stop - 1) // shards[0]
    rest = [range(math.ceil(n / s)) for n, s in zip(shape[1:], shards[1:])]
    prefix = arr.store_path.path
    out = []
    for i in range(first, last + 1):
        for coords in itertools.product([i], *rest):
            key = arr.metadata.chunk_key_encoding.encode_chunk_key(coords)
            out.append((i, f"{prefix}/{key}" if prefix else key))
    return out


def min_shard_bytes(arr) -> int:
    """Bytes of the shard index at least (bl2's shards: 16 per inner chunk + a crc32c); 1 without sharding."""
    from zarr.codecs import Crc32cCodec, ShardingCodec

    codec = next((c for c in arr.metadata.codecs if isinstance(c, ShardingCodec)), None)
    if codec is None:
        return 1
    n_inner = math.prod(math.ceil(s / c) for s, c in zip(shard_shape(arr), codec.chunk_shape))
    crc = any(isinstance(c, Crc32cCodec) for c in codec.index_codecs)
    return n_inner * INDEX_ENTRY_BYTES + (CRC_BYTES if crc else 0)


def file_size(arr, key: str) -> int | None:
    """Size of a store key, None when it does not exist."""
    from zarr.core.sync import sync

    try:
        return int(sync(arr.store_path.store.getsize(key)))
    except FileNotFoundError:
        return None


def shard_problems(arrays: Mapping[str, object], start: int, stop: int,
                   record: Mapping[str, Mapping[int, int]] | None = None) -> list[str]:
    """What is wrong with the shard files of rows [start, stop) of each array: one text per bad shard."""
    return [text for _, text in indexed_problems(arrays, start, stop, record)]


def damaged_shards(reader) -> dict[int, str]:
    """{shard index: the first problem} of every committed shard whose files are missing, truncated or differ
    from the commit record (the check `cache-logits` makes before it trusts a finished-shard record)."""
    record, out = reader.shard_record(), {}
    for start, stop in reader.committed_ranges():
        for index, text in indexed_problems(reader.zarr_arrays, start, stop, record):
            out.setdefault(index, text)
    return out


def indexed_problems(arrays: Mapping[str, object], start: int, stop: int,
                     record: Mapping[str, Mapping[int, int]] | None = None) -> list[tuple[int, str]]:
    """(row-axis shard index, what is wrong) for each bad shard file of rows [start, stop)."""
    problems = []
    for name, arr in arrays.items():
        rows, floor = shard_shape(arr)[0], min_shard_bytes(arr)
        for index, key in shard_keys(arr, start, stop):
            where = f"array {name} rows {index * rows}:{min((index + 1) * rows, arr.shape[0])} (file {key})"
            size = file_size(arr, key)
            expected = None if record is None else (record.get(name) or {}).get(index)
            if size is None:
                problems.append((index, f"{where}: the shard file is missing"))
            elif size < floor:
                problems.append((index, f"{where}: the shard file is truncated ({size} bytes, less than its index)"))
            elif record is not None and expected is None:
                problems.append((index, f"{where}: no size recorded for a committed shard"))
            elif expected is not None and size != int(expected):
                problems.append((index, f"{where}: the shard file is {size} bytes, the record says {int(expected)}"))
    return problems


def check_shards(path: str, arrays: Mapping[str, object], start: int, stop: int,
                 record: Mapping[str, Mapping[int, int]] | None = None) -> None:
    """UserError naming the first bad shard (and how many more) among the shards of rows [start, stop)."""
    problems = shard_problems(arrays, start, stop, record)
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ShardError(f"cache {path}: {problems[0]}{more}; the cache is damaged: rebuild it with "
                        "`bl2 cache-logits ... --overwrite`")


def check_committed_shards(reader, record: Mapping[str, Mapping[int, int]] | None = None) -> None:
    """Every shard file holding committed rows exists, is not truncated, and matches the record (given, or the
    cache's own in format v2); UserError naming the array and rows otherwise."""
    record = record if record is not None else reader.shard_record()
    for start, stop in reader.committed_ranges():
        check_shards(reader.path, reader.zarr_arrays, start, stop, record)
