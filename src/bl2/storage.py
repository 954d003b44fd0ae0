"""Locations. Every `--data`, `--cache` and `--out` is a string that may be a local path or an fsspec URL
(`s3://bucket/key`, `gs://...`, `file:///abs/path`); this module alone decides which is which, so no other
code wraps a location in `Path()` before asking here. Also: content hashes of local files."""

from __future__ import annotations

import hashlib
from pathlib import Path

from bl2.errors import require

HASH_BLOCK = 1 << 22


def scheme(location: str | Path) -> str:
    """'' for a plain path, else the URL scheme ('file', 's3', 'gs', ...)."""
    text = str(location)
    head, sep, _ = text.partition("://")
    return head.lower() if sep and head.replace("+", "").replace("-", "").isalnum() else ""


def is_remote(location: str | Path) -> bool:
    """True for object-store URLs (anything but a plain path or file://)."""
    return scheme(location) not in ("", "file")


def local_path(location: str | Path, what: str = "this location") -> Path:
    """The local Path of a plain path or file:// URL; a one-line user error for a remote URL where only local
    files work."""
    text = str(location)
    require(not is_remote(text), f"{what} must be a local path, got {text}")
    return Path(text[len("file://"):]) if scheme(text) == "file" else Path(text)


def display(location: str | Path) -> str:
    """How a location is recorded in run.json and cache attrs: URLs as given, local paths made absolute."""
    return str(location) if is_remote(location) else str(local_path(location).resolve())


def file_sha256(path: str | Path) -> str:
    """sha256 of a local file, read in blocks."""
    h = hashlib.sha256()
    with open(local_path(path), "rb") as f:
        while block := f.read(HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


def require_writable_dir(path: str | Path, what: str) -> None:
    """One-line user error unless files can be created in the local folder `path`, or (when it does not exist
    yet) in its nearest existing ancestor. Checked before long work, so a read-only output fails at once."""
    import os
    import tempfile

    from bl2.errors import UserError

    folder = local_path(path, what)
    probe = next((p for p in (folder, *folder.absolute().parents) if p.exists()), None)
    require(probe is None or probe.is_dir(), f"cannot write {what} {folder}: {probe} is not a folder")
    if probe is None or not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {what} {folder}: {probe} is not writable")
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".bl2-write-test-"):
            pass
    except OSError as e:
        raise UserError(f"cannot write {what} {folder}: {e.strerror or e}") from None


def require_writable_file(path: str | Path, what: str) -> None:
    """One-line user error unless the local file `path` can be (re)written: not a folder, and its folder
    writable (or creatable)."""
    file = local_path(path, what)
    require(not file.is_dir(), f"{what} {file} is a folder, not a file")
    require_writable_dir(file.parent, f"the folder of {what}")
