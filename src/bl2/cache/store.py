"""The output side of `cache-logits`: decide whether --out is new, resumable, complete or refused; create the
pre-allocated store; and the background thread that writes whole shards and commits `windows_done`.

Crash-safety protocol (measured in research/zarr-layouts.md §5): arrays are pre-allocated at full shape, every
write is a whole shard (atomic file rename in LocalStore), `windows_done` is committed only after the shard's
data is written for *all* arrays, `complete` is set last, and orphan `*.partial` files are deleted on resume.
A kill at any moment therefore loses at most the shards not yet committed, and a rerun rewrites exactly those.
"""

from __future__ import annotations

import os
import queue
import shutil
import tempfile
import threading
import time
from pathlib import Path

from bl2.cache.schema import SHARD_WINDOWS, array_specs, create_arrays, identity_diff
from bl2.errors import UserError, require

# Test-only hook: seconds the writer thread sleeps after each commit, so a test can kill a run mid-way.
SLEEP_ENV = "BL2_CACHE_TEST_SHARD_SLEEP"


def _existing_attrs(path: Path) -> dict | None:
    """Attrs of an existing bl2 cache at path; None for an empty dir; UserError for anything else."""
    import zarr

    if path.is_dir() and not any(path.iterdir()):
        return None
    require(path.is_dir() and (path / "zarr.json").is_file(),
            f"--out {path} exists and is not a bl2 cache: refusing to touch it (remove it or pick another path)")
    try:
        attrs = dict(zarr.open_group(str(path), mode="r").attrs)
    except Exception as e:
        raise UserError(f"--out {path} exists but cannot be read as a cache ({e}); remove it yourself") from None
    require("bl2_cache_format" in attrs,
            f"--out {path} is a zarr store but not a bl2 cache: refusing to touch it (remove it or pick another path)")
    return attrs


def _check_writable(folder: Path) -> None:
    blocker = next((p for p in (folder, *folder.parents) if p.exists()), None)
    require(blocker is None or blocker.is_dir(), f"cannot write the cache under {folder}: {blocker} is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".bl2-write-test-"):
            pass
    except OSError as e:
        raise UserError(f"cannot write the cache to {folder}: {e.strerror or e}") from None


def output_state(out: str, attrs: dict, overwrite: bool) -> str:
    """'new' | 'replace' | 'resume' | 'complete' for --out; UserError when the existing store must not be
    used (another configuration without --overwrite, or not a bl2 cache at all). Touches nothing."""
    path = Path(out)
    if not path.exists():
        _check_writable(path.parent)
        return "new"
    old = _existing_attrs(path)
    _check_writable(path)
    if old is None:
        return "new"
    if overwrite:
        return "replace"
    diff = identity_diff(old, attrs)
    require(not diff, f"--out {out} holds a cache made with other settings ({', '.join(diff)} differ): "
            "pass --overwrite to replace it, or choose another --out")
    if old.get("complete") and old.get("windows_done") == old.get("n_windows"):
        return "complete"
    return "resume"


def remove_partials(out: str) -> int:
    """Delete orphan `*.partial` files a killed LocalStore write leaves behind (zarr never does)."""
    n = 0
    for f in Path(out).rglob("*.partial"):
        f.unlink(missing_ok=True)
        n += 1
    return n


def open_store(out: str, attrs: dict, state: str):
    """(group, arrays, windows_done) ready for writing; creates or replaces the store when asked to."""
    import zarr

    if state in ("new", "replace"):
        if state == "replace":
            shutil.rmtree(out)
        # attrs first: a crash right after this still leaves a recognisable (resumable) bl2 cache
        group = zarr.create_group(store=out, attributes=attrs, overwrite=True)
    else:
        group = zarr.open_group(out, mode="r+")
        group.attrs.update({"data_dir": attrs["data_dir"], "teachers": attrs["teachers"]})
    remove_partials(out)
    arrays = create_arrays(group, array_specs(attrs))
    done = int(group.attrs.get("windows_done", 0))
    aligned = done % SHARD_WINDOWS == 0 or done == attrs["n_windows"]
    require(0 <= done <= attrs["n_windows"] and aligned, f"{out}: windows_done {done} is invalid; use --overwrite")
    return group, arrays, done


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
            start, stop, block = item
            try:
                for name, arr in self.arrays.items():
                    arr[start:stop] = block[name]
                self.commit(stop)
            except BaseException as e:  # handed to the main thread at the next put/close
                self.error = e
            if self.sleep:
                time.sleep(self.sleep)

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def put(self, start: int, stop: int, block: dict) -> None:
        self._raise()
        while True:  # poll so a dead writer never blocks the main thread forever
            try:
                self.queue.put((start, stop, block), timeout=0.5)
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
