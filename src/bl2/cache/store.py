"""The output side of `cache-logits`: decide whether --out is new, resumable, complete or refused; create the
pre-allocated store; and the background thread that writes whole shards and commits each one.

Crash-safety protocol (format v2; measured in research/zarr-layouts.md §5): arrays are pre-allocated at full
shape; every write is one whole shard of one array (one file renamed into place by LocalStore, one object PUT
on an object store: there is no rename there, but an object appears whole or not at all); a shard is committed
only after its data is written for *all* arrays, by writing its row of the `committed` record (its own chunk:
each shard's record is a separate object, so ranks never write the same file); `complete` is set last, by rank
0, after every rank has finished. A kill at any moment therefore loses at most the shards not yet committed,
and a rerun on any number of processes rewrites exactly those. Orphan `*.partial` files (local) are deleted.
"""

from __future__ import annotations

import os
import queue
import threading
import time

import numpy as np

from bl2 import storage
from bl2.cache.schema import COMMITTED, array_specs, create_arrays, identity_diff
from bl2.errors import UserError, require

# Test-only hook: seconds the writer thread sleeps after each commit, so a test can kill a run mid-way.
SLEEP_ENV = "BL2_CACHE_TEST_SHARD_SLEEP"


def _existing_attrs(out: str) -> dict | None:
    """Attrs of an existing bl2 cache at `out`; None when nothing is there (or an empty local dir); UserError
    for anything else."""
    if not storage.is_remote(out):
        path = storage.local_path(out)
        if path.is_dir() and not any(path.iterdir()):
            return None
        require(path.is_dir() and (path / "zarr.json").is_file(),
                f"--out {out} exists and is not a bl2 cache: refusing to touch it (remove it or pick another path)")
    elif not storage.exists(storage.join(out, "zarr.json")):
        fs, path = storage.filesystem(out)
        require(not fs.exists(path) or not fs.ls(path),
                f"--out {out} holds objects but no bl2 cache: refusing to touch it (remove them or pick another URL)")
        return None
    try:
        attrs = dict(storage.open_zarr_group(out, mode="r").attrs)
    except Exception as e:
        raise UserError(f"--out {out} exists but cannot be read as a cache ({e}); remove it yourself") from None
    require("bl2_cache_format" in attrs,
            f"--out {out} is a zarr store but not a bl2 cache: refusing to touch it (remove it or pick another path)")
    return attrs


def output_state(out: str, attrs: dict, overwrite: bool) -> str:
    """'new' | 'replace' | 'resume' | 'complete' for --out; UserError when the existing store must not be
    used (another configuration without --overwrite, or not a bl2 cache at all). Touches nothing."""
    local = not storage.is_remote(out)
    if local and not storage.local_path(out).exists():
        storage.require_writable_dir(out, "the cache --out")  # its nearest existing ancestor must take files
        return "new"
    old = _existing_attrs(out)
    if local:
        storage.require_writable_dir(out, "the cache --out")
    else:  # a missing bucket lists as empty: write a probe object before the teachers run
        storage.require_remote_writable(out, "the cache --out")
    if old is None:
        return "new"
    if overwrite:
        return "replace"
    diff = identity_diff(old, attrs)
    require(not diff, f"--out {out} holds a cache made with other settings ({', '.join(diff)} differ): "
            "pass --overwrite to replace it, or choose another --out")
    return "complete" if old.get("complete") else "resume"


def remove_partials(out: str) -> int:
    """Delete orphan `*.partial` files a killed LocalStore write leaves behind (zarr never does)."""
    if storage.is_remote(out):
        return 0
    n = 0
    for f in storage.local_path(out).rglob("*.partial"):
        f.unlink(missing_ok=True)
        n += 1
    return n


def prepare_store(out: str, attrs: dict, state: str) -> None:
    """Rank 0: create (or replace) the store with its attrs and pre-allocated arrays, or tidy it for a resume."""
    import zarr

    if state in ("new", "replace"):
        if state == "replace":
            storage.remove_tree(out)
        # attrs first: a crash right after this still leaves a recognisable (resumable) bl2 cache
        if storage.is_remote(out):
            group = zarr.create_group(store=out, attributes=attrs, overwrite=True,
                                      storage_options=storage.storage_options(out))
        else:
            group = zarr.create_group(store=str(storage.local_path(out)), attributes=attrs, overwrite=True)
    else:
        group = storage.open_zarr_group(out, mode="r+")
        group.attrs.update({"data_dir": attrs["data_dir"], "teachers": attrs["teachers"]})
    remove_partials(out)
    create_arrays(group, array_specs(attrs))


def repair_committed(out: str) -> list[str]:
    """Rank 0, before a rerun trusts the finished-shard record: every committed shard whose files are missing,
    truncated or of another size than recorded is un-committed (and the cache marked incomplete first), so the
    rerun writes it again. Returns one text per repaired shard. (Sizes only: a bit flip inside a file of the
    right size is found by `bl2 cache verify`, which decodes every chunk.)"""
    from bl2.cache.reader import CacheReader
    from bl2.cache.shards import damaged_shards

    reader = CacheReader(out)
    damaged = damaged_shards(reader)
    if not damaged:
        return []
    require(reader.shard_record() is not None,
            f"cache {out} is damaged ({next(iter(damaged.values()))}) and its format (v1) has no per-shard record "
            "to redo a shard: rebuild it with --overwrite")
    group = storage.open_zarr_group(out, mode="r+")
    group.attrs.update({"complete": False})  # first: a crash below leaves an incomplete cache, never a wrong one
    record = group[COMMITTED]
    for index in sorted(damaged):
        record[index] = np.zeros(record.shape[1], dtype=np.int64)
        _delete_shard(group, reader, index)  # zarr would read a damaged file back to merge a partial shard's write
    return [damaged[i] for i in sorted(damaged)]


def _delete_shard(group, reader, index: int) -> None:
    """Remove every array's shard file(s) of shard `index` (absent ones are fine), through the writable group."""
    from zarr.core.sync import sync

    from bl2.cache.schema import shard_rows
    from bl2.cache.shards import shard_keys

    start, stop = shard_rows(index, reader.n_windows)
    for name in reader.zarr_arrays:
        arr = group[name]
        for _, key in shard_keys(arr, start, stop):
            sync(arr.store_path.store.delete(key))


def open_for_write(out: str, attrs: dict):
    """(group, data arrays, commit record array) of a prepared store, in any rank."""
    group = storage.open_zarr_group(out, mode="r+")
    arrays = {name: group[name] for name in array_specs(attrs)}
    return group, arrays, group[COMMITTED]


def committed_shards(record) -> set[int]:
    """Shards whose commit row says rows > 0."""
    return {int(i) for i in np.flatnonzero(record[:][:, 0] > 0)}


def shard_commit(arrays: dict, record):
    """commit(index, start, stop): record the rows and each array's shard-object size of a written shard (its
    own chunk of the record: one object per shard)."""
    from bl2.cache.shards import file_size, shard_keys

    def commit(index: int, start: int, stop: int) -> None:
        sizes = [sum(file_size(arr, key) or 0 for _, key in shard_keys(arr, start, stop)) for arr in arrays.values()]
        record[index] = np.asarray([stop - start, *sizes], dtype=np.int64)

    return commit


class ShardWriter:
    """A background thread that writes whole shards and then commits them, so the teacher forward never waits
    on compression or the disk. `put` blocks only when `depth` shards are already queued (bounded memory)."""

    def __init__(self, arrays: dict, commit, depth: int = 2):
        self.arrays = arrays
        self.commit = commit
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.sleep = float(os.environ.get(SLEEP_ENV, "0") or 0)
        self.thread = threading.Thread(target=self._run, name="bl2-shard-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.stop.is_set() or self.error is not None:
                continue  # drain without writing: the run is aborting
            index, start, stop, block = item
            try:
                for name, arr in self.arrays.items():
                    arr[start:stop] = block[name]
                self.commit(index, start, stop)
            except BaseException as e:  # handed to the main thread at the next put/close
                self.error = e
            if self.sleep:
                time.sleep(self.sleep)

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def put(self, index: int, start: int, stop: int, block: dict) -> None:
        self._raise()
        while True:  # poll so a dead writer never blocks the main thread forever
            try:
                self.queue.put((index, start, stop, block), timeout=0.5)
                return
            except queue.Full:
                self._raise()

    def close(self) -> None:
        """Write everything queued, stop the thread, re-raise a write error."""
        self.queue.put(None)
        self.thread.join()
        self._raise()

    def abort(self) -> None:
        """Drop queued shards (they are not committed, so a resume redoes them) and stop the thread."""
        self.stop.set()
        try:
            self.queue.put(None, timeout=60)
        except queue.Full:
            return
        self.thread.join(timeout=60)
